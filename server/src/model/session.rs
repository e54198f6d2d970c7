//! ONNX Runtime: loading the shared library, and a pool of sessions per
//! model so concurrent requests never share a `Session` (`Session::run`
//! takes `&mut self`; ORT's internals are not thread safe).
//!
//! Inference runs on the [`compute`](crate::compute) threads. Each session
//! uses one intra-op thread by default so that `pool size × threads ≤ cores`.
//! A model may also keep a *lone* session with one intra-op thread per core
//! whose threads spin between operators: an inference that starts while no
//! other inference of the model runs takes it, so a single request uses
//! every core instead of one. Without spinning a second thread gains
//! nothing (waking it for each operator costs what it saves); with it, two
//! such sessions busy at once lose a quarter of the throughput, hence one
//! lone session beside a pool of single-threaded ones.
//!
//! # Memory
//! ONNX Runtime allocates a session's tensors from a CPU arena. By default
//! [`OrtRuntime`] registers one arena for the whole process, capped at
//! [`default_memory_cap`] (or what [`OrtRuntime::init_with`] is given), and
//! every session allocates from it (`session.use_env_allocators`). A graph
//! that asks for more (an `Expand` to 16 GiB in a 128-byte file) then fails
//! that inference with an error instead of the kernel killing the process,
//! and the sessions of a pool share one high-water mark instead of one each.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ort::ep::ExecutionProvider;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::tensor::{ElementType, Tensor, TensorData, TensorSpec};

// Tensor bytes are little-endian (the WIT's encoding) and are handed to ONNX
// Runtime as they are.
#[cfg(not(target_endian = "little"))]
compile_error!("configurable-ls-backend supports little-endian targets only");

/// The ONNX Runtime version whose C API we were built against.
pub const ORT_VERSION: &str = "1.31.1";

/// The environment variable that sets the memory cap in MiB (0: no cap);
/// named in error messages so operators know what to change.
pub const ORT_MEMORY_ENV: &str = "CLS_ORT_MAX_MEMORY_MB";

/// The loaded ONNX Runtime library.
pub struct OrtRuntime {
    env: ort::environment::Environment,
    library: PathBuf,
    /// The cap on the CPU arena all sessions share; `None` when each
    /// session keeps its own unbounded arena.
    memory_cap: Option<u64>,
}

/// Why ONNX Runtime or a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    #[error(
        "ONNX Runtime library not found: set ORT_DYLIB_PATH to libonnxruntime.so.{ORT_VERSION} \
         (e.g. `pip download --no-deps onnxruntime=={ORT_VERSION}` and unzip \
         onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}), or run scripts/setup.sh"
    )]
    LibraryNotFound,
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    LibraryLoad { path: PathBuf, message: String },
    #[error("cannot load model {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("inference failed: {0}")]
    Run(String),
    #[error(
        "inference failed: the model needs more memory than ONNX Runtime may use \
         ({cap}, {ORT_MEMORY_ENV}); ONNX Runtime said: {message}"
    )]
    OutOfMemory { cap: String, message: String },
    #[error("model output '{name}' has element type {ty:?}, which hooks cannot receive")]
    UnsupportedOutput { name: String, ty: String },
}

impl OrtRuntime {
    /// Loads ONNX Runtime from `ORT_DYLIB_PATH` or a well-known location,
    /// with the [`default_memory_cap`].
    pub fn init() -> Result<Self, OrtError> {
        Self::init_with(None, default_memory_cap())
    }

    /// Loads ONNX Runtime from a given shared library, with the
    /// [`default_memory_cap`].
    pub fn init_from(library: &Path) -> Result<Self, OrtError> {
        Self::init_with(Some(library), default_memory_cap())
    }

