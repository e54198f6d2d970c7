//! The sandbox that runs user hooks: WebAssembly components exporting the
//! `pre-hook` or `post-hook` world of `wit/hooks.wit`.
//!
//! This is the only module that touches wasmtime. It owns:
//! - one shared [`HookRuntime`]: an `Engine` per compiler tier (Cranelift,
//!   and Winch to serve new hooks while Cranelift compiles), each with the
//!   pooling allocator and epoch interruption (`epoch`: a thread advances
//!   the epochs every millisecond while a call runs) and a `Linker` with
//!   WASI (granting nothing) plus our `host` interface;
//! - loading uploads ([`HookRuntime::load`]): size cap, refusal of core
//!   modules and precompiled artefacts, compilation off the request path with
//!   a time cap, world check, and a bounded on-disk cache of our *own*
//!   `serialize()` output (`artefacts`; uploaded bytes are never
//!   deserialized), and of Cranelift's compiled functions, which hooks
//!   share (`functions`: every Python hook carries the same CPython);
//! - calling a [`Hook`]: a fresh `Store` per call with wall-time, memory and
//!   output limits; every trap becomes a [`HookCallError`] naming the hook,
//!   the task and the cause, and the trapped store is dropped;
//! - the host functions a hook imports, which govern their own memory (a
//!   per-call budget as large as the hook's memory limit, checked before
//!   allocating) and time (pixel work on `compute::pool`, refused or
//!   trapped at the hook's deadline);
//! - a component's source stamp ([`stamp`]), which names it in
//!   `model_version` when its toolchain does not build reproducibly;
//! - [`sanitize`], through which every hook-supplied string passes before it
//!   reaches a log line or a response (one line, bounded, length stated).
//!
//! It does not know about HTTP, models or Label Studio beyond the data the
//! WIT carries.

mod artefacts;
mod bindings;
mod call;
mod compile;
mod convert;
mod epoch;
mod functions;
mod host;
mod host_ops;
mod host_text;
pub mod stamp;
mod text;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::Linker;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy,
};

pub use call::{HookContext, PreOutput};
pub use compile::Hook;
pub use convert::{Datapoint, DatapointInfo};
pub use host::{MAX_LOG_LINE, MAX_LOG_LINES_PER_CALL};
pub use text::{MAX_ERROR_MESSAGE, sanitize};

use epoch::EpochTicker;
use host::HostState;

/// The WIT package hooks are built against (`wit/hooks.wit`). Hooks built
/// against an older 0.1.x link too: wasmtime matches imports by semver.
pub const WIT_PACKAGE: &str = "cls:hooks@0.1.4";

/// Default wall-time budget for one hook call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default linear-memory limit for one hook instance.
pub const DEFAULT_MEMORY_BYTES: usize = 256 << 20;
/// Default cap on what one call may return (JSON text or tensor bytes).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 << 20;
/// Default cap on an uploaded component's size.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 50 << 20;
/// Default size bound of the compiled-hook caches: room for about 21
/// Python hooks (36 MiB compiled each) or hundreds of Rust ones, and
/// Cranelift's compiled functions (CPython's are about 30 MiB).
pub const DEFAULT_ARTEFACT_CACHE_BYTES: u64 = 1 << 30;
/// Default cap on compiling one upload.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound for any per-backend memory limit: the pooling allocator
/// reserves slots of this size.
pub const MAX_MEMORY_BYTES: usize = 1 << 30;
/// Per pool slot, how much of a linear memory stays resident between
/// instances (reset by copy, not by `madvise`).
const KEEP_RESIDENT_BYTES: usize = 16 << 20;
/// The same for tables (Python guests have large function tables).
const KEEP_RESIDENT_TABLE_BYTES: usize = 1 << 20;
/// Hook instances alive at once (each holds a pool slot).
pub const DEFAULT_MAX_INSTANCES: u32 = 64;

/// Which of the two hook worlds a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// `pre-hook`: datapoints → model inputs.
    Pre,
    /// `post-hook`: model outputs → Label Studio predictions.
    Post,
}

impl HookKind {
    /// The multipart part name and config key for this kind.
    pub fn part_name(self) -> &'static str {
        match self {
            Self::Pre => "pre_hook",
            Self::Post => "post_hook",
        }
    }

    fn world(self) -> &'static str {
        match self {
            Self::Pre => "pre-hook",
            Self::Post => "post-hook",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

/// Per-backend limits on each hook call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HookLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub max_output_bytes: usize,
}

impl Default for HookLimits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// Who is calling a hook, for logs and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTag {
    pub backend: String,
    pub kind: HookKind,
    pub task: Option<i64>,
}

