//! configurable-ls-backend: any MLflow ONNX model as a Label Studio ML
//! backend, shaped by sandboxed WebAssembly hooks.
//!
//! This library is the server; the command line that drives it (and talks
//! to it) is the binary's own code, in `src/cli`.
//!
//! # Layout
//! A request enters at the HTTP edge and flows downward; each module uses
//! only those listed after it (types flow down, never back up):
//!
//! - [`router`]: the route table and the listener — where a request goes.
//! - [`protocol`]: the Label Studio ML backend routes (`/health`, `/setup`,
//!   `/predict`, `/webhook`, `/versions`), at the root and under `/backends/{name}`.
//! - [`admin`]: `/configure` and `/backends` (create, replace, inspect, delete).
//! - [`auth`]: basic auth for the Label Studio routes and `/metrics`, and the
//!   admin check (token, or loopback clients behind trusted proxies).
//! - [`app`]: the state handlers share and how it is built at start.
//! - [`error`]: the one error type handlers return, and the JSON body readers.
//! - [`api`]: the JSON bodies the routes answer with, as types the command
//!   line reads back.
//! - [`runtime`]: the engine without HTTP (ONNX Runtime, hook sandbox,
//!   downloads, model loader, memory budget), started the same way by the
//!   server, `try`, the tests and the benches.
//! - [`fleet`]: keeps this replica's backends equal to the store's.
//! - [`state`]: backends persisted in the state dir, crash-safe: the store
//!   of a single process.
//! - [`store`]: the backend store every replica shares (the trait, its
//!   generations and replica reports, and PostgreSQL).
//! - [`metrics`]: Prometheus metrics for `/metrics`.
//! - [`pipeline`]: one `/predict` call: fetch → pre-hook → batch → inference →
//!   post-hook → validate.
//! - [`backend`]: a backend's name, configuration, built form and the live
//!   set, and the loader that builds one.
//! - [`fetch`]: downloads task files from Label Studio, cloud storage and the web.
//! - [`model`]: model sources (MLflow registry, files, uploads), the on-disk
//!   model cache and the ONNX Runtime session pool (the only module that
//!   touches `ort`).
//! - [`hooks`]: the wasmtime sandbox that runs user hooks (the only module that
//!   touches wasmtime).
//! - [`imageops`]: native image decoding and tensor conversion, shared by the
//!   hooks' host interface and the built-in pre-hook.
//! - [`compute`]: the lower-priority threads that run inference and pixel
//!   work, off the threads serving HTTP.
//! - [`budget`]: the process-wide memory budget that request work reserves
//!   from before it allocates.
//! - [`labelconfig`]: re-export of the shared label-config parser and
//!   prediction validator.
//! - [`tensor`]: the host's tensor type, shared by hooks and model.
//! - [`size`]: byte sizes in messages, and the memory this process may use.
//! - [`secret`]: a string that never prints.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod backend;
pub mod budget;
pub mod compute;
mod disk;
pub mod error;
pub mod fetch;
pub mod fleet;
pub mod hooks;
pub mod imageops;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod protocol;
pub mod router;
pub mod runtime;
pub mod secret;
pub mod size;
pub mod state;
pub mod store;
pub mod tensor;

pub use labelconfig;