    /// Loads ONNX Runtime from `library`, or from where [`discover_library`]
    /// finds it when `None`. With `memory_cap`,
    /// all sessions allocate from one CPU arena of at most that many bytes
    /// (weights included) and an inference that needs more fails with
    /// [`OrtError::OutOfMemory`]; with `None` (or 0), each session has its
    /// own arena without bound (ONNX Runtime's default).
    pub fn init_with(library: Option<&Path>, memory_cap: Option<u64>) -> Result<Self, OrtError> {
        let library = match library {
            Some(path) => path.to_owned(),
            None => discover_library().ok_or(OrtError::LibraryNotFound)?,
        };
        let library = library.as_path();
        let memory_cap = memory_cap.filter(|&cap| cap > 0);
        let load_error = |message: String| OrtError::LibraryLoad {
            path: library.to_owned(),
            message,
        };
        let env = ort::init_from(library)
            .map_err(|e| load_error(e.to_string()))?
            .with_name("configurable-ls-backend")
            .build()
            .map_err(|e| load_error(e.to_string()))?;
        if let Some(cap) = memory_cap {
            share_capped_cpu_arena(&env, cap).map_err(|e| {
                load_error(format!(
                    "cannot cap ONNX Runtime's memory at {} ({ORT_MEMORY_ENV}): {e}",
                    crate::size::human(cap)
                ))
            })?;
        }
        Ok(Self {
            env,
            library: library.to_owned(),
            memory_cap,
        })
    }

    /// The process's ONNX Runtime: ONNX Runtime allows one environment per
    /// process, so the first call loads it ([`OrtRuntime::init_with`]) and
    /// later calls share that one, whatever they ask for.
    pub fn shared(library: Option<&Path>, memory_cap: Option<u64>) -> Result<Arc<Self>, OrtError> {
        static SHARED: Mutex<Option<Arc<OrtRuntime>>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(runtime) = shared.as_ref() {
            return Ok(runtime.clone());
        }
        let runtime = Arc::new(Self::init_with(library, memory_cap)?);
        *shared = Some(runtime.clone());
        Ok(runtime)
    }

    /// The shared library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The cap on ONNX Runtime's CPU memory, `None` for no cap.
    pub fn memory_cap(&self) -> Option<u64> {
        self.memory_cap
    }
}

/// An inference error, recognising the arena's refusal to grow past
/// `memory_cap`.
fn run_error(memory_cap: Option<u64>, message: String) -> OrtError {
    match memory_cap {
        Some(cap) if is_arena_exhausted(&message) => OrtError::OutOfMemory {
            cap: crate::size::human(cap),
            message: arena_refusal(&message),
        },
        _ => OrtError::Run(message),
    }
}

/// The cap [`OrtRuntime::init`] applies: half of the memory this process
/// may use (physical memory, or the cgroup's limit when lower), leaving the
/// rest to hooks, downloads and the system. `None` when neither is known.
pub fn default_memory_cap() -> Option<u64> {
    crate::size::usable_memory().map(|bytes| bytes / 2)
}

/// Whether ONNX Runtime's message says an arena could not grow past its
/// cap (`BFCArena::Extend`: "Available memory of … is smaller than
/// requested bytes of …").
fn is_arena_exhausted(message: &str) -> bool {
    message.contains("Available memory of") && message.contains("smaller than requested bytes")
}

/// The readable part of an arena refusal: which node, and how many bytes
/// were available and requested (without ONNX Runtime's source location).
fn arena_refusal(message: &str) -> String {
    let refusal = message
        .find("Available memory of")
        .map_or(message, |at| &message[at..])
        .trim();
    let node = message
        .split_once("while running ")
        .and_then(|(_, rest)| rest.split_once(" node"))
        .map(|(op, _)| op);
    match node {
        Some(op) => format!("{refusal} ({op} node)"),
        None => refusal.to_owned(),
    }
}

/// Registers a CPU arena allocator capped at `max_bytes` in the
/// environment, for sessions built with `session.use_env_allocators`.
///
/// The arena grows in regions of doubling size, and near the cap by what is
/// left, so the cap is still reached by real use. A region is mapped, not
/// touched, so only the bytes in use count. Growing by exactly what each
/// tensor asks for instead fragments the arena into regions that fit only
/// their first tensor: PP-OCRv4's detector on photos of 736–1920 px held
/// 1.4–1.5 GiB that way, 0.65–0.74 GiB with doubling regions (at the same
/// speed, where shrinking the arena after each run cost 15–30 % per run).
#[allow(unsafe_code)]
fn share_capped_cpu_arena(
    env: &ort::environment::Environment,
    max_bytes: u64,
) -> Result<(), ort::Error> {
    use ort::AsPointer;
    use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};

    let memory = MemoryInfo::new(
        AllocationDevice::CPU,
        0,
        AllocatorType::Arena,
        MemoryType::Default,
    )?;
    let keys = [c"max_mem".as_ptr(), c"arena_extend_strategy".as_ptr()];
    // 0 = kNextPowerOfTwo.
    let values: [usize; 2] = [usize::try_from(max_bytes).unwrap_or(usize::MAX), 0];
    let api = ort::api();
    let mut config: *mut ort::sys::OrtArenaCfg = std::ptr::null_mut();
    // SAFETY: `keys` and `values` hold `keys.len()` entries each and outlive
    // the call; `config` is an out-pointer ONNX Runtime fills.
    unsafe {
        ort::Error::result_from_status((api.CreateArenaCfgV2)(
            keys.as_ptr(),
            values.as_ptr(),
            keys.len(),
            &mut config,
        ))?;
    }
    // SAFETY: `env` and `memory` are live handles owned by their wrappers;
    // ONNX Runtime reads `config` during the call only, so it is released
    // right after.
    let registered = unsafe {
        ort::Error::result_from_status((api.CreateAndRegisterAllocator)(
            env.ptr().cast_mut(),
            memory.ptr(),
            config,
        ))
    };
    // SAFETY: `config` came from CreateArenaCfgV2 and is released once.
    unsafe { (api.ReleaseArenaCfg)(config) };
    registered
}