/// How the runtime is set up; see the `DEFAULT_*` constants.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled artefacts are cached, and Cranelift's compiled
    /// functions under `functions/` (`None`: no disk cache).
    pub artefact_dir: Option<PathBuf>,
    /// Size bound of both (least recently used go first): a quarter for
    /// the functions, the rest for the artefacts.
    pub artefact_cache_bytes: u64,
    /// Pool slots: the most hook instances that can exist at once.
    pub max_instances: u32,
    /// Hook calls running at once (at most `max_instances`). Hooks are
    /// CPU-bound, so more calls than cores only interleave them, stretch
    /// each one's wall-clock deadline and touch more pool slots (memory).
    pub max_concurrent_calls: usize,
    pub max_upload_bytes: usize,
    pub compile_timeout: Duration,
    /// Which compilers turn an upload into code.
    pub compilers: Compilers,
}

/// Which of wasmtime's compilers turn an upload into code: Winch, the
/// baseline compiler (several times faster to compile, slower code), and
/// Cranelift, the optimising one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compilers {
    /// Winch's code serves a new hook at once while Cranelift's compiles in
    /// the background, then takes over; only Cranelift's is cached.
    #[default]
    Tiered,
    /// Cranelift only: a new hook serves once its optimised code is ready.
    Cranelift,
    /// Winch only, nothing cached: the fastest compile, the slowest calls.
    Winch,
}

impl std::str::FromStr for Compilers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tiered" => Ok(Self::Tiered),
            "cranelift" => Ok(Self::Cranelift),
            "winch" => Ok(Self::Winch),
            other => Err(format!(
                "unknown hook compilers {other:?}: expected tiered, cranelift or winch"
            )),
        }
    }
}

impl fmt::Display for Compilers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tiered => "tiered",
            Self::Cranelift => "cranelift",
            Self::Winch => "winch",
        })
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            artefact_dir: None,
            artefact_cache_bytes: DEFAULT_ARTEFACT_CACHE_BYTES,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_concurrent_calls: 2 * std::thread::available_parallelism().map_or(1, usize::from),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            compilers: Compilers::Tiered,
        }
    }
}

/// Why an upload is not a usable hook. Every variant is the uploader's
/// fault (a 4xx), except [`HookLoadError::Internal`].
#[derive(Debug, thiserror::Error)]
pub enum HookLoadError {
    #[error("{kind} is {size} bytes, over the {max}-byte upload limit")]
    TooLarge {
        kind: HookKind,
        size: usize,
        max: usize,
    },
    #[error("{kind} is not a WebAssembly component (it does not start with the wasm magic bytes)")]
    NotWasm { kind: HookKind },
    #[error(
        "{kind} is a core WebAssembly module, not a component: build it with \
         `cargo build --release --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule { kind: HookKind },
    #[error("{kind} is a precompiled wasmtime artefact; upload the .wasm component instead")]
    Precompiled { kind: HookKind },
    #[error("{kind} does not compile: {message}")]
    Invalid { kind: HookKind, message: String },
    #[error("{kind} took longer than {limit:?} to compile")]
    CompileTimeout { kind: HookKind, limit: Duration },
    #[error("{kind} does not fit this server: {message}")]
    WrongWorld { kind: HookKind, message: String },
    #[error("internal error while loading {kind}: {message}")]
    Internal { kind: HookKind, message: String },
}

/// Why a hook call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} failed on task {task}: {failure}", task = task_label(*.task))]
pub struct HookCallError {
    pub kind: HookKind,
    pub task: Option<i64>,
    pub failure: HookFailure,
}

fn task_label(task: Option<i64>) -> String {
    task.map_or_else(|| "(no id)".to_owned(), |t| t.to_string())
}

/// The cause of a failed hook call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HookFailure {
    #[error("stopped after the {0:?} time limit (limits.hook_timeout_ms)")]
    Deadline(Duration),
    #[error("ran out of memory: {0} (limits.hook_memory_mb)")]
    OutOfMemory(String),
    #[error("call stack exhausted (infinite recursion?)")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned an error: {0}")]
    Returned(String),
    #[error("returned {what} of {size} bytes, over the {max}-byte limit (limits.{setting})")]
    OutputTooLarge {
        /// What was too large: "prediction JSON", "model inputs", "a carry".
        what: &'static str,
        size: usize,
        max: usize,
        setting: &'static str,
    },
    #[error("returned invalid output: {0}")]
    InvalidOutput(String),
    #[error("could not start: {0}")]
    Instantiate(String),
}

/// The shared engines and linkers (one per compiler tier) and the epoch
/// ticker.
pub struct HookRuntime {
    /// Cranelift: what every hook ends up running, and what the artefact
    /// cache holds.
    optimized: Tier,
    /// Winch, unless [`RuntimeOptions::compilers`] says Cranelift only.
    baseline: Option<Tier>,
    options: RuntimeOptions,
    instances: Arc<tokio::sync::Semaphore>,
    compiles: Arc<tokio::sync::Semaphore>,
    artefacts: Option<Arc<artefacts::ArtefactCache>>,
    ticker: EpochTicker,
}

