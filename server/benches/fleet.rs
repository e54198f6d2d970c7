//! The shared store's costs: how long a write takes to reach every replica,
//! and what the store adds to `/predict` (it should add nothing: replicas
//! serve from memory and only the follower talks to the database).
//!
//! Run (release; PostgreSQL from `scripts/setup.sh`, assets too):
//!
//! ```sh
//! cargo bench -p configurable-ls-backend --bench fleet
//! ```
//!
//! It starts a throwaway PostgreSQL cluster, three replicas on it and one
//! server on its own state dir (`--store dir`), all release builds on
//! loopback, with the text example backend (a small model, so the store's
//! share of a request would show). Then:
//!
//! 1. **Write to all**: writes through the replicas in turn, of two kinds:
//!    a config change (hooks and model already compiled and cached on every
//!    replica) and a new post-hook (the same hook with another custom
//!    section, which every replica must compile). For each: the write's own
//!    latency, then the time from its answer until all three replicas
//!    serve the new generation (polled every 2 ms through `GET
//!    /backends/{name}`).
//! 2. **Predict latency**: 1-task requests, one at a time, alternating
//!    between the `dir` server and a replica, so both see the same machine.
//!
//! `CLS_BENCH_WRITES` (10 of each kind) and `CLS_BENCH_PREDICTS` (400 per
//! server) set the sample sizes.

#[path = "server/stats.rs"]
#[allow(dead_code)]
mod stats;

use std::time::{Duration, Instant};

use cls::hooks::stamp::with_custom_section;
use harness::fleet::Postgres;
use harness::{Configure, Server, ServerOptions, TEXT_CONFIG, client, example_hook, model, read};
use serde_json::{Value, json};
use stats::{Latencies, ms};

const NAME: &str = "bench";
const REPLICAS: usize = 3;
const CONVERGE: Duration = Duration::from_secs(60);

fn main() {
    let writes = env_count("CLS_BENCH_WRITES", 10);
    let predicts = env_count("CLS_BENCH_PREDICTS", 400);
    let model_path = model("text_sentiment.onnx").expect("text_sentiment.onnx (scripts/setup.sh)");
    let post = read(&example_hook("text-post"));
    let pg = Postgres::start().expect("PostgreSQL (scripts/setup.sh installs it)");
    let store = pg.create_database("bench");
    let replicas: Vec<Server> = (0..REPLICAS)
        .map(|i| start(&store, &format!("r{i}")))
        .collect();
    let alone = start("dir", "alone");
    let request = |version: &str, post: &[u8]| Configure {
        config: json!({
            "model": {"uri": model_path.display().to_string()},
            "label_config": TEXT_CONFIG,
            "model_version": version,
        }),
        post_hook: Some(post.to_vec()),
        ..Configure::default()
    };

    configure(&alone.url, &request("v0", &post));
    let first = configure(&replicas[0].url, &request("v0", &post));
    all_serve(&replicas, first);

    println!("write to all replicas ({REPLICAS} replicas, PostgreSQL store, {writes} writes each)");
    println!(
        "{:<16} {:>10} {:>10} {:>14} {:>14}",
        "write", "write p50", "write max", "to all p50", "to all max"
    );
    for kind in ["config change", "new post-hook"] {
        let mut write = Vec::new();
        let mut to_all = Vec::new();
        for i in 0..writes {
            let version = format!("{kind}-{i}");
            let hook = match kind {
                "config change" => post.clone(),
                _ => with_custom_section(&post, "bench-fleet", version.as_bytes()),
            };
            let through = &replicas[i % REPLICAS].url;
            let started = Instant::now();
            let generation = configure(through, &request(&version, &hook));
            let answered = Instant::now();
            all_serve(&replicas, generation);
            write.push(answered - started);
            to_all.push(answered.elapsed());
        }
        let (write, to_all) = (Latencies::new(write), Latencies::new(to_all));
        println!(
            "{kind:<16} {:>10} {:>10} {:>14} {:>14}",
            ms(write.quantile(0.5)),
            ms(write.quantile(1.0)),
            ms(to_all.quantile(0.5)),
            ms(to_all.quantile(1.0)),
        );
    }

    let (mut dir, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..predicts {
        dir.push(timed_predict(&alone.url));
        shared.push(timed_predict(&replicas[1].url));
    }
    println!();
    println!("/predict, 1 task, one request at a time ({predicts} per server, interleaved)");
    println!("{:<22} {:>8} {:>8} {:>8}", "store", "p50", "p90", "p99");
    for (label, samples) in [("dir (one process)", dir), ("postgres (replica)", shared)] {
        let l = Latencies::new(samples);
        println!(
            "{label:<22} {:>8} {:>8} {:>8}",
            ms(l.quantile(0.5)),
            ms(l.quantile(0.9)),
            ms(l.quantile(0.99)),
        );
    }
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn start(store: &str, id: &str) -> Server {
    Server::start(ServerOptions {
        args: ["--store", store, "--replica-id", id]
            .map(str::to_owned)
            .to_vec(),
        ..ServerOptions::default()
    })
}

/// `PUT /backends/bench`; the generation it answers with.
fn configure(base: &str, request: &Configure) -> u64 {
    let response = client()
        .put(format!("{base}/backends/{NAME}"))
        .multipart(request.form())
        .send()
        .expect("configure request");
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "configure: {status} {body}");
    body["generation"].as_u64().unwrap_or(0)
}

/// Returns once every replica serves `generation` (or a later one).
fn all_serve(replicas: &[Server], generation: u64) {
    let deadline = Instant::now() + CONVERGE;
    for replica in replicas {
        while serving(&replica.url) < generation {
            assert!(
                Instant::now() < deadline,
                "{} did not reach generation {generation}; log:\n{}",
                replica.url,
                replica.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn serving(base: &str) -> u64 {
    client()
        .get(format!("{base}/backends/{NAME}"))
        .send()
        .ok()
        .filter(|r| r.status().is_success())
        .and_then(|r| r.json::<Value>().ok())
        .and_then(|body| body["generation"].as_u64())
        .unwrap_or(0)
}

fn timed_predict(base: &str) -> Duration {
    let body = json!({"tasks": [{"id": 1, "data": {"text": "a good day"}}]});
    let started = Instant::now();
    let response = client()
        .post(format!("{base}/backends/{NAME}/predict"))
        .json(&body)
        .send()
        .expect("predict request");
    assert!(response.status().is_success(), "{}", response.status());
    let _ = response.bytes();
    started.elapsed()
}