/// Finds `libonnxruntime`: `ORT_DYLIB_PATH`, the project cache, a Python
/// `onnxruntime` package, then the standard library directories.
pub fn discover_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let cache = PathBuf::from(home).join(".cache/configurable-ls-backend");
        candidates.push(cache.join(format!(
            "onnxruntime-{ORT_VERSION}/libonnxruntime.so.{ORT_VERSION}"
        )));
    }
    for dir in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/opt/onnxruntime/lib",
    ] {
        candidates.push(Path::new(dir).join("libonnxruntime.so"));
        candidates.push(Path::new(dir).join(format!("libonnxruntime.so.{ORT_VERSION}")));
    }
    candidates.extend(python_capi_libraries());
    candidates.into_iter().find(|p| p.is_file())
}

/// `site-packages/onnxruntime/capi/libonnxruntime.so.*` under common prefixes.
fn python_capi_libraries() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let prefixes = ["/usr/lib", "/usr/local/lib", "/opt/venv/lib"];
    for prefix in prefixes {
        let Ok(entries) = std::fs::read_dir(prefix) else {
            continue;
        };
        for python in entries.flatten() {
            for packages in ["site-packages", "dist-packages"] {
                let capi = python.path().join(packages).join("onnxruntime/capi");
                if let Ok(libs) = std::fs::read_dir(&capi) {
                    found.extend(libs.flatten().map(|l| l.path()).filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("libonnxruntime.so"))
                    }));
                }
            }
        }
    }
    found
}

/// How to build the sessions of one model (mapped from MLflow's
/// `onnx_session_options` and `providers`, and the backend's config).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionOptions {
    /// Sessions in the pool (concurrent inferences).
    pub pool_size: usize,
    pub intra_threads: usize,
    /// Intra-op threads of the lone session (see the module docs); 1 means
    /// no lone session.
    pub lone_threads: usize,
    pub inter_threads: usize,
    pub parallel_execution: bool,
    /// 0, 1, 2 or 99 (all), as in MLflow/ONNX Runtime.
    pub optimization_level: u8,
    /// Execution providers in order of preference, e.g. `CUDAExecutionProvider`.
    pub providers: Vec<String>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            pool_size: std::thread::available_parallelism().map_or(1, usize::from),
            intra_threads: 1,
            lone_threads: 1,
            inter_threads: 1,
            parallel_execution: false,
            optimization_level: 99,
            providers: vec!["CPUExecutionProvider".into()],
        }
    }
}

/// A model with its pool of sessions and its declared inputs and outputs.
pub struct OnnxModel {
    sessions: Mutex<Vec<Session>>,
    available: tokio::sync::Semaphore,
    /// The lone session, when built and not running.
    lone: Mutex<Option<Session>>,
    /// Inferences started and not finished, waiting ones included.
    in_flight: AtomicUsize,
    /// Inferences the lone session ran.
    lone_runs: AtomicUsize,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    metadata: Vec<(String, String)>,
    providers: Vec<String>,
    /// The runtime's memory cap, to name it when an inference hits it.
    memory_cap: Option<u64>,
}

impl OnnxModel {
    /// Loads `pool_size` sessions of the model at `path` (blocking: call it
    /// from a blocking thread). External data files are found beside it.
    pub fn load(
        runtime: &OrtRuntime,
        path: &Path,
        options: &SessionOptions,
    ) -> Result<Self, OrtError> {
        let model = Self::load_first(runtime, path, options)?;
        model.add_sessions(runtime, path, options, options.pool_size.max(1) - 1)?;
        model.add_lone_session(runtime, path, options)?;
        Ok(model)
    }

