//! Persistence under SIGKILL: a real server process is killed at many
//! moments of a replacing configure, restarted on the same state dir, and
//! must come back with the backend exactly as before or exactly as after,
//! never missing and never a mix, with no temporary files left behind and
//! every state file private.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{
    Configure, Server, ServerOptions, TEXT_CONFIG, client, example_hook, model, read, require,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BACKEND: &str = "crash";
/// How many moments of a configure the test kills the server at.
const KILL_POINTS: u32 = 20;

/// One configuration the backend may be in, and what `GET /backends/{name}`
/// shows for it.
struct Version {
    request: Configure,
    model_version: &'static str,
    post_sha256: String,
    uploaded_model: bool,
}

fn versions() -> Option<[Version; 2]> {
    let model_path = model("text_sentiment.onnx")?;
    let text_post = read(&example_hook("text-post"));
    let trivial_post = read(&example_hook("trivial-post"));
    let sha = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
    let v1 = Version {
        model_version: "v1",
        post_sha256: sha(&text_post),
        uploaded_model: false,
        request: Configure {
            config: json!({
                "model": {"uri": model_path.display().to_string()},
                "model_version": "v1",
                "label_config": TEXT_CONFIG,
            }),
            post_hook: Some(text_post),
            ..Configure::default()
        },
    };
    // Uploads its model, so a save also writes the model's bytes.
    let v2 = Version {
        model_version: "v2",
        post_sha256: sha(&trivial_post),
        uploaded_model: true,
        request: Configure {
            config: json!({"model_version": "v2", "label_config": TEXT_CONFIG}),
            post_hook: Some(trivial_post),
            model: Some(("text_sentiment.onnx".into(), read(&model_path))),
            ..Configure::default()
        },
    };
    Some([v1, v2])
}

fn configure(url: &str, request: &Configure) -> reqwest::Result<reqwest::blocking::Response> {
    client()
        .put(format!("{url}/backends/{BACKEND}"))
        .multipart(request.form())
        .send()
}

/// Which version the server holds, checking that every part agrees with it.
fn observed(server: &Server, versions: &[Version; 2]) -> usize {
    let response = client()
        .get(format!("{}/backends/{BACKEND}", server.url))
        .send()
        .expect("GET backend");
    assert_eq!(
        response.status(),
        reqwest::StatusCode::OK,
        "the backend is missing after a restart; log:\n{}",
        server.log()
    );
    let body: Value = response.json().expect("backend JSON");
    let index = versions
        .iter()
        .position(|v| body["model_version"] == v.model_version)
        .unwrap_or_else(|| panic!("unknown model_version: {body}"));
    let version = &versions[index];
    assert_eq!(
        body["hooks"]["post_hook"]["sha256"], version.post_sha256,
        "a mix of versions: {body}"
    );
    assert_eq!(
        body["config"]["model"]["uri"].is_null(),
        version.uploaded_model,
        "a mix of versions: {body}"
    );
    index
}

fn restart(state_dir: &Path) -> Server {
    Server::start(ServerOptions {
        state_dir: Some(state_dir.to_owned()),
        ..ServerOptions::default()
    })
}

/// Asserts no temporary or staging file is left and every file is private.
fn assert_clean_and_private(state_dir: &Path) {
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(state_dir), 0o700);
    for sub in ["backends", "blobs"] {
        let dir = state_dir.join(sub);
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with('.'),
                "leftover {} in {}",
                name,
                dir.display()
            );
            assert!(entry.path().is_file(), "unexpected folder {name}");
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        }
    }
}

#[test]
fn a_configure_killed_at_any_moment_leaves_the_old_or_the_new_backend() {
    let versions = require!("text model", versions());
    let state = tempfile::tempdir().expect("tempdir");
    let mut server = restart(state.path());
    let status = configure(&server.url, &versions[0].request)
        .expect("configure v1")
        .status();
    assert!(status.is_success(), "{status}");

    // How long a replacing configure takes once hooks are compiled and the
    // model is cached: the span the kills are spread over.
    let mut duration = Duration::ZERO;
    for version in [&versions[1], &versions[0]] {
        let started = Instant::now();
        let status = configure(&server.url, &version.request)
            .expect("configure")
            .status();
        assert!(status.is_success(), "{status}");
        duration = duration.max(started.elapsed());
    }
    let mut current = observed(&server, &versions);
    let mut kept = 0;
    let mut replaced = 0;
    for point in 0..KILL_POINTS {
        let next = 1 - current;
        // Fault injection, not synchronisation: the kill lands at a chosen
        // offset from the start of the request, from 0 to a little past
        // the configure's usual duration.
        let delay = duration.mul_f64(f64::from(point) * 1.1 / f64::from(KILL_POINTS - 1));
        let url = server.url.clone();
        let request = versions[next].request.clone();
        let started = Instant::now();
        let sender = std::thread::spawn(move || configure(&url, &request).map(|r| r.status()));
        std::thread::sleep(delay.saturating_sub(started.elapsed()));
        server.kill();
        let _ = sender.join().expect("request thread");

        server = restart(state.path());
        let now = observed(&server, &versions);
        if now == current {
            kept += 1;
        } else {
            replaced += 1;
        }
        current = now;
    }
    eprintln!(
        "kills over {:.0} ms configures: old version kept {kept} times, new version {replaced} times",
        duration.as_secs_f64() * 1e3
    );
    server.kill();
    let server = restart(state.path());
    observed(&server, &versions);
    assert_clean_and_private(state.path());
}

#[test]
fn a_configure_that_completes_survives_a_kill_right_after_its_answer() {
    let versions = require!("text model", versions());
    let state = tempfile::tempdir().expect("tempdir");
    let mut server = restart(state.path());
    for version in [&versions[0], &versions[1], &versions[0]] {
        let status = configure(&server.url, &version.request)
            .expect("configure")
            .status();
        assert!(status.is_success(), "{status}");
        server.kill();
        server = restart(state.path());
        assert_eq!(
            versions[observed(&server, &versions)].model_version,
            version.model_version,
            "an answered configure is durable"
        );
    }
    let blobs = std::fs::read_dir(state.path().join("blobs"))
        .expect("blobs")
        .count();
    assert_eq!(
        blobs, 1,
        "only v1's post-hook remains once unused blobs are collected"
    );
    assert_clean_and_private(state.path());
}
