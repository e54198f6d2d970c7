//! Models: where they come from (MLflow registry, runs, artifact URIs,
//! local folders and files, uploads), the on-disk model cache, MLmodel
//! parsing, and the ONNX Runtime session pool.
//!
//! This is the only module that touches `ort`. It does not know about hooks
//! or Label Studio: it turns a model reference into something that maps
//! named input tensors to named output tensors.

mod archive;
mod cache;
pub mod loader;
mod mlmodel;
mod registry;
pub mod session;
mod source;

pub use archive::{
    ArchiveError, ArchiveLimits, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_UNPACKED_BYTES, UploadKind,
    UploadedModel,
};
pub use cache::{CachedModel, DEFAULT_CACHE_MAX_BYTES, ModelCache, ModelLease};
pub use loader::{LoadedModel, ModelLoadError, ModelLoader};
pub use mlmodel::{
    ExecutionMode, ExecutionProvider, GraphOptimizationLevel, MlModel, MlModelError,
    ModelSignature, OnnxFlavor, OnnxSessionOptions, SignatureSpec,
};
pub use registry::{
    ArtifactLocation, ProgressFn, RegistryClient, RemoteFile, ResolvedModel, RetryPolicy,
    http_client,
};
pub use session::{OnnxModel, OrtError, OrtRuntime, SessionOptions, read_metadata};
pub use source::{
    MlflowAuth, MlflowConfig, MlflowSettings, ModelSource, ModelSourceError, ModelUri,
};
