//! Keeps the backends this replica serves equal to the store's
//! ([`Follower`]): at start, after every change another replica announces,
//! after every reconnect to the store, and every resync interval in any
//! case, so a missed notification never matters. What it serves, and what
//! failed to build, it reports to the store for `wait=all` and
//! `GET /backends/{name}`.
//!
//! A change is built completely (hooks compiled, model loaded) before it
//! replaces the old backend in one swap; a request holds one backend
//! generation from start to end, so it never mixes two. A build that fails
//! leaves the previous generation serving.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{BackendName, Backends, Loader};
use crate::metrics::Metrics;
use crate::store::{BackendStore, Generation, Head, ReplicaReport, ServingState, StoreError};

/// Default time between full resyncs with a shared store.
pub const DEFAULT_RESYNC_EVERY: Duration = Duration::from_secs(30);

/// A generation that failed to build, and when it was last tried.
struct Failure {
    generation: Generation,
    error: String,
    tried: Instant,
}

/// Follows the store for one replica.
pub struct Follower {
    store: Arc<dyn BackendStore>,
    backends: Arc<Backends>,
    loader: Arc<Loader>,
    metrics: Arc<Metrics>,
    replica: String,
    resync_every: Duration,
    failures: Mutex<BTreeMap<BackendName, Failure>>,
    synced: AtomicBool,
}

impl Follower {
    pub fn new(
        store: Arc<dyn BackendStore>,
        backends: Arc<Backends>,
        loader: Arc<Loader>,
        metrics: Arc<Metrics>,
        replica: String,
        resync_every: Duration,
    ) -> Self {
        Self {
            store,
            backends,
            loader,
            metrics,
            replica,
            resync_every,
            failures: Mutex::default(),
            synced: AtomicBool::new(false),
        }
    }

    /// This replica's id, as reported to the store and in responses.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether the first sync with the store completed: what readiness
    /// means (every backend of that snapshot was built, or failed and is
    /// reported).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Brings the live backends to the store's generations, then reports.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let heads = match self.store.heads().await {
            Ok(heads) => heads,
            Err(e) => {
                self.metrics.observe_sync(false);
                return Err(e);
            }
        };
        let stale: Vec<&Head> = heads.iter().filter(|h| self.needs_build(h)).collect();
        let builds = stale.iter().map(|head| self.follow(head));
        let changed = futures::future::join_all(builds)
            .await
            .into_iter()
            .filter(|changed| *changed)
            .count();
        let removed = self.remove_missing(&heads).await;
        self.synced.store(true, Ordering::Relaxed);
        self.metrics.observe_sync(true);
        if changed + removed > 0 {
            tracing::info!(
                changed,
                removed,
                backends = self.backends.list().len(),
                "synced with the backend store in {:.0} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        self.report().await;
        Ok(())
    }

    /// Whether `head` is newer than what is served and not a generation
    /// that failed recently.
    fn needs_build(&self, head: &Head) -> bool {
        let served = self.backends.get(&head.name).map(|b| b.generation());
        if served.is_some_and(|g| g >= head.generation) {
            return false;
        }
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        !failures.get(&head.name).is_some_and(|f| {
            f.generation == head.generation && f.tried.elapsed() < self.resync_every
        })
    }

    /// Loads and builds the stored version of one backend and swaps it in;
    /// `true` if it now serves a newer generation.
    async fn follow(&self, head: &Head) -> bool {
        let lock = self.loader.lock_for(&head.name);
        let _guard = lock.lock().await;
        // A write through this replica may have installed it meanwhile.
        if !self.needs_build(head) {
            return false;
        }
        let outcome = match self.store.load(&head.name).await {
            Ok(Some(stored)) => match self.loader.build(&stored.backend).await {
                Ok(backend) => {
                    backend.stamp(stored.generation);
                    Ok(backend)
                }
                Err(e) => Err((stored.generation, e.to_string())),
            },
            // Deleted since the heads were read: the removal pass sees it.
            Ok(None) => return false,
            Err(e) => Err((head.generation, e.to_string())),
        };
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(backend) => {
                failures.remove(&head.name);
                tracing::info!(
                    backend = %head.name, generation = %backend.generation(),
                    model_version = %backend.model_version, "now serving"
                );
                self.backends.swap(Arc::new(backend));
                true
            }
            Err((generation, error)) => {
                tracing::error!(
                    backend = %head.name, %generation,
                    "cannot build the stored backend (the previous generation, if any, keeps serving): {error}"
                );
                failures.insert(
                    head.name.clone(),
                    Failure {
                        generation,
                        error,
                        tried: Instant::now(),
                    },
                );
                false
            }
        }
    }

    /// Stops serving backends the store no longer has.
    async fn remove_missing(&self, heads: &[Head]) -> usize {
        let mut removed = 0;
        for backend in self.backends.list() {
            if heads.iter().any(|h| h.name == backend.name) {
                continue;
            }
            let lock = self.loader.lock_for(&backend.name);
            let _guard = lock.lock().await;
            self.backends.remove(&backend.name);
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&backend.name);
            tracing::info!(backend = %backend.name, "deleted in the store; no longer served");
            removed += 1;
        }
        removed
    }

    /// What this replica serves, and what failed, as the store keeps it.
    pub fn reports(&self) -> Vec<ReplicaReport> {
        let mut reports: BTreeMap<BackendName, ReplicaReport> = self
            .backends
            .list()
            .iter()
            .map(|b| {
                let report = ReplicaReport {
                    backend: b.name.clone(),
                    generation: b.generation(),
                    state: ServingState::Serving,
                    error: None,
                };
                (b.name.clone(), report)
            })
            .collect();
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (name, failure) in failures.iter() {
            let newer = reports
                .get(name)
                .is_none_or(|r| r.generation < failure.generation);
            if newer {
                reports.insert(
                    name.clone(),
                    ReplicaReport {
                        backend: name.clone(),
                        generation: failure.generation,
                        state: ServingState::Failed,
                        error: Some(failure.error.clone()),
                    },
                );
            }
        }
        reports.into_values().collect()
    }

    /// Reports to the store; a failure is logged (the next report retries).
    pub async fn report(&self) {
        let reports = self.reports();
        if let Err(e) = self.store.report(&self.replica, &reports).await {
            tracing::debug!("cannot report to the backend store: {e}");
        }
    }

    /// Follows a shared store until the process ends: syncs on every
    /// announced change and every resync interval, reports every heartbeat.
    pub async fn run(self: Arc<Self>) {
        let Some(mut changes) = self.store.changes() else {
            return;
        };
        let mut heartbeat = tokio::time::interval(crate::store::HEARTBEAT_EVERY);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval(self.resync_every);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            let sync = tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    true
                }
                _ = resync.tick() => true,
                _ = heartbeat.tick() => false,
            };
            if !sync {
                self.report().await;
                continue;
            }
            match self.sync().await {
                Ok(()) => warned = false,
                Err(e) if !warned => {
                    tracing::warn!("cannot sync with the backend store: {e}");
                    warned = true;
                }
                Err(_) => {}
            }
        }
    }
}
