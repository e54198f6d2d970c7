//! The server's integration tests, as one test binary: every binary links
//! the whole server (wasmtime, ort, axum) statically, so one link instead of
//! one per file keeps `cargo test --no-run` and `nextest` builds short.
//!
//! Each module is one area, and its tests are named `<module>::<test>`
//! (e.g. `http_api::restart_restores_persisted_backends`), so a filter such
//! as `cargo nextest run -E 'test(/^cli_connect::/)'` selects an area.
//! `cli_common` and `common_ls` are helpers shared by several areas.

mod cli_common;
mod common_ls;

mod cli_configure;
mod cli_connect;
mod cli_hook;
mod cli_try;
mod deploy_chart;
mod e2e_label_studio;
mod e2e_mlflow;
mod fleet;
mod hooks_budget;
mod hooks_hostile;
mod hostile_inputs;
mod http_api;
mod mlflow_registry;
mod model_limits;
mod model_sessions;
mod pipeline_examples;
mod repo_checks;
mod state_crash;
mod text_tokenizer;
mod trust;
