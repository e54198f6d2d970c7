//! End to end with a real MLflow server (started by `scripts/services.sh`,
//! models logged and registered by `scripts/py/register_models.py`): the
//! server resolves `models:/…` over MLflow's REST API, downloads the whole
//! model folder, loads it in ONNX Runtime and serves predictions. No local
//! path shortcuts here, except the two negative cases that need a broken
//! model folder.

use harness::{
    CLASSIFICATION_CONFIG, Configure, Server, ServerOptions, client, example_hook, image, model,
    read, require,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn mlflow_uri() -> Option<String> {
    std::env::var("CLS_MLFLOW_URI")
        .ok()
        .filter(|v| !v.is_empty())
}

fn classification(model: Value) -> Configure {
    Configure {
        config: json!({"model": model, "label_config": CLASSIFICATION_CONFIG}),
        pre_hook: Some(read(&example_hook("classification-pre"))),
        post_hook: Some(read(&example_hook("classification-post"))),
        ..Configure::default()
    }
}

fn put(server: &Server, name: &str, request: &Configure) -> (StatusCode, Value) {
    let response = client()
        .put(format!("{}/backends/{name}", server.url))
        .multipart(request.form())
        .send()
        .expect("configure");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn predict_photo(server: &Server, name: &str) -> Value {
    use base64::Engine as _;
    let photo = image("astronaut.png").expect("astronaut.png (scripts/setup.sh)");
    let data = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(read(&photo))
    );
    let response = client()
        .post(format!("{}/backends/{name}/predict", server.url))
        .json(&json!({"tasks": [{"id": 1, "data": {"image": data}}], "label_config": CLASSIFICATION_CONFIG}))
        .send()
        .expect("predict");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().expect("json")
}

#[test]
fn registry_models_by_version_alias_and_latest_serve_predictions() {
    let tracking = require!("a running MLflow (CLS_MLFLOW_URI)", mlflow_uri());
    let server = Server::start(ServerOptions::default());
    let mut versions = Vec::new();
    // A moving URI is pinned at write time to the version it resolved to,
    // so replicas and restarts load what was validated.
    for (name, uri, pinned) in [
        ("by-version", "models:/orientation/2", None),
        (
            "by-alias",
            "models:/orientation@champion",
            Some("models:/orientation/1"),
        ),
        (
            "latest",
            "models:/orientation/latest",
            Some("models:/orientation/2"),
        ),
        ("external-data", "models:/orientation_external/1", None),
    ] {
        let (status, body) = put(
            &server,
            name,
            &classification(json!({"uri": uri, "tracking_uri": tracking})),
        );
        assert_eq!(status, StatusCode::CREATED, "{uri}: {body}");
        let model = &body["config"]["model"];
        assert_eq!(model["uri"], pinned.unwrap_or(uri), "{uri}: {model}");
        assert_eq!(
            model["resolved_from"],
            if pinned.is_some() {
                json!(uri)
            } else {
                Value::Null
            },
            "{uri}: {model}"
        );
        let source = body["model"]["source"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(source.contains("orientation"), "{source}");
        let prediction = predict_photo(&server, name);
        let result = &prediction["results"][0]["result"][0];
        assert_eq!(result["type"], "choices", "{uri}: {prediction}");
        assert_eq!(
            prediction["results"][0]["model_version"],
            body["model_version"]
        );
        versions.push(
            body["model_version"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_ne!(
        versions[0], versions[1],
        "version 2 and the champion (version 1) differ"
    );
    assert_eq!(versions[0], versions[2], "latest is version 2");
}

#[test]
fn the_tracking_uri_can_come_from_the_environment() {
    let tracking = require!("a running MLflow (CLS_MLFLOW_URI)", mlflow_uri());
    let server = Server::start(ServerOptions {
        env: vec![("MLFLOW_TRACKING_URI".into(), tracking)],
        ..ServerOptions::default()
    });
    let (status, body) = put(
        &server,
        "env",
        &classification(json!({"uri": "models:/orientation/1"})),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        predict_photo(&server, "env")["results"][0]["result"][0]["type"],
        "choices"
    );
}

#[test]
fn basic_auth_mlflow_accepts_the_right_password_and_explains_a_wrong_one() {
    let uri = require!(
        "MLflow with basic auth",
        std::env::var("CLS_MLFLOW_AUTH_URI").ok()
    );
    let user = std::env::var("CLS_MLFLOW_AUTH_USER").unwrap_or_default();
    let password = std::env::var("CLS_MLFLOW_AUTH_PASSWORD").unwrap_or_default();
    let server = Server::start(ServerOptions::default());
    let (status, body) = put(
        &server,
        "wrong",
        &classification(
            json!({"uri": "models:/orientation/1", "tracking_uri": uri, "username": user, "password": "not-the-password"}),
        ),
    );
    assert!(status.is_client_error(), "{status}: {body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("credentials") || message.contains("401"),
        "{message}"
    );
    assert!(
        !message.contains("not-the-password"),
        "the password never comes back"
    );
    assert!(
        !server.log().contains("not-the-password"),
        "nor reaches the log"
    );
    let (status, body) = put(
        &server,
        "right",
        &classification(
            json!({"uri": "models:/orientation/1", "tracking_uri": uri, "username": user, "password": password}),
        ),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["config"]["model"]["password"], "***",
        "secrets are redacted in responses"
    );
    let (_, shown) = {
        let r = client()
            .get(format!("{}/backends/right", server.url))
            .send()
            .expect("show");
        (r.status(), r.text().unwrap_or_default())
    };
    assert!(
        !shown.contains(&password),
        "GET /backends/right leaks the password"
    );
    assert_eq!(
        predict_photo(&server, "right")["results"][0]["result"][0]["type"],
        "choices"
    );
}

#[test]
fn a_model_without_an_onnx_flavor_gets_export_advice() {
    let tracking = require!("a running MLflow (CLS_MLFLOW_URI)", mlflow_uri());
    let server = Server::start(ServerOptions::default());
    let (status, body) = put(
        &server,
        "sklearn",
        &classification(json!({"uri": "models:/sklearn_only/1", "tracking_uri": tracking})),
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("sklearn"),
        "names the flavors it has: {message}"
    );
    assert!(
        message.contains("mlflow.onnx.log_model"),
        "says how to export: {message}"
    );
}

#[test]
fn a_missing_version_names_the_model_and_the_registry() {
    let tracking = require!("a running MLflow (CLS_MLFLOW_URI)", mlflow_uri());
    let server = Server::start(ServerOptions::default());
    let (status, body) = put(
        &server,
        "missing",
        &classification(json!({"uri": "models:/orientation/7", "tracking_uri": tracking})),
    );
    assert!(status.is_client_error(), "{status}: {body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("orientation") && message.contains('7'),
        "{message}"
    );
}

#[test]
fn a_signature_that_does_not_match_the_graph_is_refused() {
    let folder = require!("mlflow/bad_signature", model("mlflow/bad_signature"));
    let server = Server::start(ServerOptions::default());
    let (status, body) = put(
        &server,
        "bad-signature",
        &classification(json!({"uri": folder.display().to_string()})),
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("signature"),
        "{body}"
    );
}

#[test]
fn an_unreachable_tracking_server_is_a_bad_gateway_and_the_old_backend_stays() {
    let folder = require!("mlflow/orientation", model("mlflow/orientation"));
    let server = Server::start(ServerOptions::default());
    let (status, _) = put(
        &server,
        "kept",
        &classification(json!({"uri": folder.display().to_string()})),
    );
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = put(
        &server,
        "kept",
        &classification(
            json!({"uri": "models:/orientation/1", "tracking_uri": "http://127.0.0.1:9"}),
        ),
    );
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1:9"),
        "{body}"
    );
    assert_eq!(
        predict_photo(&server, "kept")["results"][0]["result"][0]["type"],
        "choices"
    );
}

#[test]
fn a_missing_onnx_runtime_library_fails_start_up_with_one_clear_line() {
    let output = std::process::Command::new(harness::server_binary())
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--state-dir"])
        .arg(tempfile::tempdir().expect("tempdir").path())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1")
        .output()
        .expect("run the server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("ONNX Runtime") && last.contains("/nonexistent/libonnxruntime.so.1.31.1"),
        "{stderr}"
    );
}