    /// Loads the model with one session, ready to serve; the rest of the
    /// pool can follow with [`OnnxModel::add_sessions`] (in the background:
    /// graph optimisation dominates a configure and a restart).
    pub fn load_first(
        runtime: &OrtRuntime,
        path: &Path,
        options: &SessionOptions,
    ) -> Result<Self, OrtError> {
        let (session, providers) = build_session(runtime, path, options)?;
        let first = &session;
        let inputs = first
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        let outputs = first
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        let metadata = read_metadata(first);
        Ok(Self {
            available: tokio::sync::Semaphore::new(1),
            sessions: Mutex::new(vec![session]),
            lone: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            lone_runs: AtomicUsize::new(0),
            inputs,
            outputs,
            metadata,
            providers,
            memory_cap: runtime.memory_cap,
        })
    }

    /// Builds `count` more sessions, side by side, and adds them to the pool.
    pub fn add_sessions(
        &self,
        runtime: &OrtRuntime,
        path: &Path,
        options: &SessionOptions,
        count: usize,
    ) -> Result<(), OrtError> {
        let built: Vec<Result<(Session, Vec<String>), OrtError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..count)
                .map(|_| scope.spawn(|| build_session(runtime, path, options)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(OrtError::Load {
                            path: path.to_owned(),
                            message: "session build panicked".into(),
                        })
                    })
                })
                .collect()
        });
        for result in built {
            let (session, _) = result?;
            self.sessions
                .lock()
                .map_err(|_| OrtError::Run("session pool poisoned".into()))?
                .push(session);
            self.available.add_permits(1);
        }
        Ok(())
    }

    /// Builds the lone session when `options.lone_threads` asks for one
    /// (see the module docs).
    pub fn add_lone_session(
        &self,
        runtime: &OrtRuntime,
        path: &Path,
        options: &SessionOptions,
    ) -> Result<(), OrtError> {
        if options.lone_threads <= 1 {
            return Ok(());
        }
        let lone = SessionOptions {
            intra_threads: options.lone_threads,
            ..options.clone()
        };
        let (session, _) = build_session_spinning(runtime, path, &lone, true)?;
        *self
            .lone
            .lock()
            .map_err(|_| OrtError::Run("session pool poisoned".into()))? = Some(session);
        Ok(())
    }

    /// Whether the lone session is built (and not running right now).
    pub fn has_lone_session(&self) -> bool {
        self.lone.lock().is_ok_and(|lone| lone.is_some())
    }

    /// How many inferences the lone session has run.
    pub fn lone_runs(&self) -> usize {
        self.lone_runs.load(Ordering::Acquire)
    }

    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// Custom metadata (`metadata_props`), e.g. class names.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// Execution providers actually registered, in order.
    pub fn providers(&self) -> &[String] {
        &self.providers
    }

    /// Whether a provider other than the CPU's was registered (a GPU).
    pub fn accelerated(&self) -> bool {
        self.providers.iter().any(|p| p != CPU_PROVIDER)
    }

    /// Whether every input's first dimension is dynamic, so several tasks
    /// can be stacked into one run.
    pub fn batches_on_dim0(&self) -> bool {
        !self.inputs.is_empty() && self.inputs.iter().all(|i| i.shape.first() == Some(&-1))
    }

    /// Runs the model on named inputs; waits for a free session. Alone, it
    /// runs on the lone session when there is one.
    pub async fn run(self: &Arc<Self>, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, OrtError> {
        // Alone means no other inference of this model and no other heavy
        // work (pixels, other models) on the compute threads: spinning
        // threads beside busy ones cost more than they save.
        let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0
            && crate::compute::pool().pending() == 0;
        let _finished = InFlight(&self.in_flight);
        if let Some(session) = alone.then(|| self.take_lone()).flatten() {
            let model = Arc::clone(self);
            return crate::compute::pool()
                .run(move || model.run_lone(session, inputs))
                .await
                .map_err(|e| OrtError::Run(e.to_string()))?;
        }
        let _permit = self
            .available
            .acquire()
            .await
            .map_err(|e| OrtError::Run(e.to_string()))?;
        // On the compute threads, below the serving threads' priority: an
        // inference in place on an async worker (`block_in_place`) ran at
        // the priority of the threads answering `/health`.
        let model = Arc::clone(self);
        crate::compute::pool()
            .run(move || model.run_blocking(inputs))
            .await
            .map_err(|e| OrtError::Run(e.to_string()))?
    }

    /// Runs the model on the calling thread, on any free session.
    pub fn run_blocking(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, OrtError> {
        let mut session = self.take_session()?;
        let result = run_session(&mut session, inputs).map_err(|e| match e {
            OrtError::Run(message) => run_error(self.memory_cap, message),
            other => other,
        });
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.push(session);
        }
        result
    }

    /// Runs on the lone session, then puts it back.
    fn run_lone(&self, mut session: Session, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, OrtError> {
        let result = run_session(&mut session, inputs).map_err(|e| match e {
            OrtError::Run(message) => run_error(self.memory_cap, message),
            other => other,
        });
        if let Ok(mut lone) = self.lone.lock() {
            *lone = Some(session);
        }
        self.lone_runs.fetch_add(1, Ordering::AcqRel);
        result
    }

    fn take_lone(&self) -> Option<Session> {
        self.lone.lock().ok()?.take()
    }

    fn take_session(&self) -> Result<Session, OrtError> {
        self.sessions
            .lock()
            .map_err(|_| OrtError::Run("session pool poisoned".into()))?
            .pop()
            .ok_or_else(|| OrtError::Run("no free session (pool accounting bug)".into()))
    }
}

/// Counts an inference out of [`OnnxModel::run`] however it ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn build_session(
    runtime: &OrtRuntime,
    path: &Path,
    options: &SessionOptions,
) -> Result<(Session, Vec<String>), OrtError> {
    build_session_spinning(runtime, path, options, false)
}

