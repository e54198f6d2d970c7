//! One `/predict` call for one backend: fetch every task's datapoints →
//! pre-hook per task → batch → inference → split → post-hook per task →
//! validate against the label config.
//!
//! Each task succeeds or fails on its own: a failure becomes that task's
//! [`TaskError`] naming the stage, and the other tasks go on. Blocking work
//! (pixels, inference) runs off the tokio workers; hooks yield while they
//! run. This module owns the order of stages and the batching; the stages
//! themselves live in `fetch`, `hooks`, `model` and `labelconfig`.

pub mod builtin_pre;
mod waves;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::future::join_all;
use serde_json::Value;

use crate::backend::Backend;
use crate::budget::{BudgetError, MemoryBudget};
use crate::fetch::{FetchRequest, Fetcher};
use crate::hooks::{Datapoint, DatapointInfo, HookContext, HookRuntime, PreOutput};
use crate::labelconfig::{self, LabelConfig};
use crate::tensor::Tensor;

/// What the pipeline needs besides the backend itself.
#[derive(Clone)]
pub struct Services {
    pub hooks: Arc<HookRuntime>,
    pub fetcher: Arc<Fetcher>,
    /// Every wave of tasks reserves its memory here first.
    pub budget: Arc<MemoryBudget>,
    waves: Arc<WaveSlots>,
}

impl Services {
    /// The pipeline's services; request work reserves memory in `budget`.
    pub fn new(hooks: Arc<HookRuntime>, fetcher: Arc<Fetcher>, budget: Arc<MemoryBudget>) -> Self {
        Self {
            hooks,
            fetcher,
            budget,
            waves: Arc::default(),
        }
    }
}

/// Tasks in flight per backend, counted in shares of a full wave: at most
/// one full wave's worth per core (inference runs on one session per core,
/// so more only holds more tasks' buffers in memory without finishing
/// sooner), but a wave of a few tasks takes only its share. Small requests
/// then run side by side and keep the cores busy while others fetch or run
/// hooks: when every wave took a whole slot, four clients sending one task
/// each left a quarter of the CPU idle. Requests queue here in FIFO order.
#[derive(Default)]
struct WaveSlots {
    by_backend: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl WaveSlots {
    async fn acquire(
        &self,
        backend: &str,
        tasks: usize,
        wave_len: usize,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slots = {
            let mut map = self.by_backend.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(backend.to_owned())
                .or_insert_with(|| {
                    let cores = std::thread::available_parallelism().map_or(2, usize::from);
                    Arc::new(tokio::sync::Semaphore::new(
                        cores * waves::WAVE_UNITS as usize,
                    ))
                })
                .clone()
        };
        slots
            .acquire_many_owned(waves::wave_units(tasks, wave_len))
            .await
            .ok()
    }
}

/// A `/predict` request, as Label Studio sends it.
#[derive(Debug, Clone, Default)]
pub struct PredictRequest {
    pub tasks: Vec<Value>,
    /// The project's label config (LS sends it with every request).
    pub label_config: Option<String>,
    /// `params.context` of an interactive request.
    pub interactive_context: Option<Value>,
    /// Label Studio's URL as `/setup` reported it, for relative file URLs
    /// when none is configured.
    pub label_studio_url: Option<String>,
}

/// The stage at which a task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Fetch,
    PreHook,
    Inference,
    PostHook,
    Validation,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::PreHook => "pre_hook",
            Self::Inference => "inference",
            Self::PostHook => "post_hook",
            Self::Validation => "validation",
        }
    }
}

/// Why one task produced no prediction.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub stage: Stage,
    pub message: String,
}

impl TaskError {
    fn new(stage: Stage, message: impl Into<String>) -> Self {
        Self {
            stage,
            message: message.into(),
        }
    }
}

/// One task's predictions (each already validated and carrying the
/// backend's model version), or why there are none.
pub type TaskResult = Result<Vec<Value>, TaskError>;

/// Time spent per stage, summed over the request's tasks.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StageTimes {
    pub fetch: Duration,
    pub pre_hook: Duration,
    pub inference: Duration,
    pub post_hook: Duration,
    pub validation: Duration,
}

impl StageTimes {
    fn add(&mut self, other: &Self) {
        self.fetch += other.fetch;
        self.pre_hook += other.pre_hook;
        self.inference += other.inference;
        self.post_hook += other.post_hook;
        self.validation += other.validation;
    }

