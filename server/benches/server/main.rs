//! End-to-end benchmark: the real server binary serving the three
//! example backends over HTTP on loopback, measured against the physical
//! limits in the same run.
//!
//! Run (release; assets from `scripts/setup.sh`):
//!
//! ```sh
//! source ~/.cache/configurable-ls-backend/env.sh
//! cargo bench -p configurable-ls-backend --bench server
//! ```
//!
//! `cargo bench` builds this bench and the server binary with the release
//! (`bench`) profile; the bench spawns `target/release/configurable-ls-backend`
//! (override with `CLS_SERVER_BIN`). It takes about five minutes on 2 cores;
//! results and their analysis are in `docs/benchmarks.md`.
//! Knobs: `CLS_BENCH_CELL_SECONDS` (10) and `CLS_BENCH_CELL_REQUESTS` (200)
//! bound each load cell; `CLS_BENCH_LIMIT_SECONDS` (3) is the length of each
//! physical-limit measurement; `CLS_BENCH_ONLY=classification,polygons`
//! runs some backends only.
//!
//! # What it measures
//! 1. **Physical limits** ([`native`]), in this process: (a) the model alone
//!    through `ort` on pre-made tensors; (b) the native pipeline (the
//!    server's image code + `ort` + the example hooks' post-processing
//!    compiled natively + result JSON), no HTTP, no WebAssembly; (c) the
//!    model alone one task at a time. Measured before the server starts
//!    and again after its load cells, with it idle: the VM's speed drifts,
//!    and every ratio is against the better of the two.
//! 2. **The server**: started on a fresh state dir; the backends are
//!    configured with their real models and hooks and warmed up until
//!    Cranelift's code of their hooks has taken over from Winch's, then
//!    `/predict` load ([`load`]) with 1 and 16 tasks per request at
//!    concurrency 1 and 4;
//!    task data are plain `http://127.0.0.1:<port>/<photo>` URLs served by
//!    this process. Per-stage times come from `/metrics`; HTTP is what the
//!    client saw minus the server's `total`; CPU use of the server, this
//!    process and everything else comes from `/proc` ([`cpu`]), because the
//!    machine may be shared.
//!    While each cell runs, a separate client asks `/health` every 25 ms
//!    on its own connection (as Label Studio does) and records how long
//!    the answers took.
//! 3. **Memory**: peak RSS (`VmHWM`) of the server after each cell, with
//!    one, then three backends loaded and served.
//! 4. **Hot swap**: `PUT /backends/<name>` with new hook bytes (the same
//!    post-hook with an extra custom section, so it must be compiled) and
//!    the cached model, under `/predict` load; failed requests are counted.
//! 5. **Start-up**: restarts on the same state dir (three persisted
//!    backends, models and compiled hooks cached) until `/health` is UP.
//! 6. A table of the project's performance targets, met or missed and by how much.

mod cases;
mod cpu;
mod load;
mod native;
mod report;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cls::hooks::stamp::with_custom_section;
use harness::{Server, ServerOptions, example_hook, image, model, ort_library, read};
use serde_json::{Value, json};

use cases::{CASES, Case, IMAGES};
use cpu::Usage;
use load::{Bounds, Cell, Http, Stages};
use native::{NativeModel, NativeStages};
use report::{Limits, ModelReport, Report, ServerCell, SwapParts};
use stats::{Latencies, Rate};

/// Tasks per request: interactive and batch retrieve.
const TASKS: [usize; 2] = [1, 16];
/// Client concurrency levels.
const CONCURRENCY: [usize; 2] = [1, 4];
/// Hot swaps per backend.
const SWAPS: usize = 2;
/// Restarts timed for start-to-UP.
const RESTARTS: usize = 3;

