//! Hooks written in Python (componentize-py components: CPython inside,
//! about 19 MiB): the hostile cases behave as for Rust hooks, and a Python
//! post-hook configured over HTTP serves predictions and survives a restart
//! without recompiling. (The artefact cache itself is tested for both
//! languages in `hooks_hostile.rs`.)
//!
//! Python components take seconds to compile, so the in-process tests share
//! one artefact cache under the project cache (keyed by the component's
//! sha256 and the engine's compatibility hash); the cache test uses a fresh
//! one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cls::hooks::{
    HookCallError, HookContext, HookFailure, HookKind, HookLimits, HookRuntime, RuntimeOptions,
};
use harness::{
    Configure, Server, ServerOptions, TEXT_CONFIG, cache_dir, client, example_hook, model,
    python_example_hook, python_fixture_hook, read, require,
};
use serde_json::{Value, json};

fn shared_runtime() -> HookRuntime {
    HookRuntime::new(RuntimeOptions {
        artefact_dir: Some(cache_dir().join("test-hook-artefacts")),
        ..RuntimeOptions::default()
    })
    .expect("hook runtime")
}

/// Python's interpreter needs more than a Rust hook; generous time so a
/// loaded machine never turns a check into a timeout.
fn limits() -> HookLimits {
    HookLimits {
        timeout: Duration::from_secs(20),
        memory_bytes: 128 << 20,
        max_output_bytes: 16 << 20,
    }
}

fn ctx() -> HookContext {
    HookContext {
        task_json: r#"{"id":7,"data":{"text":"hi"}}"#.into(),
        task_id: Some(7),
        label_config: "<View><Text name=\"text\" value=\"$text\"/></View>".into(),
        model_version: "v1".into(),
        ..HookContext::default()
    }
}

async fn run_fixture(
    rt: &HookRuntime,
    fixture: &str,
    limits: &HookLimits,
) -> Result<String, HookCallError> {
    let path = python_fixture_hook(fixture);
    let hook = rt
        .load(HookKind::Post, Bytes::from(read(&path)))
        .await
        .unwrap_or_else(|e| panic!("{} should load: {e}", path.display()));
    hook.call_post(rt, Vec::new(), &ctx(), limits, "test").await
}

async fn assert_still_healthy(rt: &HookRuntime) {
    let hook = rt
        .load(
            HookKind::Post,
            Bytes::from(read(&example_hook("trivial-post"))),
        )
        .await
        .expect("trivial hook loads");
    let json = hook
        .call_post(rt, Vec::new(), &ctx(), &limits(), "test")
        .await
        .expect("a good hook still runs after a hostile one");
    assert!(json.contains("result"), "{json}");
}

#[tokio::test]
async fn python_infinite_loop_is_stopped_at_the_deadline() {
    let rt = shared_runtime();
    let short = HookLimits {
        timeout: Duration::from_secs(1),
        ..limits()
    };
    let err = run_fixture(&rt, "loop-forever", &short).await.unwrap_err();
    assert!(matches!(err.failure, HookFailure::Deadline(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("post-hook failed on task 7: stopped after"),
        "{err}"
    );
    assert_still_healthy(&rt).await;
}

#[tokio::test]
async fn python_memory_bomb_hits_the_memory_limit() {
    let rt = shared_runtime();
    let err = run_fixture(&rt, "memory-bomb", &limits())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.failure,
            HookFailure::OutOfMemory(_) | HookFailure::Trap(_)
        ),
        "{err}"
    );
    assert!(err.to_string().contains("memory"), "{err}");
    assert_still_healthy(&rt).await;
}

#[tokio::test]
async fn python_exception_is_reported_with_its_message_and_traceback() {
    let rt = shared_runtime();
    let err = run_fixture(&rt, "raises", &limits()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err.failure, HookFailure::Returned(_)), "{text}");
    assert!(
        text.contains("ValueError: this python hook raises on purpose"),
        "{text}"
    );
    assert!(
        text.contains("app.py"),
        "the traceback names the file: {text}"
    );
    assert_still_healthy(&rt).await;
}