fn build_session_spinning(
    runtime: &OrtRuntime,
    path: &Path,
    options: &SessionOptions,
    spinning: bool,
) -> Result<(Session, Vec<String>), OrtError> {
    let load_error = |message: String| OrtError::Load {
        path: path.to_owned(),
        message,
    };
    let (mut builder, used) = session_builder(runtime, options, spinning).map_err(load_error)?;
    let session = builder.commit_from_file(path).map_err(|e| {
        let message = e.to_string();
        match runtime.memory_cap {
            Some(cap) if is_arena_exhausted(&message) => load_error(format!(
                "its weights do not fit in ONNX Runtime's memory cap ({}, {ORT_MEMORY_ENV}) \
                 next to the models already loaded: {message}",
                crate::size::human(cap)
            )),
            _ => load_error(message),
        }
    })?;
    Ok((session, used))
}

fn session_builder(
    runtime: &OrtRuntime,
    options: &SessionOptions,
    spinning: bool,
) -> Result<(SessionBuilder, Vec<String>), String> {
    let level = match options.optimization_level {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::All,
    };
    let builder = Session::builder(&runtime.env)
        .map_err(|e| e.to_string())?
        .with_optimization_level(level)
        .map_err(|e| e.to_string())?
        .with_intra_threads(options.intra_threads.max(1))
        .map_err(|e| e.to_string())?
        .with_inter_threads(options.inter_threads.max(1))
        .map_err(|e| e.to_string())?
        .with_parallel_execution(options.parallel_execution)
        .map_err(|e| e.to_string())?
        // Spinning would burn a core per pool session while others run; the
        // lone session spins, runs only when nothing else does, and stops
        // spinning when its run ends (else its threads spin on beside the
        // next inferences: a third of the throughput lost under load).
        .with_intra_op_spinning(spinning)
        .map_err(|e| e.to_string())?
        .with_config_entry(
            "session.force_spinning_stop",
            if spinning { "1" } else { "0" },
        )
        .map_err(|e| e.to_string())?;
    let mut builder = if runtime.memory_cap.is_some() {
        builder.with_env_allocators().map_err(|e| e.to_string())?
    } else {
        builder
    };
    let mut used = Vec::new();
    for provider in &options.providers {
        match provider.as_str() {
            p if is_cpu_provider(p) => {}
            "CUDAExecutionProvider" | "cuda" => {
                let registered = ort::ep::CUDA::default()
                    .register(&mut builder)
                    .map_err(|e| e.to_string());
                match registered {
                    Ok(()) => used.push("CUDAExecutionProvider".to_owned()),
                    Err(e) => {
                        tracing::warn!("CUDA execution provider unavailable ({e}); using CPU")
                    }
                }
            }
            other => tracing::warn!("execution provider {other} is not supported here; using CPU"),
        }
    }
    used.push(CPU_PROVIDER.to_owned());
    Ok((builder, used))
}

