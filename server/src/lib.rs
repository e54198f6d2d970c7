//! configurable-ls-backend: any MLflow ONNX model as a Label Studio ML
//! backend, shaped by sandboxed WebAssembly hooks.
//!
//! This library is the server; the command line that drives it (and talks
//! to it) is the binary's own code, in `src/cli`.
//!
//! # Layout
//! A request enters at the HTTP edge and flows downward:
//!
//! - [`app`]: shared state, the route table, the error type, `run`.
//! - [`api`]: the JSON bodies the routes answer with, as types the command
//!   line reads back.
//! - [`protocol`]: the Label Studio ML backend routes (`/health`, `/setup`,
//!   `/predict`, `/webhook`, `/versions`), at the root and under `/backends/{name}`.
//! - [`admin`]: `/configure` and `/backends` (create, replace, inspect, delete).
//! - [`auth`]: basic auth for the Label Studio routes and `/metrics`, and the
//!   admin check (token, or loopback clients behind trusted proxies).
//! - [`pipeline`]: one `/predict` call: fetch → pre-hook → batch → inference →
//!   post-hook → validate.
//! - [`fetch`]: downloads task files from Label Studio, cloud storage and the web.
//! - [`hooks`]: the wasmtime sandbox that runs user hooks (the only module that
//!   touches wasmtime).
//! - [`imageops`]: native image decoding and tensor conversion, shared by the
//!   hooks' host interface and the built-in pre-hook.
//! - [`model`]: model sources (MLflow registry, files, uploads), the on-disk
//!   model cache and the ONNX Runtime session pool (the only module that
//!   touches `ort`).
//! - [`labelconfig`]: re-export of the shared label-config parser and
//!   prediction validator.
//! - [`budget`]: the process-wide memory budget that request work reserves
//!   from before it allocates.
//! - [`metrics`]: Prometheus metrics for `/metrics`.
//! - [`state`]: the configured backends, their atomic swaps and persistence.
//! - [`tensor`]: the host's tensor type, shared by hooks and model.
//! - [`secret`]: a string that never prints.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod budget;
pub mod fetch;
pub mod hooks;
pub mod imageops;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod protocol;
pub mod secret;
pub mod state;
pub mod tensor;

pub use labelconfig;