fn main() {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(run());
    report.print(started.elapsed());
}

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run() -> Report {
    let library = ort_library().expect("ONNX Runtime missing: run scripts/setup.sh");
    let images: Vec<Vec<u8>> = IMAGES
        .iter()
        .map(|name| read(&image(name).expect("test images missing: run scripts/setup.sh")))
        .collect();
    // `CLS_BENCH_ONLY=classification,polygons` limits the run to some backends.
    let only = std::env::var("CLS_BENCH_ONLY").unwrap_or_default();
    let cases: Vec<&'static Case> = CASES
        .iter()
        .filter(|c| only.is_empty() || only.split(',').any(|o| o.trim() == c.name))
        .collect();
    let models: Vec<PathBuf> = cases
        .iter()
        .map(|c| model(c.model_file).expect("models missing: run scripts/setup.sh"))
        .collect();
    let hooks: Vec<(Vec<u8>, Vec<u8>)> = cases
        .iter()
        .map(|c| {
            (
                read(&example_hook(c.pre_hook)),
                read(&example_hook(c.post_hook)),
            )
        })
        .collect();
    let bounds = Bounds {
        window: Duration::from_secs_f64(env_number("CLS_BENCH_CELL_SECONDS", 10.0)),
        max_requests: env_number("CLS_BENCH_CELL_REQUESTS", 200.0) as usize,
    };
    let limit_window = Duration::from_secs_f64(env_number("CLS_BENCH_LIMIT_SECONDS", 3.0));
    let mut report = Report::new(harness::server_binary(), bounds, limit_window);
    report.print_header();

    let files = load::serve_files(
        IMAGES
            .iter()
            .zip(&images)
            .map(|(n, b)| ((*n).to_owned(), b.clone()))
            .collect(),
    )
    .await;
    let urls: Vec<String> = IMAGES.iter().map(|n| format!("{files}/{n}")).collect();

    // 1. Physical limits, before the server exists (nothing else competes).
    // ONNX Runtime allows one environment per process: this is the bench's.
    let env = ort::init_from(&library)
        .expect("load ONNX Runtime")
        .with_name("bench")
        .build()
        .expect("ONNX Runtime environment");
    let inputs = LimitInputs {
        env: &env,
        images: &images,
        urls: &urls,
        window: limit_window,
    };
    for (case, path) in cases.iter().copied().zip(&models) {
        let limits = measure_limits(&inputs, case, path);
        report.models.push(ModelReport::new(case, limits));
    }
    // What a hot swap has to redo, measured in process: compiling a new
    // post-hook and creating a model's sessions.
    report.swap_parts = swap_parts(&env, &models, &hooks).await;

    // 2-4. The server.
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(32)
        .timeout(Duration::from_secs(300))
        .build()
        .expect("HTTP client");
    let state = tempfile::tempdir().expect("state dir");
    let mut server = Server::start(bench_server(state.path().to_path_buf()));
    let http = Http {
        client: client.clone(),
        server: server.url.clone(),
        files: files.clone(),
    };
    report.rss_empty = report::rss(server.pid());
    for (i, case) in cases.iter().copied().enumerate() {
        let config = backend_config(case, &models[i]);
        let took = load::configure(&http, case.name, &config, &hooks[i].0, &hooks[i].1).await;
        report.models[i].configure_cold = took;
        println!(
            "configured {:<15} in {} ms (cold: hooks compiled, model loaded)",
            case.name,
            stats::ms(took)
        );
        warm_up(&http, case).await;
        for tasks in TASKS {
            for concurrency in CONCURRENCY {
                let cell =
                    measure_cell(&http, server.pid(), case, tasks, concurrency, bounds).await;
                report::print_cell(case, &cell, &report.models[i].limits);
                report.models[i].cells.push(cell);
            }
        }
        if i == 0 {
            report.rss_one = report::rss(server.pid());
        }
    }
    report.rss_three = report::rss(server.pid());

    // 1 again, the server idle: the VM's speed drifts, so every ratio is
    // against the better of the two measurements of each limit.
    println!("physical limits again, after the load cells (the server idle)");
    for (i, (case, path)) in cases.iter().copied().zip(&models).enumerate() {
        let later = measure_limits(&inputs, case, path);
        report.models[i].limits.keep_best(later);
    }
    drop(env);

    // 4. Hot swaps under load.
    for (i, case) in cases.iter().copied().enumerate() {
        let config = backend_config(case, &models[i]);
        let (swaps, load) = hot_swaps(&http, case, &config, &hooks[i]).await;
        println!(
            "hot swap {:<15} {} ms; during them {} /predict requests, {} failed{}",
            case.name,
            swaps
                .iter()
                .map(|d| stats::ms(*d))
                .collect::<Vec<_>>()
                .join(" / "),
            load.requests,
            load.failed,
            load.first_failure
                .as_deref()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        );
        report.models[i].swaps = swaps;
        report.models[i].swap_load = load;
    }

    // 5. Restarts on the same state dir.
    let state_dir = server.keep_state();
    if !server.terminate().is_some_and(|s| s.success()) {
        println!("warning: the server did not exit 0 on SIGTERM");
    }
    for _ in 0..RESTARTS {
        let started = Instant::now();
        let mut restarted = Server::start(bench_server(state_dir.clone()));
        let health: Value = client
            .get(format!("{}/health", restarted.url))
            .send()
            .await
            .expect("GET /health")
            .json()
            .await
            .expect("health JSON");
        let up = started.elapsed();
        assert_eq!(health["status"], "UP", "{health}");
        let listed: Value = client
            .get(format!("{}/backends", restarted.url))
            .send()
            .await
            .expect("GET /backends")
            .json()
            .await
            .expect("backends JSON");
        let count = listed["backends"].as_array().map_or(0, Vec::len);
        assert_eq!(
            count,
            cases.len(),
            "every persisted backend is restored: {listed}"
        );
        let restored = restarted
            .log()
            .lines()
            .find_map(|l| {
                let rest = l.split("state restored in ").nth(1)?;
                rest.split(" ms").next().map(str::to_owned)
            })
            .unwrap_or_default();
        println!(
            "restart: /health UP after {} ms with {count} backends (server log: state restored in {} ms)",
            stats::ms(up),
            restored.trim()
        );
        report.restarts.push(up);
        report.rss_restarted = report::rss(restarted.pid());
        let _ = restarted.terminate();
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    report
}

/// The backend's configure body; `CLS_BENCH_LONE_THREADS` sets
/// `model.lone_threads` (1 measures the server without its lone session).
fn backend_config(case: &Case, model: &std::path::Path) -> Value {
    let mut model = json!({"uri": model.display().to_string()});
    if let Some(threads) = std::env::var("CLS_BENCH_LONE_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        model["lone_threads"] = json!(threads);
    }
    json!({
        "model": model,
        "label_config": case.label_config,
    })
}

/// Brings a just-configured backend to its steady state before anything
/// is timed: warm-up requests, then Cranelift's code of both hooks taking
/// over from Winch's. Without the wait, the first few hundred milliseconds
/// of the first cell ran on Winch's code beside Cranelift's background
/// compile; hot swaps, which measure that transition, are timed apart.
async fn warm_up(http: &Http, case: &Case) {
    send_warm_up_requests(http, case).await;
    let waited = wait_for_optimized_hooks(http, case).await;
    println!(
        "  {:<15} hooks on Cranelift's code {} ms after the warm-up",
        case.name,
        stats::ms(waited)
    );
}

/// How long until `GET /backends/<name>` says each of its hooks runs
/// optimised code (a backend on the built-in pre-hook has no `pre_hook`
/// to wait for); panics after a minute.
async fn wait_for_optimized_hooks(http: &Http, case: &Case) -> Duration {
    let url = format!("{}/backends/{}", http.server, case.name);
    let started = Instant::now();
    loop {
        let backend: Value = http
            .client
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("GET /backends/<name>")
            .json()
            .await
            .expect("backend JSON");
        let optimized = |hook: &Value| hook["optimized"] == true;
        let hooks = &backend["hooks"];
        if optimized(&hooks["post_hook"])
            && (hooks["pre_hook"].is_null() || optimized(&hooks["pre_hook"]))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}'s hooks still not optimised after a minute: {backend}",
            case.name
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every image once, then one batch: ORT's arenas, the hooks' first
/// instances and the connection pool are warm.
async fn send_warm_up_requests(http: &Http, case: &Case) {
    let url = format!("{}/backends/{}/predict", http.server, case.name);
    for r in 0..IMAGES.len() {
        let body = cases::predict_body(case, &http.files, r, 1).to_string();
        load::predict_once(&http.client, &url, body.into(), 1)
            .await
            .unwrap_or_else(|e| panic!("warm-up request for {} failed: {e}", case.name));
    }
    let body = cases::predict_body(case, &http.files, 0, 16).to_string();
    load::predict_once(&http.client, &url, body.into(), 16)
        .await
        .unwrap_or_else(|e| panic!("warm-up batch for {} failed: {e}", case.name));
}

/// One load cell with the stage histograms' deltas.
async fn measure_cell(
    http: &Http,
    pid: u32,
    case: &Case,
    tasks: usize,
    concurrency: usize,
    bounds: Bounds,
) -> ServerCell {
    let before = load::stages(http).await;
    let never = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu::sample(Some(pid));
    let done = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(load::probe_health(http.server.clone(), done.clone()));
    let cell = load::run_cell(http, case, tasks, concurrency, bounds, &never).await;
    done.store(true, Ordering::Relaxed);
    let cpu = Usage::between(&cpu_before, &cpu::sample(Some(pid)), cell.elapsed);
    let health = probe.await.expect("health probe");
    let after = load::stages(http).await;
    ServerCell {
        tasks,
        concurrency,
        stages: stage_deltas(case.name, &before, &after),
        cpu,
        rss: report::rss(pid),
        cell,
        health,
    }
}

/// Seconds per stage over the cell (sum deltas), and the request count.
fn stage_deltas(backend: &str, before: &Stages, after: &Stages) -> report::StageSums {
    let delta = |stage: &str| {
        let key = (backend.to_owned(), stage.to_owned());
        let (s0, c0) = before.get(&key).copied().unwrap_or_default();
        let (s1, c1) = after.get(&key).copied().unwrap_or_default();
        (s1 - s0, c1 - c0)
    };
    let mut sums = report::StageSums::default();
    for (slot, stage) in [
        (&mut sums.fetch, "fetch"),
        (&mut sums.pre_hook, "pre_hook"),
        (&mut sums.inference, "inference"),
        (&mut sums.post_hook, "post_hook"),
        (&mut sums.validation, "validation"),
        (&mut sums.total, "total"),
    ] {
        *slot = delta(stage).0;
    }
    sums.requests = delta("total").1;
    sums
}

/// What measuring a model's limits needs besides the model.
#[derive(Clone, Copy)]
struct LimitInputs<'a> {
    env: &'a ort::environment::Environment,
    images: &'a [Vec<u8>],
    urls: &'a [String],
    window: Duration,
}

/// Measures and prints one model's limits, with this process's peak RSS
/// during them.
fn measure_limits(inputs: &LimitInputs, case: &Case, path: &std::path::Path) -> Limits {
    report::reset_peak(std::process::id());
    let mut limits = tokio::task::block_in_place(|| measure_native(inputs, case, path));
    limits.bench_peak = report::rss(std::process::id());
    report::print_limits(case, &limits);
    limits
}

/// (c), then per batch size (a) and (b) with one thread and with one per
/// core.
fn measure_native(inputs: &LimitInputs, case: &Case, path: &std::path::Path) -> Limits {
    let LimitInputs {
        env,
        images,
        urls,
        window,
    } = *inputs;
    let mut native = NativeModel::load(env, case, path, images);
    let cores = native.sessions();
    let mut limits = Limits {
        cores,
        lone: Some(native.model_alone_lone(env, path, images, window)),
        ..Limits::default()
    };
    for tasks in TASKS {
        limits
            .model_alone
            .push((tasks, native.model_alone(images, tasks, cores, window)));
        for threads in [1, cores] {
            let before = cpu::sample(None);
            let started = Instant::now();
            let (rate, latencies, stages): (Rate, Latencies, NativeStages) =
                native.pipeline(images, urls, tasks, threads, window);
            let usage = Usage::between(&before, &cpu::sample(None), started.elapsed());
            limits.pipeline.push(report::Native {
                tasks,
                threads,
                rate,
                latencies,
                stages,
                cpu: usage,
            });
        }
    }
    limits
}

/// In-process costs of what a hot swap redoes: compiling new hook bytes
/// (`cls::hooks`) with Winch, which serves at once, and with Cranelift,
/// which takes over in the background; and creating a model's session pool
/// (one session per core, as `OnnxModel::load` does).
async fn swap_parts(
    env: &ort::environment::Environment,
    models: &[PathBuf],
    hooks: &[(Vec<u8>, Vec<u8>)],
) -> Vec<SwapParts> {
    use cls::hooks::{HookKind, HookRuntime, RuntimeOptions};
    let tiered = HookRuntime::new(RuntimeOptions::default()).expect("hook runtime");
    let cranelift_only = HookRuntime::new(RuntimeOptions {
        compilers: cls::hooks::Compilers::Cranelift,
        ..RuntimeOptions::default()
    })
    .expect("hook runtime");
    let options = cls::model::SessionOptions::default();
    let mut parts = Vec::new();
    for (path, (_, post)) in models.iter().zip(hooks) {
        let started = Instant::now();
        let bytes = with_custom_section(post, "bench-parts", b"optimized");
        cranelift_only
            .load(HookKind::Post, bytes.into())
            .await
            .expect("post-hook compiles");
        let optimized = started.elapsed();
        let started = Instant::now();
        let bytes = with_custom_section(post, "bench-parts", b"baseline");
        let hook = tiered
            .load(HookKind::Post, bytes.into())
            .await
            .expect("post-hook compiles");
        let baseline = started.elapsed();
        // Its optimised build compiles in the background: let it finish
        // before timing anything else.
        while !hook.is_optimized() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        let sessions: Vec<_> = tokio::task::block_in_place(|| {
            (0..options.pool_size)
                .map(|_| native::session(env, path, &options))
                .collect()
        });
        let sessions_created = started.elapsed();
        drop(sessions);
        parts.push(SwapParts {
            baseline,
            optimized,
            sessions: sessions_created,
        });
    }
    parts
}

/// `SWAPS` reconfigurations of `case` with new post-hook bytes while
/// `/predict` load (4 clients, 1 task each) runs against it.
async fn hot_swaps(
    http: &Http,
    case: &'static Case,
    config: &Value,
    hooks: &(Vec<u8>, Vec<u8>),
) -> (Vec<Duration>, Cell) {
    let bounds = Bounds {
        window: Duration::from_secs(600),
        max_requests: usize::MAX,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (http, stop) = (http.clone(), stop.clone());
        tokio::spawn(async move { load::run_cell(&http, case, 1, 4, bounds, &stop).await })
    };
    // Let the load reach its steady state before swapping under it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut swaps = Vec::new();
    for s in 0..SWAPS {
        let tag = format!("{}-{s}", case.name);
        let post = with_custom_section(&hooks.1, "bench-swap", tag.as_bytes());
        swaps.push(load::configure(http, case.name, config, &hooks.0, &post).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    (swaps, load.await.expect("swap load"))
}

/// The bench's server: its photos come from this process on loopback, a
/// private address the server refuses unless told otherwise.
fn bench_server(state_dir: PathBuf) -> ServerOptions {
    ServerOptions {
        state_dir: Some(state_dir),
        args: vec!["--allow-private-networks".into()],
        ..ServerOptions::default()
    }
}