/// ONNX Runtime's name for its CPU provider, always registered last.
const CPU_PROVIDER: &str = "CPUExecutionProvider";

/// Whether `provider` (as MLmodel or a config names it) is the CPU's.
pub(crate) fn is_cpu_provider(provider: &str) -> bool {
    matches!(provider, CPU_PROVIDER | "cpu")
}

/// Where the NVIDIA driver exposes its control device: absent when no GPU
/// is visible to this process (e.g. a container started without one).
const NVIDIA_CONTROL_DEVICE: &str = "/dev/nvidiactl";

/// Says once, at start-up, when CUDA is asked for but no GPU is visible:
/// every model then runs on the CPU, which an operator should know before
/// the first slow request rather than from a per-model warning.
pub fn warn_if_cuda_without_gpu(provider: &str) {
    let cuda = matches!(provider.trim(), "cuda" | "CUDAExecutionProvider");
    if cuda && !Path::new(NVIDIA_CONTROL_DEVICE).exists() {
        tracing::warn!(
            "execution provider CUDA requested, but no GPU is visible \
             ({NVIDIA_CONTROL_DEVICE} is missing; give the container the GPU, e.g. \
             `--gpus all` or `--device nvidia.com/gpu=all`): models run on the CPU"
        );
    }
}

fn spec(name: &str, dtype: &ValueType) -> TensorSpec {
    match dtype {
        ValueType::Tensor { ty, shape, .. } => TensorSpec {
            name: name.to_owned(),
            element_type: element_type(*ty),
            shape: shape.to_vec(),
        },
        _ => TensorSpec {
            name: name.to_owned(),
            element_type: None,
            shape: Vec::new(),
        },
    }
}

fn element_type(ty: TensorElementType) -> Option<ElementType> {
    Some(match ty {
        TensorElementType::Float32 => ElementType::F32,
        TensorElementType::Float64 => ElementType::F64,
        TensorElementType::Int64 => ElementType::I64,
        TensorElementType::Int32 => ElementType::I32,
        TensorElementType::Uint8 => ElementType::U8,
        TensorElementType::Int8 => ElementType::I8,
        TensorElementType::Bool => ElementType::Bool,
        TensorElementType::String => ElementType::String,
        _ => return None,
    })
}

/// A session's custom metadata (`metadata_props`), sorted by key.
pub fn read_metadata(session: &Session) -> Vec<(String, String)> {
    let Ok(metadata) = session.metadata() else {
        return Vec::new();
    };
    let keys = metadata.custom_keys().unwrap_or_default();
    let mut pairs: Vec<(String, String)> = keys
        .into_iter()
        .filter_map(|k| metadata.custom(&k).map(|v| (k, v)))
        .collect();
    pairs.sort();
    pairs
}

