//! ONNX Runtime: loading the shared library, and a pool of sessions per
//! model so concurrent requests never share a `Session` (`Session::run`
//! takes `&mut self`; ORT's internals are not thread safe).
//!
//! Inference runs on tokio's blocking threads. Each session uses one intra-op
//! thread by default so that `pool size × threads ≤ cores`.

use std::path::{Path, PathBuf};
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

/// The loaded ONNX Runtime library.
pub struct OrtRuntime {
    env: ort::environment::Environment,
    library: PathBuf,
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
    #[error("model output '{name}' has element type {ty:?}, which hooks cannot receive")]
    UnsupportedOutput { name: String, ty: String },
}

impl OrtRuntime {
    /// Loads ONNX Runtime from `ORT_DYLIB_PATH` or a well-known location.
    pub fn init() -> Result<Self, OrtError> {
        let library = discover_library().ok_or(OrtError::LibraryNotFound)?;
        Self::init_from(&library)
    }

    /// Loads ONNX Runtime from a given shared library.
    pub fn init_from(library: &Path) -> Result<Self, OrtError> {
        let load_error = |message: String| OrtError::LibraryLoad {
            path: library.to_owned(),
            message,
        };
        let env = ort::init_from(library)
            .map_err(|e| load_error(e.to_string()))?
            .with_name("configurable-ls-backend")
            .build()
            .map_err(|e| load_error(e.to_string()))?;
        Ok(Self {
            env,
            library: library.to_owned(),
        })
    }

    /// The shared library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }
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
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    metadata: Vec<(String, String)>,
    providers: Vec<String>,
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
            inputs,
            outputs,
            metadata,
            providers,
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

    /// Whether every input's first dimension is dynamic, so several tasks
    /// can be stacked into one run.
    pub fn batches_on_dim0(&self) -> bool {
        !self.inputs.is_empty() && self.inputs.iter().all(|i| i.shape.first() == Some(&-1))
    }

    /// Runs the model on named inputs; waits for a free session.
    pub async fn run(self: &Arc<Self>, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, OrtError> {
        let _permit = self
            .available
            .acquire()
            .await
            .map_err(|e| OrtError::Run(e.to_string()))?;
        // On the multi-threaded runtime, run in place: handing the work to
        // the blocking pool costs ~1 ms per call on a small VM (measured in
        // benches/pool.rs), while `block_in_place` only moves this worker's
        // other tasks elsewhere. A current-thread runtime (tests) must not
        // block, so it still uses the pool.
        let flavor = tokio::runtime::Handle::current().runtime_flavor();
        if flavor == tokio::runtime::RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(|| self.run_blocking(inputs));
        }
        let model = Arc::clone(self);
        tokio::task::spawn_blocking(move || model.run_blocking(inputs))
            .await
            .map_err(|e| OrtError::Run(e.to_string()))?
    }

    /// Runs the model on the calling thread, on any free session.
    pub fn run_blocking(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, OrtError> {
        let mut session = self.take_session()?;
        let result = run_session(&mut session, inputs);
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.push(session);
        }
        result
    }

    fn take_session(&self) -> Result<Session, OrtError> {
        self.sessions
            .lock()
            .map_err(|_| OrtError::Run("session pool poisoned".into()))?
            .pop()
            .ok_or_else(|| OrtError::Run("no free session (pool accounting bug)".into()))
    }
}

fn build_session(
    runtime: &OrtRuntime,
    path: &Path,
    options: &SessionOptions,
) -> Result<(Session, Vec<String>), OrtError> {
    let load_error = |message: String| OrtError::Load {
        path: path.to_owned(),
        message,
    };
    let (mut builder, used) = session_builder(runtime, options).map_err(load_error)?;
    let session = builder
        .commit_from_file(path)
        .map_err(|e| load_error(e.to_string()))?;
    Ok((session, used))
}

fn session_builder(
    runtime: &OrtRuntime,
    options: &SessionOptions,
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
        // Idle spinning would burn a core per session between requests.
        .with_intra_op_spinning(false)
        .map_err(|e| e.to_string())?;
    let mut builder = builder;
    let mut used = Vec::new();
    for provider in &options.providers {
        match provider.as_str() {
            "CPUExecutionProvider" | "cpu" => {}
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
    used.push("CPUExecutionProvider".to_owned());
    Ok((builder, used))
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
