//! A plain ONNX Runtime session built with the server pool's settings, for
//! the benches' "model alone" limits. Shared by `pool` and `server`.

use std::path::Path;

use cls::model::SessionOptions;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

/// A session with the server pool's settings (`cls::model::session`).
pub fn session(
    env: &ort::environment::Environment,
    path: &Path,
    options: &SessionOptions,
) -> Session {
    session_spinning(env, path, options, false)
}

/// A session whose intra-op threads spin between operators, as the server's
/// lone session (`SessionOptions::lone_threads`).
pub fn session_spinning(
    env: &ort::environment::Environment,
    path: &Path,
    options: &SessionOptions,
    spinning: bool,
) -> Session {
    // Each step hands the builder back inside its error; only the message matters here.
    let step = |what: &str, e: String| -> ! { panic!("session builder ({what}): {e}") };
    let builder = Session::builder(env).unwrap_or_else(|e| step("new", e.to_string()));
    let builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .unwrap_or_else(|e| step("optimisation level", e.to_string()));
    let builder = builder
        .with_intra_threads(options.intra_threads)
        .unwrap_or_else(|e| step("intra-op threads", e.to_string()));
    let builder = builder
        .with_inter_threads(options.inter_threads)
        .unwrap_or_else(|e| step("inter-op threads", e.to_string()));
    let builder = builder
        .with_parallel_execution(options.parallel_execution)
        .unwrap_or_else(|e| step("parallel execution", e.to_string()));
    let mut builder = builder
        .with_intra_op_spinning(spinning)
        .unwrap_or_else(|e| step("spinning", e.to_string()))
        .with_config_entry(
            "session.force_spinning_stop",
            if spinning { "1" } else { "0" },
        )
        .unwrap_or_else(|e| step("spinning stop", e.to_string()));
    builder
        .commit_from_file(path)
        .expect("a direct session loads the model")
}
