//! Many replicas, one truth: three real server processes on one real
//! PostgreSQL, behind a real nginx that spreads requests round-robin.
//! A change made through any replica must reach all of them; a request is
//! served by one backend generation from start to end; concurrent writes
//! with the same `If-Match` are ordered; replicas that were stopped, cut
//! off or killed converge; a database outage stops writes, not predictions.
//! The negative control runs the same fleet on per-replica state dirs and
//! shows the failures the shared store removes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::fleet::{LoadBalancer, Postgres};
use harness::{
    Configure, Server, ServerOptions, TEXT_CONFIG, client, example_hook, model, poll, read, require,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long a fleet may take to agree (a resync interval plus slack).
const CONVERGE: Duration = Duration::from_secs(30);
const RESYNC_SECS: &str = "3";

fn text_backend(version: &str) -> Option<Configure> {
    let model_path = model("text_sentiment.onnx")?;
    Some(Configure {
        config: json!({
            "model": {"uri": model_path.display().to_string()},
            "label_config": TEXT_CONFIG,
            "model_version": version,
        }),
        post_hook: Some(read(&example_hook("text-post"))),
        ..Configure::default()
    })
}

fn replica(store: &str, id: &str) -> Server {
    Server::start(ServerOptions {
        args: vec![
            "--store".into(),
            store.into(),
            "--replica-id".into(),
            id.into(),
            "--resync-secs".into(),
            RESYNC_SECS.into(),
        ],
        ..ServerOptions::default()
    })
}

fn fleet(store: &str, n: usize) -> Vec<Server> {
    (0..n).map(|i| replica(store, &format!("r{i}"))).collect()
}

/// `PUT /backends/{name}` with optional `If-Match` and query.
fn put(
    base: &str,
    name: &str,
    request: &Configure,
    if_match: Option<&str>,
    query: &str,
) -> (StatusCode, Value) {
    let mut builder = client()
        .put(format!("{base}/backends/{name}{query}"))
        .multipart(request.form());
    if let Some(tag) = if_match {
        builder = builder.header("If-Match", tag);
    }
    let response = builder.send().expect("configure request");
    (response.status(), response.json().unwrap_or(Value::Null))
}

/// One predict: status, the model versions of its results, and the
/// replica and generation headers, and when it was sent and answered.
struct Answer {
    status: StatusCode,
    versions: Vec<String>,
    replica: String,
    generation: u64,
    sent: Instant,
    answered: Instant,
}

fn predict(base: &str, name: &str) -> Answer {
    let body = json!({"tasks": [
        {"id": 1, "data": {"text": "good"}},
        {"id": 2, "data": {"text": "bad"}},
        {"id": 3, "data": {"text": "fine"}},
    ]});
    let sent = Instant::now();
    let response = client()
        .post(format!("{base}/backends/{name}/predict"))
        .json(&body)
        .send()
        .expect("predict request");
    let header = |h: &str| {
        response
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let replica = header("x-replica-id");
    let generation = header("x-backend-generation").parse().unwrap_or(0);
    let status = response.status();
    let json: Value = response.json().unwrap_or(Value::Null);
    let versions = json["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|e| e["model_version"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    Answer {
        status,
        versions,
        replica,
        generation,
        sent,
        answered: Instant::now(),
    }
}

/// A request keeps the generation it started on, so two overlapping
/// requests to one replica may finish in either order; but a request sent
/// after another was answered must not see an older generation.
fn assert_no_replica_went_back(answers: &[Answer]) {
    for earlier in answers {
        let went_back = answers.iter().find(|later| {
            later.replica == earlier.replica
                && later.sent > earlier.answered
                && later.generation < earlier.generation
        });
        if let Some(later) = went_back {
            panic!(
                "replica {} went back from generation {} to {}",
                later.replica, earlier.generation, later.generation
            );
        }
    }
}

fn generation_on(server: &Server, name: &str) -> Option<u64> {
    let response = client()
        .get(format!("{}/backends/{name}", server.url))
        .send()
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<Value>().ok()?["generation"].as_u64()
}

fn wait_for_generation(servers: &[&Server], name: &str, generation: u64) {
    for server in servers {
        let reached = poll(CONVERGE, || {
            generation_on(server, name)
                .filter(|g| *g >= generation)
                .map(|_| ())
        });
        assert!(
            reached.is_some(),
            "{} did not serve generation {generation} of {name} within {CONVERGE:?}; log:\n{}",
            server.url,
            server.log()
        );
    }
}

fn signal(server: &Server, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &server.pid().to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
}

#[test]
fn negative_control_a_dir_store_fleet_serves_a_change_from_one_replica_only() {
    let request = require!("text_sentiment.onnx", text_backend("v1"));
    let replicas = fleet("dir", 3);
    let urls: Vec<String> = replicas.iter().map(|s| s.url.clone()).collect();
    let lb = require!(
        "nginx (scripts/setup.sh installs it)",
        LoadBalancer::start(&urls)
    );
    let (status, _) = put(&replicas[0].url, "t", &request, None, "");
    assert!(status.is_success(), "{status}");
    let failed = (0..30)
        .filter(|_| !predict(&lb.url, "t").status.is_success())
        .count();
    // Two of three replicas never heard of the backend.
    assert!(
        failed >= 10,
        "only {failed} of 30 requests failed: the control no longer shows the bug"
    );
}

#[test]
fn with_postgres_every_replica_serves_every_change_safely_under_load() {
    let v1 = require!("text_sentiment.onnx", text_backend("v1"));
    let pg = require!(
        "PostgreSQL (scripts/setup.sh installs it)",
        Postgres::start()
    );
    let store = pg.create_database("fleet");
    let mut replicas = fleet(&store, 3);
    let urls: Vec<String> = replicas.iter().map(|s| s.url.clone()).collect();
    let lb = require!(
        "nginx (scripts/setup.sh installs it)",
        LoadBalancer::start(&urls)
    );

    // Written through one replica, waited for on all: then every request
    // through the balancer succeeds.
    let (status, body) = put(&replicas[0].url, "t", &v1, None, "?wait=all");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["generation"], 1, "{body}");
    let serving = body["replicas"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|r| r["state"] == "serving").count());
    assert_eq!(serving, 3, "wait=all returned before all served it: {body}");
    for _ in 0..30 {
        let answer = predict(&lb.url, "t");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.versions, ["v1"; 3]);
    }

    // A rolling change under load, through another replica.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, answers, url) = (stop.clone(), answers.clone(), lb.url.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let answer = predict(&url, "t");
                    answers.lock().unwrap().push(answer);
                }
            })
        })
        .collect();
    poll(Duration::from_secs(30), || {
        (answers.lock().unwrap().len() >= 10).then_some(())
    });
    let v2 = text_backend("v2").unwrap();
    let (status, body) = put(&replicas[1].url, "t", &v2, Some("\"1\""), "?wait=all");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["generation"], 2);
    let before = answers.lock().unwrap().len();
    poll(Duration::from_secs(30), || {
        (answers.lock().unwrap().len() >= before + 10).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    let answers = answers.lock().unwrap();
    let failed: Vec<StatusCode> = answers
        .iter()
        .map(|a| a.status)
        .filter(|s| !s.is_success())
        .collect();
    assert!(failed.is_empty(), "non-2xx during the change: {failed:?}");
    for answer in answers.iter() {
        assert!(
            answer.versions == ["v1"; 3] || answer.versions == ["v2"; 3],
            "one request mixed generations: {:?}",
            answer.versions
        );
        let expected = if answer.versions[0] == "v1" { 1 } else { 2 };
        assert_eq!(answer.generation, expected, "header and body disagree");
    }
    assert_no_replica_went_back(&answers);
    assert!(
        answers.iter().skip(before).any(|a| a.versions[0] == "v2"),
        "v2 was never served after the write returned"
    );
    for _ in 0..9 {
        assert_eq!(
            predict(&lb.url, "t").versions,
            ["v2"; 3],
            "a replica still serves v1 after wait=all"
        );
    }
    drop(answers);

    // Two writes with the same If-Match: one wins, one is told it is stale.
    let writes: Vec<_> = [0, 2]
        .into_iter()
        .map(|i| {
            let (url, request) = (
                replicas[i].url.clone(),
                text_backend(&format!("v3-{i}")).unwrap(),
            );
            std::thread::spawn(move || put(&url, "t", &request, Some("\"2\""), "").0)
        })
        .collect();
    let mut statuses: Vec<StatusCode> = writes.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
    wait_for_generation(&replicas.iter().collect::<Vec<_>>(), "t", 3);

    // A replica stopped during a change catches up once it runs again.
    signal(&replicas[2], "STOP");
    let (status, body) = put(
        &replicas[0].url,
        "t",
        &text_backend("v4").unwrap(),
        None,
        "",
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    signal(&replicas[2], "CONT");
    wait_for_generation(&[&replicas[2]], "t", 4);

    // Its database connections cut: it reconnects and resyncs.
    pg.psql(
        "fleet",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'configurable-ls-backend'",
    );
    let (status, body) = put(
        &replicas[1].url,
        "t",
        &text_backend("v5").unwrap(),
        None,
        "",
    );
    assert!(status.is_success(), "{status}: {body}");
    wait_for_generation(&replicas.iter().collect::<Vec<_>>(), "t", 5);

    // One replica killed: the rest keep serving; restarted, it catches up.
    replicas[2].kill();
    for _ in 0..12 {
        let answer = predict(&lb.url, "t");
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "a request failed with one replica down"
        );
    }
    let (status, _) = put(
        &replicas[0].url,
        "t",
        &text_backend("v6").unwrap(),
        None,
        "",
    );
    assert!(status.is_success());
    replicas[2] = replica(&store, "r2");
    wait_for_generation(&[&replicas[2]], "t", 6);
    assert_eq!(predict(&replicas[2].url, "t").versions, ["v6"; 3]);

    // Bad input: nothing changes.
    let (status, body) = put(
        &replicas[0].url,
        "t",
        &text_backend("x").unwrap(),
        Some("soon"),
        "",
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("If-Match"),
        "{body}"
    );
    let (status, body) = put(
        &replicas[0].url,
        "t",
        &text_backend("x").unwrap(),
        None,
        "?wait=some",
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = put(
        &replicas[0].url,
        "t",
        &text_backend("x").unwrap(),
        Some("\"5\""),
        "",
    );
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("generation 6"),
        "{body}"
    );
    let missing = client()
        .get(format!("{}/backends/nope", lb.url))
        .send()
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // The refused writes changed nothing; replica 1 learns of v6 by NOTIFY,
    // in its own time.
    wait_for_generation(&[&replicas[1]], "t", 6);
    assert_eq!(generation_on(&replicas[1], "t"), Some(6));

    // Deleted through one replica: gone from all.
    let deleted = client()
        .delete(format!("{}/backends/t?wait=all", replicas[1].url))
        .send()
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for server in &replicas {
        assert_eq!(predict(&server.url, "t").status, StatusCode::NOT_FOUND);
    }
}

#[test]
fn a_database_outage_stops_writes_not_predictions() {
    let v1 = require!("text_sentiment.onnx", text_backend("v1"));
    let pg = require!(
        "PostgreSQL (scripts/setup.sh installs it)",
        Postgres::start()
    );
    let store = pg.create_database("outage");
    let replicas = fleet(&store, 2);
    let (status, body) = put(&replicas[0].url, "t", &v1, None, "?wait=all");
    assert_eq!(status, StatusCode::CREATED, "{body}");

    pg.stop_server();
    for server in &replicas {
        for _ in 0..5 {
            assert_eq!(predict(&server.url, "t").versions, ["v1"; 3]);
        }
    }
    let (status, body) = put(
        &replicas[1].url,
        "t",
        &text_backend("v2").unwrap(),
        None,
        "",
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("backend store (postgres) is unavailable"),
        "{message}"
    );
    assert!(
        !message.contains("postgres@"),
        "the store URL leaked: {message}"
    );
    let metrics = client()
        .get(format!("{}/metrics", replicas[0].url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let down = poll(CONVERGE, || {
        let text = client()
            .get(format!("{}/metrics", replicas[0].url))
            .send()
            .ok()?
            .text()
            .ok()?;
        text.contains("cls_store_up 0").then_some(())
    });
    assert!(down.is_some(), "store_up never went to 0: {metrics}");

    pg.start_server();
    let written = poll(CONVERGE, || {
        let (status, _) = put(
            &replicas[1].url,
            "t",
            &text_backend("v2").unwrap(),
            None,
            "?wait=all",
        );
        status.is_success().then_some(status)
    });
    assert_eq!(written, Some(StatusCode::OK));
    for server in &replicas {
        assert_eq!(predict(&server.url, "t").versions, ["v2"; 3]);
    }
}

#[test]
fn a_malformed_store_url_is_a_clear_startup_error_without_the_password() {
    for (store, expected) in [
        (
            "mysql://u:hunter2@h/db",
            "must be `dir` or a PostgreSQL URL",
        ),
        ("postgres://u:hunter2@h:notaport/db", "malformed"),
    ] {
        let out = std::process::Command::new(harness::server_binary())
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--store",
                store,
            ])
            .env("CLS_STATE_DIR", std::env::temp_dir().join("cls-bad-store"))
            .output()
            .expect("run the server");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--store") && stderr.contains(expected),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    }
}
