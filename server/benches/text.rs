//! Text model benchmark: NER tasks per second through the whole pipeline
//! (built-in pre-hook tokenizing with the host tokenizer → ONNX Runtime →
//! `ner-post` in WebAssembly → validation) against the limit: the same
//! backend's model sessions fed by the same native tokenizer, nothing
//! else. Also the host tokenizer's cost per task.
//!
//! Run: `cargo bench -p configurable-ls-backend --bench text` (needs the
//! `ner_minilm` model of `scripts/setup.sh` and the example hooks built).
//! `CLS_BENCH_SECONDS` sets each measurement's length (default 10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cls::backend::{Backend, BackendConfig, BackendName, PersistedBackend};
use cls::model::EncodeOptions;
use cls::pipeline::{self, PredictRequest};
use cls::runtime::{Runtime, RuntimeSettings};
use cls::tensor::{ElementType, Tensor, TensorData};
use futures::future::join_all;
use harness::{NER_CONFIG, example_hook, model, ort_library, read, text_held_out};
use serde_json::{Value, json};

/// Tasks per request, as Label Studio's Retrieve Predictions batches them.
const TASKS: usize = 16;
/// Target ratio pipeline / limit.
const TARGET: f64 = 0.85;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let seconds: f64 = std::env::var("CLS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let window = Duration::from_secs_f64(seconds);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(&RuntimeSettings {
        ort_library: Some(ort_library().expect("ONNX Runtime: run scripts/setup.sh")),
        ..RuntimeSettings::new(dir.path())
    })
    .expect("the engine starts");
    let backend = Arc::new(ner_backend(&runtime).await);
    let texts = texts();
    println!(
        "ner_minilm (all-MiniLM-L6-v2, 6 layers), {TASKS} held-out sentences per request, \
         one request at a time, {seconds} s each"
    );

    let tokenizer = backend.tokenizer.get().expect("the model's tokenizer");
    let started = Instant::now();
    let rounds = 200;
    for _ in 0..rounds {
        for text in &texts {
            std::hint::black_box(tokenizer.encode(text, None, options()).expect("tokens"));
        }
    }
    let per_task = started.elapsed() / (rounds * texts.len()) as u32;
    println!(
        "host tokenizer: {:.1} µs per task",
        per_task.as_secs_f64() * 1e6
    );

    // Warm both paths (sessions, hook instances) before measuring.
    limit_request(&backend, &texts).await;
    pipeline_request(&runtime, &backend, &texts).await;
    let limit = rate(window, || limit_request(&backend, &texts)).await;
    let through = rate(window, || pipeline_request(&runtime, &backend, &texts)).await;
    let ratio = through / limit;
    println!("limit (tokenizer + model):   {limit:.1} tasks/s");
    println!("pipeline (/predict's work):  {through:.1} tasks/s");
    println!(
        "ratio {ratio:.2} (target ≥ {TARGET}): {}",
        if ratio >= TARGET { "met" } else { "NOT met" }
    );
}

/// The NER backend as the tests configure it: built-in pre-hook, `ner-post`.
async fn ner_backend(runtime: &Runtime) -> Backend {
    let folder = model("mlflow/ner_minilm").expect("ner_minilm: run scripts/setup.sh");
    let mut config = BackendConfig::empty();
    config.model.uri = Some(folder.display().to_string());
    config.label_config = Some(NER_CONFIG.to_owned());
    runtime
        .loader
        .build(&PersistedBackend {
            name: BackendName::new("ner-bench").expect("name"),
            config,
            pre_hook: None,
            post_hook: read(&example_hook("ner-post")),
            model_upload: None,
        })
        .await
        .expect("the NER backend builds")
}

/// One request's texts: the held-out sentences, repeated to [`TASKS`].
fn texts() -> Vec<String> {
    let held_out = text_held_out().expect("text_heldout.json: run scripts/setup.sh");
    held_out["ner"]
        .as_array()
        .expect("ner sentences")
        .iter()
        .filter_map(|s| s["text"].as_str().map(str::to_owned))
        .cycle()
        .take(TASKS)
        .collect()
}

/// How the built-in pre-hook tokenizes (one window, special tokens).
fn options() -> EncodeOptions {
    EncodeOptions {
        add_special_tokens: true,
        max_length: Some(512),
        stride: None,
        pad_to_max_length: false,
    }
}

/// Tasks per second over `window`, one request of [`TASKS`] at a time.
async fn rate<F, Fut>(window: Duration, mut request: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < window {
        request().await;
        requests += 1;
    }
    (requests * TASKS) as f64 / started.elapsed().as_secs_f64()
}

/// The limit: every text tokenized natively and run through the backend's
/// model sessions, all at once, outputs dropped.
async fn limit_request(backend: &Backend, texts: &[String]) {
    let tokenizer = backend.tokenizer.get().expect("the model's tokenizer");
    let runs = texts.iter().map(|text| {
        let window = tokenizer
            .encode(text, None, options())
            .expect("tokens")
            .remove(0);
        let columns = [
            ("input_ids", &window.ids),
            ("token_type_ids", &window.type_ids),
        ];
        let mut inputs: Vec<Tensor> = columns
            .iter()
            .map(|(name, values)| int64_tensor(name, values.iter().map(|&v| i64::from(v))))
            .collect();
        let mask = window.attention_mask.iter().map(|&v| i64::from(v));
        inputs.push(int64_tensor("attention_mask", mask));
        let model = backend.model.clone();
        async move { model.run(inputs).await.expect("inference") }
    });
    std::hint::black_box(join_all(runs).await);
}

fn int64_tensor(name: &str, values: impl Iterator<Item = i64>) -> Tensor {
    let bytes: Vec<u8> = values.flat_map(i64::to_le_bytes).collect();
    let shape = vec![1, (bytes.len() / 8) as u64];
    Tensor::new(name, ElementType::I64, shape, TensorData::Bytes(bytes)).expect("tensor")
}

/// One `/predict`'s work for the texts, checked to have predicted.
async fn pipeline_request(runtime: &Runtime, backend: &Arc<Backend>, texts: &[String]) {
    let tasks: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i + 1, "data": {"text": t}}))
        .collect();
    let (results, _) = pipeline::predict(
        &runtime.services,
        backend,
        PredictRequest {
            tasks,
            ..PredictRequest::default()
        },
    )
    .await
    .expect("the memory budget has room");
    assert!(results.iter().all(Result::is_ok), "every task predicts");
}