fn run_session(session: &mut Session, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, OrtError> {
    let values = inputs
        .iter()
        .map(|t| to_ort(t).map(|v| (t.name().to_owned(), v)))
        .collect::<Result<Vec<(String, SessionInputValue<'_>)>, OrtError>>()?;
    let outputs = session
        .run(values)
        .map_err(|e| OrtError::Run(e.to_string()))?;
    outputs
        .iter()
        .map(|(name, value)| from_ort(name, &value))
        .collect()
}

/// An input for ONNX Runtime that borrows the tensor's bytes where it can:
/// they are already little-endian elements, and a heap buffer is aligned
/// for any element type in practice. A misaligned buffer is copied once.
fn to_ort(tensor: &Tensor) -> Result<SessionInputValue<'_>, OrtError> {
    let name = tensor.name();
    let dims: Vec<i64> = tensor.shape().iter().map(|&d| d as i64).collect();
    let err = |e: ort::Error| OrtError::Run(format!("input '{name}': {e}"));
    macro_rules! numeric {
        ($ty:ty, $bytes:expr) => {
            match bytemuck::try_cast_slice::<u8, $ty>($bytes) {
                Ok(elements) => TensorRef::from_array_view((dims, elements))
                    .map(SessionInputValue::from)
                    .map_err(err),
                Err(_) => {
                    let copy: Vec<$ty> = bytemuck::pod_collect_to_vec($bytes);
                    ort::value::Tensor::from_array((dims, copy))
                        .map(SessionInputValue::from)
                        .map_err(err)
                }
            }
        };
    }
    match (tensor.element_type(), tensor.data()) {
        (ElementType::String, TensorData::Strings(strings)) => {
            ort::value::Tensor::from_string_array((dims, strings.as_slice()))
                .map(SessionInputValue::from)
                .map_err(err)
        }
        (ElementType::F32, TensorData::Bytes(b)) => numeric!(f32, b),
        (ElementType::F64, TensorData::Bytes(b)) => numeric!(f64, b),
        (ElementType::I64, TensorData::Bytes(b)) => numeric!(i64, b),
        (ElementType::I32, TensorData::Bytes(b)) => numeric!(i32, b),
        (ElementType::U8, TensorData::Bytes(b)) => numeric!(u8, b),
        (ElementType::I8, TensorData::Bytes(b)) => numeric!(i8, b),
        (ElementType::Bool, TensorData::Bytes(b)) => {
            let values: Vec<bool> = b.iter().map(|&v| v != 0).collect();
            ort::value::Tensor::from_array((dims, values))
                .map(SessionInputValue::from)
                .map_err(err)
        }
        (ty, _) => Err(OrtError::Run(format!("input '{name}': {ty} data mismatch"))),
    }
}

fn from_ort(name: &str, value: &ort::value::DynValueRef<'_>) -> Result<Tensor, OrtError> {
    let ty = value
        .dtype()
        .tensor_type()
        .and_then(element_type)
        .ok_or_else(|| OrtError::UnsupportedOutput {
            name: name.to_owned(),
            ty: format!("{:?}", value.dtype()),
        })?;
    let err = |e: ort::Error| OrtError::Run(format!("output '{name}': {e}"));
    macro_rules! numeric {
        ($ty:ty) => {{
            let (shape, values) = value.try_extract_tensor::<$ty>().map_err(err)?;
            (
                shape.to_vec(),
                TensorData::Bytes(bytemuck::cast_slice::<$ty, u8>(values).to_vec()),
            )
        }};
    }
    let (shape, data) = match ty {
        ElementType::F32 => numeric!(f32),
        ElementType::F64 => numeric!(f64),
        ElementType::I64 => numeric!(i64),
        ElementType::I32 => numeric!(i32),
        ElementType::U8 => numeric!(u8),
        ElementType::I8 => numeric!(i8),
        ElementType::Bool => {
            let (shape, values) = value.try_extract_tensor::<bool>().map_err(err)?;
            (
                shape.to_vec(),
                TensorData::Bytes(values.iter().map(|&v| u8::from(v)).collect()),
            )
        }
        ElementType::String => {
            let (shape, strings) = value.try_extract_strings().map_err(err)?;
            (shape.to_vec(), TensorData::Strings(strings))
        }
    };
    let shape = shape.iter().map(|&d| d.max(0) as u64).collect();
    Tensor::new(name, ty, shape, data).map_err(|e| OrtError::Run(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ONNX Runtime 1.31 answers when the capped arena cannot grow.
    const REFUSAL: &str = "Non-zero status code returned while running Expand node. Name:'' \
        Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:360 void* \
        onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) \
        Available memory of 1073741568 is smaller than requested bytes of 17179869184";

    #[test]
    fn an_arena_refusal_names_the_cap_the_node_and_the_bytes() {
        let error = run_error(Some(1 << 30), REFUSAL.to_owned());
        assert_eq!(
            error.to_string(),
            "inference failed: the model needs more memory than ONNX Runtime may use (1 GiB, \
             CLS_ORT_MAX_MEMORY_MB); ONNX Runtime said: Available memory of 1073741568 is \
             smaller than requested bytes of 17179869184 (Expand node)"
        );
    }

    #[test]
    fn other_inference_errors_are_left_as_they_are() {
        let error = run_error(Some(1 << 30), "shape mismatch".to_owned());
        assert!(matches!(error, OrtError::Run(m) if m == "shape mismatch"));
        let uncapped = run_error(None, REFUSAL.to_owned());
        assert!(matches!(uncapped, OrtError::Run(_)));
    }

    #[test]
    fn the_default_cap_is_half_of_this_machines_memory() {
        let usable = crate::size::usable_memory().unwrap_or(0);
        let cap = default_memory_cap().unwrap_or(0);
        assert!(cap > 0 && cap == usable / 2, "cap {cap}, memory {usable}");
    }
}
