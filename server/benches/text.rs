//! Text model benchmark: NER tasks per second through the whole pipeline
//! (built-in pre-hook tokenizing with the host tokenizer → ONNX Runtime →
//! `ner-post` in WebAssembly → validation) against the limit: the same
//! backend's model sessions fed by the same native tokenizer, nothing
//! else. Also the tokenizer's cost per task: natively in the host, in a
//! pre-hook through the host tokenizer, and in a pre-hook that tokenizes
//! inside the guest (the `guest-tokenizer` fixture, built here).
//!
//! Run: `cargo bench -p configurable-ls-backend --bench text` (needs the
//! `ner_minilm` model of `scripts/setup.sh` and the example hooks built).
//! `CLS_BENCH_SECONDS` sets each measurement's length (default 10).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cls::backend::{Backend, BackendConfig, BackendName, HookParams, PersistedBackend};
use cls::hooks::{Datapoint, Hook, HookContext, HookKind, HookLimits, HookRuntime};
use cls::model::{EncodeOptions, Encoding};
use cls::pipeline::{self, PredictRequest};
use cls::runtime::{Runtime, RuntimeSettings};
use cls::tensor::{ElementType, Tensor, TensorData};
use futures::future::join_all;
use harness::{
    NER_CONFIG, example_hook, fixture_hook, model, ort_library, read, repo_root, text_held_out,
};
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

    host_vs_guest(&runtime, &backend, &texts).await;

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
/// model sessions, all at once, outputs dropped. Texts of the same token
/// length run as one batch, as the pipeline stacks them.
async fn limit_request(backend: &Backend, texts: &[String]) {
    let tokenizer = backend.tokenizer.get().expect("the model's tokenizer");
    let mut by_length: BTreeMap<usize, Vec<Encoding>> = BTreeMap::new();
    for text in texts {
        let window = tokenizer
            .encode(text, None, options())
            .expect("tokens")
            .remove(0);
        by_length.entry(window.ids.len()).or_default().push(window);
    }
    let runs = by_length.into_values().map(|windows| {
        let column = |values: &dyn Fn(&Encoding) -> Vec<i64>| -> Vec<i64> {
            windows.iter().flat_map(values).collect()
        };
        let shape = [windows.len(), windows[0].ids.len()];
        let inputs = vec![
            int64_tensor("input_ids", shape, column(&|w| ids(&w.ids))),
            int64_tensor("token_type_ids", shape, column(&|w| ids(&w.type_ids))),
            int64_tensor(
                "attention_mask",
                shape,
                column(&|w| w.attention_mask.iter().map(|&v| i64::from(v)).collect()),
            ),
        ];
        let model = backend.model.clone();
        async move { model.run(inputs).await.expect("inference") }
    });
    std::hint::black_box(join_all(runs).await);
}

fn ids(values: &[u32]) -> Vec<i64> {
    values.iter().map(|&v| i64::from(v)).collect()
}

fn int64_tensor(name: &str, [rows, columns]: [usize; 2], values: Vec<i64>) -> Tensor {
    let bytes: Vec<u8> = values.into_iter().flat_map(i64::to_le_bytes).collect();
    let shape = vec![rows as u64, columns as u64];
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

/// Tokenizing in a pre-hook, per task with the instance: through the host
/// tokenizer (`reads-tokenizer`: encode and decode over the WIT) and inside
/// the guest (`guest-tokenizer`: the vocabulary parsed on every call). Both
/// must give the same ids.
async fn host_vs_guest(runtime: &Runtime, backend: &Backend, texts: &[String]) {
    let hooks = &runtime.services.hooks;
    let tokenizer = backend.tokenizer.get().expect("the model's tokenizer");
    let vocabulary = Bytes::from(read(tokenizer.source()));
    let via_host = load_pre(runtime, &fixture_hook("reads-tokenizer")).await;
    let in_guest = load_pre(runtime, &guest_tokenizer_hook()).await;
    let tasks: Vec<(Vec<Datapoint>, HookContext)> = texts
        .iter()
        .map(|text| {
            let datapoints = vec![
                datapoint("text", "text/plain", Bytes::from(text.clone().into_bytes())),
                datapoint("tokenizer", "application/json", vocabulary.clone()),
            ];
            let ctx = HookContext {
                task_json: json!({"id": 1, "data": {"text": text}}).to_string(),
                task_id: Some(1),
                label_config: NER_CONFIG.to_owned(),
                model_inputs: backend.model.inputs().to_vec(),
                params: HookParams::default(),
                tokenizer: backend.tokenizer.clone(),
                ..HookContext::default()
            };
            (datapoints, ctx)
        })
        .collect();
    let limits = &backend.limits;
    assert!(
        pre_ids(hooks, &via_host, &tasks, limits).await
            == pre_ids(hooks, &in_guest, &tasks, limits).await,
        "the guest's tokenizer gives other ids than the host's"
    );
    for (label, hook, rounds) in [
        ("pre-hook using the host tokenizer", &via_host, 40),
        ("pre-hook tokenizing in the guest", &in_guest, 4),
    ] {
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(pre_ids(hooks, hook, &tasks, limits).await);
        }
        let per_task = started.elapsed() / (rounds * tasks.len()) as u32;
        println!("{label}: {:.1} µs per task", per_task.as_secs_f64() * 1e6);
    }
}

/// Each task's `input_ids` from a pre-hook, as bytes.
async fn pre_ids(
    hooks: &HookRuntime,
    hook: &Hook,
    tasks: &[(Vec<Datapoint>, HookContext)],
    limits: &HookLimits,
) -> Vec<Vec<u8>> {
    let mut all = Vec::with_capacity(tasks.len());
    for (datapoints, ctx) in tasks {
        let out = hook
            .call_pre(hooks, datapoints, ctx, limits, "bench")
            .await
            .expect("pre-hook");
        let ids = out.inputs.into_iter().find(|t| t.name() == "input_ids");
        match ids.map(|t| t.into_parts().3) {
            Some(TensorData::Bytes(bytes)) => all.push(bytes),
            _ => panic!("no int input_ids"),
        }
    }
    all
}

async fn load_pre(runtime: &Runtime, path: &std::path::Path) -> Hook {
    runtime
        .services
        .hooks
        .load(HookKind::Pre, Bytes::from(read(path)))
        .await
        .expect("pre-hook loads")
}

fn datapoint(field: &str, content_type: &str, data: Bytes) -> Datapoint {
    Datapoint {
        field: field.into(),
        uri: None,
        content_type: content_type.into(),
        data,
    }
}

/// The `guest-tokenizer` fixture, which the suite does not build (it is
/// not a default member of the fixtures workspace).
fn guest_tokenizer_hook() -> std::path::PathBuf {
    let dir = repo_root().join("tests/fixtures/hooks");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--quiet",
                "-p",
                "guest-tokenizer",
            ])
            .current_dir(&dir)
            .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "building guest-tokenizer failed"
    );
    dir.join("target/wasm32-wasip2/release/guest_tokenizer.wasm")
}