    /// Adds a task's fetch and pre-hook time; passes the task on.
    fn count_prepare(
        &mut self,
        prepared: Result<(Prepared, Duration, Duration), TaskError>,
    ) -> Result<Prepared, TaskError> {
        prepared.map(|(p, fetch, pre)| {
            self.fetch += fetch;
            self.pre_hook += pre;
            p
        })
    }

    /// Adds a task's post-hook and validation time; passes its
    /// predictions on.
    fn count_finish(
        &mut self,
        finished: Result<(Vec<Value>, Duration, Duration), TaskError>,
    ) -> TaskResult {
        finished.map(|(predictions, post, validation)| {
            self.post_hook += post;
            self.validation += validation;
            predictions
        })
    }
}

/// A task after its pre-hook: model inputs plus what the post-hook needs.
struct Prepared {
    ctx: HookContext,
    pre: PreOutput,
}

/// Runs the whole pipeline; one result per task, in task order.
///
/// Tasks go through in waves (`wave_len` tasks at a time, each wave
/// holding a reservation of the memory budget for its tasks' estimated
/// size), so a request of any length streams through bounded memory. The
/// label config is decided and parsed once for the whole request.
///
/// Fails as a whole only when the memory budget stays full for its whole
/// wait ([`BudgetError::Busy`]): the caller answers 503 and Label Studio
/// retries. A task too large for any budget fails alone, with the numbers.
pub async fn predict(
    services: &Services,
    backend: &Arc<Backend>,
    request: PredictRequest,
) -> Result<(Vec<TaskResult>, StageTimes), BudgetError> {
    let label = RequestLabelConfig::decide(backend, request.label_config.as_deref());
    let interactive = request.interactive_context.as_ref().map(Value::to_string);
    let task_bytes = waves::task_bytes(backend, label.xml.len());
    let wave_len = waves::wave_len(
        task_bytes,
        services.budget.request_share(),
        backend.config.batch_size.max(1),
        // Tasks in flight per request: enough to keep every core busy
        // while other tasks fetch or run hooks.
        2 * crate::compute::pool().size(),
    );
    let request = Arc::new(request);
    let scope = Scope {
        services,
        backend,
        request: &request,
        label: &label,
        interactive: interactive.as_deref(),
    };
    if !stacks_tasks(backend) {
        return stream_tasks_apart(scope, task_bytes, wave_len).await;
    }
    let mut results = Vec::with_capacity(request.tasks.len());
    let mut times = StageTimes::default();
    for wave in chunks(request.tasks.len(), wave_len) {
        let what = format!("{} task(s) of this model", wave.len());
        let bytes = task_bytes.saturating_mul(wave.len() as u64);
        // The slot first: a wave that waits for its turn holds no memory.
        let _slot = services
            .waves
            .acquire(backend.name.as_str(), wave.len(), wave_len)
            .await;
        let reservation = services
            .budget
            .reserve(backend.name.as_str(), bytes, &what)
            .await;
        match reservation {
            Ok(_held) => {
                let (wave_results, wave_times) = run_wave(scope, wave).await;
                results.extend(wave_results);
                times.add(&wave_times);
            }
            Err(e @ BudgetError::TooLarge { .. }) => {
                let error = TaskError::new(Stage::PreHook, e.to_string());
                results.extend(wave.map(|_| Err(error.clone())));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((results, times))
}

/// The request's tasks when they are not stacked: each goes through on
/// its own (fetch + pre-hook, inference, post-hook), at most `wave_len` of
/// them in flight, each holding its own slot and memory reservation. A
/// task starts as soon as one finishes, so no wave waits for its slowest
/// task while cores idle (NER in waves of 4 left 15 % of the CPU idle).
async fn stream_tasks_apart(
    scope: Scope<'_>,
    task_bytes: u64,
    wave_len: usize,
) -> Result<(Vec<TaskResult>, StageTimes), BudgetError> {
    let name = scope.backend.name.as_str();
    let tasks = (0..scope.request.tasks.len()).map(|index| async move {
        let _slot = scope.services.waves.acquire(name, 1, wave_len).await;
        let reservation = scope
            .services
            .budget
            .reserve(name, task_bytes, "1 task of this model")
            .await;
        match reservation {
            Ok(_held) => Ok(run_task_apart(scope, index).await),
            Err(e @ BudgetError::TooLarge { .. }) => Ok((
                Err(TaskError::new(Stage::PreHook, e.to_string())),
                StageTimes::default(),
            )),
            Err(e) => Err(e),
        }
    });
    let mut in_order = futures::stream::iter(tasks).buffered(wave_len.max(1));
    let mut results = Vec::with_capacity(scope.request.tasks.len());
    let mut times = StageTimes::default();
    while let Some(done) = in_order.next().await {
        let (result, task_times) = done?;
        times.add(&task_times);
        results.push(result);
    }
    Ok((results, times))
}

/// `0..len` in consecutive ranges of at most `size`.
fn chunks(len: usize, size: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let size = size.max(1);
    (0..len)
        .step_by(size)
        .map(move |start| start..(start + size).min(len))
}

/// What every stage of one request's tasks needs.
#[derive(Clone, Copy)]
struct Scope<'a> {
    services: &'a Services,
    backend: &'a Arc<Backend>,
    request: &'a Arc<PredictRequest>,
    label: &'a RequestLabelConfig,
    interactive: Option<&'a str>,
}

/// Whether tasks of a wave can be stacked into one inference. When they
/// cannot, each task goes through on its own ([`stream_tasks_apart`]) instead
/// of waiting at each stage for the slowest task of its wave.
fn stacks_tasks(backend: &Backend) -> bool {
    backend.model.batches_on_dim0()
        && backend.config.batch_size > 1
        && waves::input_bytes(backend).saturating_mul(2) <= max_batch_bytes(&backend.model) as u64
}

/// One wave of stacked tasks: every task's fetch + pre-hook, the wave's
/// inference, every task's post-hook + validation. Results in task order.
async fn run_wave(scope: Scope<'_>, wave: std::ops::Range<usize>) -> (Vec<TaskResult>, StageTimes) {
    let mut times = StageTimes::default();
    let mut prepared: Vec<Result<Prepared, TaskError>> =
        join_all(wave.map(|index| prepare_task(scope, index)))
            .await
            .into_iter()
            .map(|r| times.count_prepare(r))
            .collect();

    let started = Instant::now();
    let outputs = infer(scope.backend, &mut prepared).await;
    times.inference += started.elapsed();

    let finished = join_all(
        prepared
            .into_iter()
            .zip(outputs)
            .map(|(prepared, outputs)| finish_task(scope, prepared, outputs)),
    )
    .await;
    let results = finished
        .into_iter()
        .map(|r| times.count_finish(r))
        .collect();
    (results, times)
}

/// One task that is not stacked with others: its fetch + pre-hook,
/// inference and post-hook, one after the other.
async fn run_task_apart(scope: Scope<'_>, index: usize) -> (TaskResult, StageTimes) {
    let mut times = StageTimes::default();
    let mut prepared = times.count_prepare(prepare_task(scope, index).await);
    let started = Instant::now();
    let outputs = infer(scope.backend, std::slice::from_mut(&mut prepared))
        .await
        .pop()
        .unwrap_or_else(|| Err(TaskError::new(Stage::Inference, "task was not scheduled")));
    times.inference += started.elapsed();
    let finished = finish_task(scope, prepared, outputs).await;
    (times.count_finish(finished), times)
}

/// Fetch + pre-hook of the request's task `index`, as a stage of its own.
async fn prepare_task(
    scope: Scope<'_>,
    index: usize,
) -> Result<(Prepared, Duration, Duration), TaskError> {
    let ctx = base_context(
        scope.backend,
        &scope.request.tasks[index],
        &scope.label.xml,
        scope.interactive.map(str::to_owned),
    );
    let (services, backend) = (scope.services.clone(), scope.backend.clone());
    let (request, parsed) = (scope.request.clone(), scope.label.parsed.clone());
    spawn_stage(Stage::PreHook, async move {
        let task = &request.tasks[index];
        prepare(&services, &backend, parsed.as_deref(), &request, task, ctx).await
    })
    .await
}

/// Post-hook + validation of one task, as a stage of its own.
async fn finish_task(
    scope: Scope<'_>,
    prepared: Result<Prepared, TaskError>,
    outputs: Result<Vec<Tensor>, TaskError>,
) -> Result<(Vec<Value>, Duration, Duration), TaskError> {
    let (services, backend) = (scope.services.clone(), scope.backend.clone());
    let parsed = scope.label.parsed.clone();
    spawn_stage(Stage::PostHook, async move {
        let (prepared, outputs) = (prepared?, outputs?);
        finish(&services, &backend, parsed.as_deref(), prepared, outputs).await
    })
    .await
}

/// Runs one task's stage on the runtime; a panic there fails that task
/// only, and dropping the request (a client that went away) stops it.
async fn spawn_stage<T: Send + 'static>(
    stage: Stage,
    work: impl Future<Output = Result<T, TaskError>> + Send + 'static,
) -> Result<T, TaskError> {
    let mut handle = AbortOnDrop(tokio::spawn(work));
    (&mut handle.0)
        .await
        .unwrap_or_else(|e| Err(TaskError::new(stage, format!("internal error: {e}"))))
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The label config of one request, decided once: the request's (what
/// Label Studio will render) when it parses, else the configured one. The
/// hooks see the XML of the same config the validator checks against.
struct RequestLabelConfig {
    parsed: Option<Arc<LabelConfig>>,
    xml: String,
}

impl RequestLabelConfig {
    fn decide(backend: &Backend, from_request: Option<&str>) -> Self {
        let configured = || Self {
            parsed: backend.label_config.clone(),
            xml: backend.config.label_config.clone().unwrap_or_default(),
        };
        let Some(xml) = from_request.filter(|x| !x.trim().is_empty()) else {
            return configured();
        };
        match LabelConfig::parse(xml) {
            Ok(config) => Self {
                parsed: Some(Arc::new(config)),
                xml: xml.to_owned(),
            },
            Err(e) => {
                tracing::warn!(backend = %backend.name, "request label config unusable ({e}); using the configured one");
                configured()
            }
        }
    }
}

fn base_context(
    backend: &Backend,
    task: &Value,
    label_config: &str,
    interactive: Option<String>,
) -> HookContext {
    HookContext {
        task_json: task.to_string(),
        task_id: task.get("id").and_then(Value::as_i64),
        label_config: label_config.to_owned(),
        model_version: backend.model_version.clone(),
        interactive_context: interactive,
        model_inputs: backend.model.inputs().to_vec(),
        model_outputs: backend.model.outputs().to_vec(),
        model_metadata: backend.model_metadata.clone(),
        datapoints: Vec::new(),
        carry: None,
        params: backend.config.params.clone(),
        tokenizer: backend.tokenizer.clone(),
    }
}

/// Fetch + pre-hook for one task. Returns the time spent in each.
async fn prepare(
    services: &Services,
    backend: &Backend,
    label_config: Option<&LabelConfig>,
    request: &PredictRequest,
    task: &Value,
    mut ctx: HookContext,
) -> Result<(Prepared, Duration, Duration), TaskError> {
    let started = Instant::now();
    let datapoints = fetch_datapoints(services, backend, label_config, request, task).await?;
    let fetched = started.elapsed();

    let started = Instant::now();
    let (pre, infos) = match &backend.pre_hook {
        Some(hook) => {
            let pre = hook
                .call_pre(
                    &services.hooks,
                    &datapoints,
                    &ctx,
                    &backend.limits,
                    backend.name.as_str(),
                )
                .await
                .map_err(|e| TaskError::new(Stage::PreHook, e.to_string()))?;
            let infos = describe_all(datapoints).await;
            (pre, infos)
        }
        None => {
            let inputs = backend.model.inputs().to_vec();
            let max_decode = backend.limits.memory_bytes;
            let tokenizer = backend.tokenizer.clone();
            let windows = backend.text_windows;
            // Off the async workers, one decode per core.
            crate::compute::pool()
                .run(move || {
                    builtin_pre::run(&datapoints, &inputs, &tokenizer, windows, max_decode)
                })
                .await
                .map_err(|e| TaskError::new(Stage::PreHook, e.to_string()))?
                .map_err(|e| TaskError::new(Stage::PreHook, format!("built-in pre-hook: {e}")))?
        }
    };
    check_inputs(backend, &pre)?;
    ctx.datapoints = infos;
    ctx.carry = pre.carry.clone();
    Ok((Prepared { ctx, pre }, fetched, started.elapsed()))
}

async fn describe_all(datapoints: Vec<Datapoint>) -> Vec<DatapointInfo> {
    tokio::task::spawn_blocking(move || datapoints.iter().map(builtin_pre::describe).collect())
        .await
        .unwrap_or_default()
}

/// Every model input must be provided exactly once, with the declared
/// element type and rank.
fn check_inputs(backend: &Backend, pre: &PreOutput) -> Result<(), TaskError> {
    let fail = |m: String| Err(TaskError::new(Stage::PreHook, m));
    for spec in backend.model.inputs() {
        let Some(tensor) = pre.inputs.iter().find(|t| t.name() == spec.name) else {
            return fail(format!(
                "pre-hook returned no tensor for model input '{}' (it returned: {})",
                spec.name,
                names(&pre.inputs)
            ));
        };
        if spec.element_type != Some(tensor.element_type())
            || spec.shape.len() != tensor.shape().len()
        {
            return fail(format!(
                "pre-hook tensor '{}' is {} {:?}, but the model expects {} {:?}",
                spec.name,
                tensor.element_type(),
                tensor.shape(),
                spec.element_type
                    .map_or("unsupported".into(), |t| t.to_string()),
                spec.shape
            ));
        }
    }
    if pre.inputs.len() != backend.model.inputs().len() {
        return fail(format!(
            "pre-hook returned tensors {}, but the model's inputs are {}",
            names(&pre.inputs),
            backend
                .model
                .inputs()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

fn names(tensors: &[Tensor]) -> String {
    tensors
        .iter()
        .map(Tensor::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The task fields the label config's object tags read, fetched (URLs) or
/// passed as UTF-8 (inline text). Without a label config every data field
/// is used.
async fn fetch_datapoints(
    services: &Services,
    backend: &Backend,
    label_config: Option<&LabelConfig>,
    request: &PredictRequest,
    task: &Value,
) -> Result<Vec<Datapoint>, TaskError> {
    let fields = task_fields(task, label_config)?;
    let task_id = task.get("id").and_then(Value::as_i64);
    let fetches = fields.into_iter().map(|field| async move {
        match field.source {
            Source::Inline(text) => Ok(Datapoint {
                field: field.name,
                uri: None,
                content_type: "text/plain; charset=utf-8".into(),
                data: text.into_bytes().into(),
            }),
            Source::Url(url) => {
                let fetched = services
                    .fetcher
                    .fetch(
                        &backend.fetch,
                        &FetchRequest {
                            value: url.clone(),
                            task_id,
                            fallback_label_studio_url: request.label_studio_url.clone(),
                        },
                    )
                    .await
                    .map_err(|e| {
                        TaskError::new(Stage::Fetch, format!("field '{}': {e}", field.name))
                    })?;
                Ok(Datapoint {
                    field: field.name,
                    uri: Some(url),
                    content_type: fetched.content_type,
                    data: fetched.bytes,
                })
            }
        }
    });
    join_all(fetches).await.into_iter().collect()
}

struct Field {
    name: String,
    source: Source,
}

enum Source {
    Inline(String),
    Url(String),
}

fn task_fields(task: &Value, label_config: Option<&LabelConfig>) -> Result<Vec<Field>, TaskError> {
    let data = task
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| TaskError::new(Stage::Fetch, "task has no \"data\" object"))?;
    let as_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    match label_config {
        Some(config) => {
            for object in config.objects() {
                let Some(name) = &object.field else { continue };
                let Some(value) = data.get(name) else {
                    return Err(TaskError::new(
                        Stage::Fetch,
                        format!(
                            "task data has no field '{name}' (read by <{} name=\"{}\">); it has: {}",
                            object.kind,
                            object.name,
                            data.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                if matches!(value, Value::Object(_) | Value::Array(_) | Value::Null) {
                    return Err(TaskError::new(
                        Stage::Fetch,
                        format!(
                            "task data field '{name}' (read by <{} name=\"{}\">) is {}, not \
                             text or a URL",
                            object.kind,
                            object.name,
                            crate::labelconfig::json_type(value)
                        ),
                    ));
                }
                let source = if object.value_is_url() {
                    Source::Url(as_text(value))
                } else {
                    Source::Inline(as_text(value))
                };
                fields.entry(name.clone()).or_insert(Field {
                    name: name.clone(),
                    source,
                });
            }
        }
        None => {
            for (name, value) in data {
                let text = as_text(value);
                let source = if looks_like_url(&text) {
                    Source::Url(text)
                } else {
                    Source::Inline(text)
                };
                fields.insert(
                    name.clone(),
                    Field {
                        name: name.clone(),
                        source,
                    },
                );
            }
        }
    }
    Ok(fields.into_values().collect())
}

fn looks_like_url(s: &str) -> bool {
    [
        "http://",
        "https://",
        "/data/",
        "data:",
        "s3://",
        "gs://",
        "azure-blob://",
        "azure-spi://",
    ]
    .iter()
    .any(|p| s.starts_with(p))
}

/// Largest stacked batch in bytes of input on the CPU. ONNX Runtime's arena
/// grows to the largest batch it has seen and keeps that size for the life
/// of the session, while stacking buys a CPU nothing: the classification
/// example runs at the same images/s at batch 1 and 16. Measured under the
/// bench's 16 tasks × 4 clients: a 32 MiB cap (16 photos per run) peaked at
/// 374–384 MiB, 1 MiB (one photo) at 188–189 MiB, same tasks/s. Small
/// inputs (text, tabular rows) still stack up to `batch_size`.
const MAX_CPU_BATCH_BYTES: usize = 1 << 20;

/// Largest stacked batch on a GPU, where a batch does pay.
const MAX_GPU_BATCH_BYTES: usize = 32 << 20;

/// The batch cap for `model`'s execution providers.
fn max_batch_bytes(model: &crate::model::OnnxModel) -> usize {
    if model.accelerated() {
        MAX_GPU_BATCH_BYTES
    } else {
        MAX_CPU_BATCH_BYTES
    }
}

/// Runs inference for every prepared task: stacked along dimension 0 when
/// the model allows it (tasks with identical input shapes, up to the batch
/// size and [`max_batch_bytes`]), one by one otherwise. Each task's inputs
/// move into its run (the post-hook does not need them), so they are
/// neither copied nor kept past it.
async fn infer(
    backend: &Backend,
    prepared: &mut [Result<Prepared, TaskError>],
) -> Vec<Result<Vec<Tensor>, TaskError>> {
    let mut results: Vec<Option<Result<Vec<Tensor>, TaskError>>> =
        prepared.iter().map(|_| None).collect();
    let batch_size = if backend.model.batches_on_dim0() {
        backend.config.batch_size.max(1)
    } else {
        1
    };
    let max_bytes = max_batch_bytes(&backend.model);
    let mut groups: BTreeMap<Vec<Vec<u64>>, Vec<usize>> = BTreeMap::new();
    for (index, p) in prepared.iter().enumerate() {
        match p {
            Ok(p) => groups
                .entry(p.pre.inputs.iter().map(|t| t.shape().to_vec()).collect())
                .or_default()
                .push(index),
            Err(e) => results[index] = Some(Err(e.clone())),
        }
    }
    let batches: Vec<Vec<usize>> = groups
        .into_values()
        .flat_map(|members| {
            let task_bytes = members
                .first()
                .and_then(|&i| prepared[i].as_ref().ok())
                .map_or(0, |p| {
                    p.pre.inputs.iter().map(Tensor::byte_len).sum::<usize>()
                });
            let per_batch = batch_size.min((max_bytes / task_bytes.max(1)).max(1));
            members
                .chunks(per_batch)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    let runs: Vec<_> = batches
        .into_iter()
        .map(|members| {
            let inputs: Vec<Vec<Tensor>> = members
                .iter()
                .filter_map(|&i| match &mut prepared[i] {
                    Ok(p) => Some(std::mem::take(&mut p.pre.inputs)),
                    Err(_) => None,
                })
                .collect();
            async move {
                let outputs = run_batch(backend, inputs).await;
                (members, outputs)
            }
        })
        .collect();
    for (members, outputs) in join_all(runs).await {
        match outputs {
            Ok(per_task) => {
                for (index, outputs) in members.into_iter().zip(per_task) {
                    results[index] = Some(Ok(outputs));
                }
            }
            Err(e) => {
                for index in members {
                    results[index] = Some(Err(e.clone()));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(TaskError::new(Stage::Inference, "task was not scheduled")))
        })
        .collect()
}

/// One inference over the inputs of `tasks` (each task's tensors by input
/// name), stacked when there are several; the outputs split per task.
async fn run_batch(
    backend: &Backend,
    tasks: Vec<Vec<Tensor>>,
) -> Result<Vec<Vec<Tensor>>, TaskError> {
    let fail = |m: String| TaskError::new(Stage::Inference, m);
    let count = tasks.len();
    let inputs = match <[Vec<Tensor>; 1]>::try_from(tasks) {
        Ok([only]) => only,
        Err(mut tasks) => backend
            .model
            .inputs()
            .iter()
            .map(|spec| {
                let parts = tasks
                    .iter_mut()
                    .filter_map(|inputs| {
                        let at = inputs.iter().position(|t| t.name() == spec.name)?;
                        Some(inputs.swap_remove(at))
                    })
                    .collect();
                Tensor::concat(parts).map_err(|e| fail(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    // Its own task: the request's other batches must reach the other
    // sessions while this one waits for its compute thread.
    let model = backend.model.clone();
    let outputs = spawn_stage(Stage::Inference, async move {
        model
            .run(inputs)
            .await
            .map_err(|e| TaskError::new(Stage::Inference, e.to_string()))
    })
    .await?;
    if count == 1 {
        return Ok(vec![outputs]);
    }
    let mut per_task: Vec<Vec<Tensor>> = vec![Vec::with_capacity(outputs.len()); count];
    for output in outputs {
        let name = output.name().to_owned();
        let parts = output.split(count).map_err(|e| {
            fail(format!(
                "{e}; set batch_size to 1 for this model (output '{name}' is not batched on dimension 0)"
            ))
        })?;
        for (task, part) in per_task.iter_mut().zip(parts) {
            task.push(part);
        }
    }
    Ok(per_task)
}

/// Post-hook + validation for one task.
async fn finish(
    services: &Services,
    backend: &Backend,
    label_config: Option<&LabelConfig>,
    prepared: Prepared,
    outputs: Vec<Tensor>,
) -> Result<(Vec<Value>, Duration, Duration), TaskError> {
    let started = Instant::now();
    let json = backend
        .post_hook
        .call_post(
            &services.hooks,
            outputs,
            &prepared.ctx,
            &backend.limits,
            backend.name.as_str(),
        )
        .await
        .map_err(|e| TaskError::new(Stage::PostHook, e.to_string()))?;
    let post = started.elapsed();

    let started = Instant::now();
    let predictions = validate(backend, label_config, &json)?;
    Ok((predictions, post, started.elapsed()))
}

/// Parses and validates a post-hook's JSON, fills region ids and stamps the
/// backend's model version on every prediction (Label Studio dedups by it).
fn validate(
    backend: &Backend,
    label_config: Option<&LabelConfig>,
    json: &str,
) -> Result<Vec<Value>, TaskError> {
    let fail = |m: String| TaskError::new(Stage::Validation, format!("post-hook output {m}"));
    let output: Value =
        serde_json::from_str(json).map_err(|e| fail(format!("is not valid JSON: {e}")))?;
    let mut next_id = || uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let predictions = match label_config {
        Some(config) => {
            labelconfig::validate_predictions(config, output, &mut next_id).map_err(|e| {
                fail(format!(
                    "is not a valid prediction for this label config: {e}"
                ))
            })?
        }
        None => structural_only(output).map_err(fail)?,
    };
    Ok(predictions
        .into_iter()
        .map(|mut p| {
            if let Some(object) = p.as_object_mut() {
                object.insert(
                    "model_version".into(),
                    Value::String(backend.model_version.clone()),
                );
            }
            p
        })
        .collect())
}

/// Without a label config only the shape Label Studio needs is checked.
fn structural_only(output: Value) -> Result<Vec<Value>, String> {
    let predictions = match output {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        other => {
            return Err(format!(
                "must be a prediction object or a list of them, not {other}"
            ));
        }
    };
    for (i, p) in predictions.iter().enumerate() {
        if !p.get("result").is_some_and(Value::is_array) {
            return Err(format!("[{i}] has no \"result\" list"));
        }
    }
    Ok(predictions)
}