impl HookRuntime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(options: RuntimeOptions) -> Result<Self, HookLoadError> {
        let internal = |e: wasmtime::Error| HookLoadError::Internal {
            kind: HookKind::Post,
            message: format!("{e:#}"),
        };
        // Tiered, Cranelift compiles in the background on one low-priority
        // thread: spread over every core at normal priority it would slow
        // the calls it is meant to speed up.
        let background = options.compilers == Compilers::Tiered;
        let functions = options.artefact_dir.as_ref().map(|dir| {
            Arc::new(functions::FunctionCache::open(
                dir.join("functions"),
                function_cache_bytes(options.artefact_cache_bytes),
            ))
        });
        let optimized = Tier::new(
            Strategy::Cranelift,
            options.max_instances,
            !background,
            functions,
        )
        .map_err(internal)?;
        let baseline = (options.compilers != Compilers::Cranelift)
            .then(|| Tier::new(Strategy::Winch, options.max_instances, true, None))
            .transpose()
            .map_err(internal)?;
        let engines = std::iter::once(&optimized)
            .chain(&baseline)
            .map(|tier| tier.engine.clone())
            .collect();
        let ticker = EpochTicker::start(engines).map_err(|e| HookLoadError::Internal {
            kind: HookKind::Post,
            message: format!("cannot start the epoch thread: {e}"),
        })?;
        Ok(Self {
            instances: Arc::new(tokio::sync::Semaphore::new(
                options
                    .max_concurrent_calls
                    .clamp(1, options.max_instances as usize),
            )),
            compiles: Arc::new(tokio::sync::Semaphore::new(compile::compile_slots())),
            artefacts: options.artefact_dir.clone().map(|dir| {
                Arc::new(artefacts::ArtefactCache::open(
                    dir,
                    options.artefact_cache_bytes
                        - function_cache_bytes(options.artefact_cache_bytes),
                    &optimized.engine,
                ))
            }),
            optimized,
            baseline,
            options,
            ticker,
        })
    }

    /// The options this runtime was built with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }
}

impl Drop for HookRuntime {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// The compiled functions' share of the compiled-hook caches' bound.
fn function_cache_bytes(total: u64) -> u64 {
    total / 4
}

/// One compiler's engine and the linker that resolves hooks' imports
/// against it: a component runs only on the engine that compiled it.
#[derive(Clone)]
struct Tier {
    engine: Engine,
    linker: Linker<HostState>,
    strategy: Strategy,
}

impl Tier {
    /// `parallel`: whether one compile spreads over every core;
    /// `functions`: Cranelift's cache of compiled functions, if any.
    fn new(
        strategy: Strategy,
        max_instances: u32,
        parallel: bool,
        functions: Option<Arc<functions::FunctionCache>>,
    ) -> Result<Self, wasmtime::Error> {
        let mut config = engine_config(strategy, max_instances);
        config.parallel_compilation(parallel);
        if let Some(functions) = functions {
            config.enable_incremental_compilation(functions)?;
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::pre::PreHook::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )?;
        Ok(Self {
            engine,
            linker,
            strategy,
        })
    }

    /// For logs: which compiler this tier is.
    fn compiler(&self) -> &'static str {
        match self.strategy {
            Strategy::Winch => "winch",
            _ => "cranelift",
        }
    }
}

fn engine_config(strategy: Strategy, max_instances: u32) -> Config {
    let mut config = Config::new();
    config
        .strategy(strategy)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable);
    let mut pool = PoolingAllocationConfig::new();
    // Sized together (wasmCloud PR #3066): a semaphore in front of
    // instantiation keeps us at `max_instances` components, each of which may
    // hold several core instances, memories and tables (Python guests do).
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances * 16)
        .total_memories(max_instances * 2)
        .total_tables(max_instances * 16)
        .total_stacks(max_instances)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(32)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .table_elements(200_000)
        .max_memory_size(MAX_MEMORY_BYTES)
        // Reset a used slot's dirty pages in place (back to the memory image)
        // instead of handing them to the kernel: the next instance would
        // fault them straight back in. A componentize-py guest dirties
        // megabytes of its CPython heap per call; a pre-hook its tensors.
        .linear_memory_keep_resident(keep_resident(strategy, KEEP_RESIDENT_BYTES))
        .table_keep_resident(keep_resident(strategy, KEEP_RESIDENT_TABLE_BYTES))
        // Without PAGEMAP_SCAN (Linux 6.7+) the reset copies all of
        // `keep_resident` back whether touched or not: up to 16 MiB per call.
        // With it only the pages the call dirtied are copied back (a Rust
        // post-hook call 58 -> 13 us, a bare Python one 1.9 -> 1.2 ms), but
        // wasmtime resets at most 32 dirty runs and decommits the rest, so a
        // guest that dirties pages all over (a Python pre-hook) faults more
        // in again: 7.5 -> 8.0 ms. A net gain; the kernel may lack it (Auto).
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// The baseline tier serves a hook for seconds at most: its pool slots give
/// their pages back rather than keep them for instances that will not come.
fn keep_resident(strategy: Strategy, bytes: usize) -> usize {
    match strategy {
        Strategy::Winch => 0,
        _ => bytes,
    }
}
