//! Prometheus metrics served at `/metrics`: requests, tasks, task errors,
//! per-stage latency histograms, rejected (busy) requests, requests in
//! flight, and the backend store's state.
//!
//! Handlers record through [`Metrics`]; rendering happens only when scraped.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::backend::{BackendName, Backends};
use crate::pipeline::StageTimes;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    backend: String,
    stage: String,
}

/// The process's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<BackendLabel, Counter>,
    tasks: Family<BackendLabel, Counter>,
    task_errors: Family<BackendLabel, Counter>,
    stage_seconds: Family<StageLabel, Histogram>,
    rejected: Counter,
    backends: Gauge,
    in_flight: Gauge,
    generation: Family<BackendLabel, Gauge>,
    store_up: Gauge,
    store_sync_failures: Counter,
    store_sync_age: Gauge<f64, AtomicU64>,
    last_sync: Mutex<Option<Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cls");
        let requests = Family::<BackendLabel, Counter>::default();
        let tasks = Family::<BackendLabel, Counter>::default();
        let task_errors = Family::<BackendLabel, Counter>::default();
        let stage_seconds = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let rejected = Counter::default();
        let backends = Gauge::default();
        registry.register(
            "predict_requests",
            "/predict requests served",
            requests.clone(),
        );
        registry.register("predict_tasks", "Tasks predicted", tasks.clone());
        registry.register(
            "predict_task_errors",
            "Tasks that got an error entry",
            task_errors.clone(),
        );
        registry.register(
            "stage_seconds",
            "Time per /predict stage (fetch, pre_hook, inference, post_hook, validation, total)",
            stage_seconds.clone(),
        );
        registry.register(
            "predict_rejected",
            "/predict requests answered 503 (busy)",
            rejected.clone(),
        );
        registry.register("backends", "Configured backends", backends.clone());
        let in_flight = Gauge::default();
        registry.register(
            "predicts_in_flight",
            "/predict requests being served now",
            in_flight.clone(),
        );
        let generation = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "backend_generation",
            "The store generation each backend is served at",
            generation.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "1 when the last sync with the backend store succeeded, 0 when it failed",
            store_up.clone(),
        );
        let store_sync_failures = Counter::default();
        registry.register(
            "store_sync_failures",
            "Syncs with the backend store that failed",
            store_sync_failures.clone(),
        );
        let store_sync_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "store_sync_age_seconds",
            "Seconds since the last successful sync with the backend store (staleness)",
            store_sync_age.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            tasks,
            task_errors,
            stage_seconds,
            rejected,
            backends,
            in_flight,
            generation,
            store_up,
            store_sync_failures,
            store_sync_age,
            last_sync: Mutex::new(None),
        }
    }

    /// Records a sync with the backend store.
    pub fn observe_sync(&self, ok: bool) {
        self.store_up.set(i64::from(ok));
        if ok {
            *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        } else {
            self.store_sync_failures.inc();
        }
    }

    /// Records one `/predict` request.
    pub fn observe_predict(
        &self,
        backend: &BackendName,
        tasks: usize,
        failed: usize,
        times: &StageTimes,
        total: Duration,
    ) {
        let label = BackendLabel {
            backend: backend.to_string(),
        };
        self.requests.get_or_create(&label).inc();
        self.tasks.get_or_create(&label).inc_by(tasks as u64);
        self.task_errors.get_or_create(&label).inc_by(failed as u64);
        for (stage, d) in [
            ("fetch", times.fetch),
            ("pre_hook", times.pre_hook),
            ("inference", times.inference),
            ("post_hook", times.post_hook),
            ("validation", times.validation),
            ("total", total),
        ] {
            self.stage_seconds
                .get_or_create(&StageLabel {
                    backend: backend.to_string(),
                    stage: stage.to_owned(),
                })
                .observe(d.as_secs_f64());
        }
    }

    /// Records a request turned away with 503.
    pub fn rejected(&self) {
        self.rejected.inc();
    }

    /// The metrics in Prometheus/OpenMetrics text format, with `in_flight`
    /// `/predict` requests being served now.
    pub fn render(&self, backends: &Backends, in_flight: usize) -> String {
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        let live = backends.list();
        self.backends.set(live.len() as i64);
        self.generation.clear();
        for backend in &live {
            let label = BackendLabel {
                backend: backend.name.to_string(),
            };
            let generation = i64::try_from(backend.generation().get()).unwrap_or(i64::MAX);
            self.generation.get_or_create(&label).set(generation);
        }
        if let Some(last) = *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) {
            self.store_sync_age.set(last.elapsed().as_secs_f64());
        }
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Encoding into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}
