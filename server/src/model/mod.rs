//! Models: where they come from (MLflow registry, runs, artifact URIs,
//! local folders and files, uploads), the on-disk model cache, MLmodel
//! parsing, and the ONNX Runtime session pool.
//!
//! This is the only module that touches `ort`. It does not know about hooks
//! or Label Studio: it turns a model reference into something that maps
//! named input tensors to named output tensors.

pub mod loader;
pub mod session;

pub use loader::{LoadedModel, ModelLoadError, ModelLoader};
pub use session::{OnnxModel, OrtError, OrtRuntime, SessionOptions};