#[tokio::test]
async fn python_invalid_json_comes_back_as_text_for_the_validator() {
    let rt = shared_runtime();
    let json = run_fixture(&rt, "invalid-json", &limits())
        .await
        .expect("the call itself works");
    assert!(serde_json::from_str::<Value>(&json).is_err(), "{json}");
}

#[tokio::test]
async fn a_python_hook_cannot_read_host_files_or_environment() {
    let rt = shared_runtime();
    let json = run_fixture(&rt, "reads-host", &limits())
        .await
        .expect("reads-host runs");
    let report: Value = serde_json::from_str(&json).expect("reads-host returns JSON");
    let probe = &report["probe"];
    for attempt in [
        "etc_passwd",
        "cwd_file",
        "cwd_listing",
        "write_tmp",
        "tcp_connect",
    ] {
        assert_eq!(
            probe[attempt]["ok"],
            json!(false),
            "{attempt} succeeded: {probe}"
        );
    }
    assert_eq!(
        probe["env"]["count"],
        json!(0),
        "hook saw environment variables: {probe}"
    );
    assert_eq!(probe["args"], json!([]), "{probe}");
    assert!(!json.contains("root:x:0:0"), "{json}");
}

fn predict_texts(server: &Server, texts: &[&str]) -> Value {
    let tasks: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i + 1, "data": {"text": t}}))
        .collect();
    let response = client()
        .post(format!("{}/backends/py/predict", server.url))
        .json(&json!({"tasks": tasks, "label_config": TEXT_CONFIG}))
        .send()
        .expect("predict");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().expect("predict JSON")
}

fn choices(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            r["result"][0]["value"]["choices"][0]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn backend_info(server: &Server) -> Value {
    client()
        .get(format!("{}/backends/py", server.url))
        .send()
        .expect("GET /backends/py")
        .json()
        .expect("backend JSON")
}

#[test]
fn a_python_post_hook_configured_over_http_serves_and_survives_a_restart() {
    let model_path = require!("text_sentiment.onnx", model("text_sentiment.onnx"));
    let mut server = Server::start(ServerOptions::default());
    let request = Configure {
        config: json!({
            "model": {"uri": model_path.display().to_string()},
            "label_config": TEXT_CONFIG,
        }),
        post_hook: Some(read(&python_example_hook("text-post"))),
        ..Configure::default()
    };
    let response = client()
        .put(format!("{}/backends/py", server.url))
        .multipart(request.form())
        .send()
        .expect("configure");
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().expect("configure JSON");
    let post = &body["hooks"]["post_hook"];
    assert_eq!(post["from_cache"], json!(false), "{post}");
    assert!(
        post["load_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{post}"
    );
    assert!(body["configure_ms"].as_f64().is_some(), "{body}");

    let texts = [
        "I love it, wonderful and great",
        "terrible, awful, I hate it",
    ];
    let before = predict_texts(&server, &texts);
    assert_eq!(choices(&before), ["positive", "negative"]);

    let state_dir = server.keep_state();
    server.terminate().expect("server exits on SIGTERM");
    let started = Instant::now();
    let restarted = Server::start(ServerOptions {
        state_dir: Some(state_dir.clone()),
        ..ServerOptions::default()
    });
    let up = started.elapsed();
    let info = backend_info(&restarted);
    assert_eq!(
        info["hooks"]["post_hook"]["from_cache"],
        json!(true),
        "the restart must reuse the compiled artefact: {info}"
    );
    eprintln!(
        "restart with a Python post-hook: /health UP after {:.0} ms; hook loaded in {:.0} ms (compiled in {:.0} ms before)",
        up.as_secs_f64() * 1e3,
        info["hooks"]["post_hook"]["load_ms"]
            .as_f64()
            .unwrap_or(f64::NAN),
        post["load_ms"].as_f64().unwrap_or(f64::NAN)
    );
    let after = predict_texts(&restarted, &texts);
    assert_eq!(
        after["results"], before["results"],
        "same predictions after the restart"
    );
    drop(restarted);
    let _ = std::fs::remove_dir_all(state_dir);
}
