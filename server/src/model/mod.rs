//! Models: where they come from (MLflow registry, runs, artifact URIs,
//! local folders and files, uploads), the on-disk model cache, MLmodel
//! parsing, the ONNX Runtime session pool, the model's own tokenizer, and
//! the limits on what a model may make the process allocate.
//!
//! This is the only module that touches `ort`. It does not know about hooks
//! or Label Studio: it turns a model reference into something that maps
//! named input tensors to named output tensors.

mod archive;
mod cache;
mod limits;
pub mod loader;
mod mlmodel;
mod registry;
pub mod session;
mod source;
mod tokenizer;
mod tokenizer_source;

pub use archive::{
    ArchiveError, ArchiveLimits, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_UNPACKED_BYTES, UploadKind,
    UploadedModel,
};
pub use cache::{CachedModel, DEFAULT_CACHE_MAX_BYTES, ModelCache, ModelLease};
pub use limits::{DEFAULT_MAX_INPUT_BYTES, InputTooLarge, MAX_INPUT_MB_ENV, ModelLimits};
pub use loader::{LoadedModel, ModelConfig, ModelLoadError, ModelLoader};
pub use mlmodel::{
    ExecutionMode, ExecutionProvider, GraphOptimizationLevel, MlModel, MlModelError,
    ModelSignature, OnnxFlavor, OnnxSessionOptions, SignatureSpec,
};
pub use registry::{
    ArtifactLocation, ProgressFn, RegistryClient, RemoteFile, ResolvedModel, RetryPolicy,
    http_client,
};
pub use session::{
    ORT_MEMORY_ENV, OnnxModel, OrtError, OrtRuntime, SessionOptions, default_memory_cap,
    read_metadata, warn_if_cuda_without_gpu,
};
pub use source::{
    MlflowAuth, MlflowConfig, MlflowSettings, ModelSource, ModelSourceError, ModelUri,
};
pub use tokenizer::{
    EncodeOptions, Encoding, MAX_TOKENIZER_FILE_BYTES, ModelTokenizer, TOKENIZER_FILE, Tokenizer,
    TokenizerError,
};
pub use tokenizer_source::{InvalidTokenizerSource, RemoteTokenizer, TokenizerSource};
