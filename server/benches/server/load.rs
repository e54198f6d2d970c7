//! The HTTP side: a static file server for the photos (what Label Studio's
//! storage would be), `/predict` load at a fixed concurrency, `/configure`,
//! and the per-stage histograms from `/metrics`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde_json::Value;

use crate::cases::{Case, all_predicted, predict_body};
use crate::stats::Latencies;

/// Serves `files` (name → bytes) on 127.0.0.1 from this process; returns
/// the base URL. Runs until the process ends.
pub async fn serve_files(files: Vec<(String, Vec<u8>)>) -> String {
    type Files = Arc<HashMap<String, Bytes>>;
    async fn file(
        State(files): State<Files>,
        Path(name): Path<String>,
    ) -> axum::response::Response {
        match files.get(&name) {
            Some(bytes) => {
                let mime = if name.ends_with(".jpg") {
                    "image/jpeg"
                } else {
                    "image/png"
                };
                ([(header::CONTENT_TYPE, mime)], bytes.clone()).into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let files: Files = Arc::new(
        files
            .into_iter()
            .map(|(name, bytes)| (name, Bytes::from(bytes)))
            .collect(),
    );
    let app = axum::Router::new()
        .route("/{name}", axum::routing::get(file))
        .with_state(files);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the file server");
    let addr = listener.local_addr().expect("file server address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("file server");
    });
    format!("http://{addr}")
}

/// Where requests go: the client, the server's base URL and the file
/// server's base URL.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub server: String,
    pub files: String,
}

/// One load cell's outcome.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub requests: usize,
    pub tasks: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub latencies: Latencies,
    pub first_failure: Option<String>,
}

/// How long and how much one cell may run.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub window: Duration,
    pub max_requests: usize,
}

/// `/predict` for `case` with `tasks` tasks per request from `concurrency`
/// clients, until the window or the request budget is spent (requests in
/// flight then finish and count), or until `stop` is set. A request fails unless it answers 200
/// with one prediction per task.
pub async fn run_cell(
    http: &Http,
    case: &Case,
    tasks: usize,
    concurrency: usize,
    bounds: Bounds,
    stop: &Arc<AtomicBool>,
) -> Cell {
    // Bodies per request composition, serialised once: the load generator
    // shares the cores with the server and should cost it little.
    let compositions = crate::cases::IMAGES.len();
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..compositions)
            .map(|r| Bytes::from(predict_body(case, &http.files, r, tasks).to_string()))
            .collect(),
    );
    let url = format!("{}/backends/{}/predict", http.server, case.name);
    let claimed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + bounds.window;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, bodies, claimed, stop) = (
                http.client.clone(),
                url.clone(),
                bodies.clone(),
                claimed.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut failed, mut first_failure) = (0, None);
                loop {
                    let r = claimed.fetch_add(1, Ordering::Relaxed);
                    if r >= bounds.max_requests
                        || Instant::now() >= deadline
                        || stop.load(Ordering::Relaxed)
                    {
                        break;
                    }
                    let sent = Instant::now();
                    let outcome =
                        predict_once(&client, &url, bodies[r % bodies.len()].clone(), tasks).await;
                    latencies.push(sent.elapsed());
                    if let Err(e) = outcome {
                        failed += 1;
                        first_failure.get_or_insert(e);
                    }
                }
                (latencies, failed, first_failure)
            })
        })
        .collect();
    let mut cell = Cell::default();
    let mut latencies = Vec::new();
    for worker in workers {
        let (l, failed, first) = worker.await.expect("load worker");
        latencies.extend(l);
        cell.failed += failed;
        if cell.first_failure.is_none() {
            cell.first_failure = first;
        }
    }
    cell.elapsed = started.elapsed();
    cell.requests = latencies.len();
    cell.tasks = (cell.requests - cell.failed) * tasks;
    cell.latencies = Latencies::new(latencies);
    cell
}

/// `GET /health` every 25 ms on a connection of its own until `done`:
/// the latencies Label Studio's health checks see while `/predict` load
/// runs. A probe that fails counts as the time it took to fail.
pub async fn probe_health(server: String, done: Arc<AtomicBool>) -> Latencies {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("health client");
    let url = format!("{server}/health");
    let mut latencies = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(25));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !done.load(Ordering::Relaxed) {
        ticks.tick().await;
        let sent = Instant::now();
        let answered = client.get(&url).send().await;
        if let Ok(response) = answered {
            let _ = response.bytes().await;
        }
        latencies.push(sent.elapsed());
    }
    Latencies::new(latencies)
}

/// One `/predict`; `Err` says why it does not count as served.
pub async fn predict_once(
    client: &reqwest::Client,
    url: &str,
    body: Bytes,
    tasks: usize,
) -> Result<(), String> {
    let response = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("body: {e}"))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("{status}: {e}"))?;
    if status != StatusCode::OK || !all_predicted(&json, tasks) {
        // Name the failing task's error entry when there is one.
        let entry = json["results"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e.get("error").is_some()))
            .map(Value::to_string);
        let mut shown = entry.unwrap_or(text);
        shown.truncate(400);
        return Err(format!("{status}: {shown}"));
    }
    Ok(())
}

/// `PUT /backends/<name>` with the config and hooks; returns how long it took.
pub async fn configure(
    http: &Http,
    name: &str,
    config: &Value,
    pre_hook: &[u8],
    post_hook: &[u8],
) -> Duration {
    use reqwest::multipart::{Form, Part};
    let form = Form::new()
        .text("config", config.to_string())
        .part(
            "pre_hook",
            Part::bytes(pre_hook.to_vec()).file_name("pre.wasm"),
        )
        .part(
            "post_hook",
            Part::bytes(post_hook.to_vec()).file_name("post.wasm"),
        );
    let started = Instant::now();
    let response = http
        .client
        .put(format!("{}/backends/{name}", http.server))
        .multipart(form)
        .send()
        .await
        .expect("configure request");
    let took = started.elapsed();
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "configuring {name} failed: {status} {body}"
    );
    took
}

/// `cls_stage_seconds` sums and counts per (backend, stage).
pub type Stages = HashMap<(String, String), (f64, f64)>;

/// Scrapes `/metrics` and reads the stage histograms' `_sum` and `_count`.
pub async fn stages(http: &Http) -> Stages {
    let text = http
        .client
        .get(format!("{}/metrics", http.server))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    let mut out = Stages::new();
    for line in text.lines() {
        let (is_sum, rest) = if let Some(rest) = line.strip_prefix("cls_stage_seconds_sum{") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("cls_stage_seconds_count{") {
            (false, rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        let entry = out.entry((label("backend"), label("stage"))).or_default();
        if is_sum {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    out
}
