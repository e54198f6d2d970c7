//! The application state every handler shares ([`AppState`]), the
//! server-wide settings they consult ([`ServerConfig`]), and how it is
//! built at start ([`AppState::start`]): the engine ([`crate::runtime`]),
//! the state dir, the backend store, and every stored backend restored (and,
//! with a shared store, followed from then on by [`crate::fleet`]). The
//! routes that use it are in `router`.

use std::sync::Arc;

use crate::auth::Access;
use crate::backend::{Backends, Loader};
use crate::budget::MemoryBudget;
use crate::fleet::Follower;
use crate::metrics::Metrics;
use crate::pipeline::Services;
use crate::runtime::{Runtime, RuntimeSettings, StartError};
use crate::state::{StateDir, StateError};
use crate::store::postgres::PgStore;
use crate::store::{BackendStore, StoreError, StoreLocation};

/// Default cap on a request body (uploads of hooks and models included).
pub const DEFAULT_MAX_BODY_BYTES: usize = 512 << 20;
/// Default number of `/predict` requests processed at once; more get 503.
pub const DEFAULT_MAX_CONCURRENT_PREDICTS: usize = 64;
/// Default cap on a `/predict` body. Label Studio sends task references,
/// not files, so real bodies are kilobytes; inline `data:` images are the
/// largest legitimate ones.
pub const DEFAULT_MAX_PREDICT_BODY_BYTES: usize = 64 << 20;

/// Server-wide settings that handlers consult.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who may call the protocol and admin routes.
    pub access: Arc<Access>,
    /// Largest admin request body (hook and model uploads).
    pub max_body_bytes: usize,
    /// Largest `/predict` body.
    pub max_predict_body_bytes: usize,
    pub max_concurrent_predicts: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            access: Arc::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_predict_body_bytes: DEFAULT_MAX_PREDICT_BODY_BYTES,
            max_concurrent_predicts: DEFAULT_MAX_CONCURRENT_PREDICTS,
        }
    }
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub backends: Arc<Backends>,
    pub services: Arc<Services>,
    pub config: Arc<ServerConfig>,
    /// Where backends are kept: the state dir, or a store shared by replicas.
    pub store: Arc<dyn BackendStore>,
    /// Keeps the live backends equal to the store's.
    pub follower: Arc<Follower>,
    pub predict_slots: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<Metrics>,
    pub loader: Arc<Loader>,
    /// Request work reserves memory here before it allocates.
    pub budget: Arc<MemoryBudget>,
}

/// Everything `serve` needs to build the [`AppState`].
#[derive(Clone)]
pub struct Settings {
    pub state_dir: std::path::PathBuf,
    /// Where backends are kept (`--store`).
    pub store: StoreLocation,
    /// This replica's id in the store and in responses (`--replica-id`).
    pub replica_id: String,
    /// Time between full resyncs with a shared store.
    pub resync_every: std::time::Duration,
    pub server: ServerConfig,
    /// The engine; `serve` keeps its caches in the state dir.
    pub runtime: RuntimeSettings,
}

/// Why the server cannot start. Each message is one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Runtime(#[from] StartError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("--store (CLS_STORE): {0}")]
    Store(#[from] StoreError),
}

impl AppState {
    /// Opens the state dir and the store, starts the engine
    /// ([`Runtime::start`]) and restores every stored backend (a broken one
    /// is logged and skipped); with a shared store, starts following it.
    pub async fn start(settings: Settings) -> Result<Self, StartupError> {
        let state_dir = StateDir::open(&settings.state_dir)?;
        let store: Arc<dyn BackendStore> = match &settings.store {
            StoreLocation::Dir => Arc::new(state_dir),
            StoreLocation::Postgres(url) => PgStore::connect(url).await?,
        };
        let runtime = Runtime::start(&settings.runtime)?;
        tracing::info!(library = %runtime.ort_library().display(), "ONNX Runtime loaded");
        let budget = &runtime.budget;
        tracing::info!(
            "memory budget for request work: {} (one request: {}, one backend: {})",
            crate::size::human(budget.total()),
            crate::size::human(budget.request_share()),
            crate::size::human(budget.backend_share()),
        );
        let backends = Arc::new(Backends::default());
        let metrics = Arc::new(Metrics::new());
        let follower = Arc::new(Follower::new(
            store.clone(),
            backends.clone(),
            runtime.loader.clone(),
            metrics.clone(),
            settings.replica_id.clone(),
            settings.resync_every,
        ));
        let state = Self {
            backends,
            services: runtime.services,
            budget: runtime.budget,
            loader: runtime.loader,
            predict_slots: Arc::new(tokio::sync::Semaphore::new(
                settings.server.max_concurrent_predicts,
            )),
            config: Arc::new(settings.server),
            store,
            follower,
            metrics,
        };
        state.restore().await?;
        if state.store.is_shared() {
            tokio::spawn(state.follower.clone().run());
        }
        Ok(state)
    }

    /// Builds the stored backends, concurrently.
    async fn restore(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        self.follower.sync().await?;
        tracing::info!(
            backends = self.backends.list().len(),
            store = self.store.kind(),
            replica = self.follower.replica(),
            "state restored in {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(())
    }
}
