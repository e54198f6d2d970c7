//! The deployment files, checked without a cluster or a container engine.
//! The Helm chart in deploy/helm, checked by
//! `scripts/py/check_chart.py`: real Helm (its Go SDK, from the
//! helm-python-sdk wheel) lints and renders it with the default values and
//! with every option on (GPU resources, autoscaling, a ServiceAccount, extra
//! environment); every object must validate, strictly, against the
//! Kubernetes schemas of the oldest and newest supported versions; and the
//! chart must keep its promises: rollouts never lower capacity, startup and
//! readiness probe /readyz and liveness /livez, the store URL and tokens only
//! ever come from Secrets, each replica is named after its pod, and the pods
//! run as the image's non-root user on a read-only root filesystem.

use harness::{cache_dir, repo_root, require};

#[test]
fn the_helm_chart_renders_and_every_object_validates() {
    let python = require!(
        "the deploy venv (installed by scripts/setup.sh)",
        Some(cache_dir().join("venv-deploy/bin/python")).filter(|p| p.is_file())
    );
    let output = std::process::Command::new(&python)
        .arg(repo_root().join("scripts/py/check_chart.py"))
        .output()
        .expect("run scripts/py/check_chart.py");
    assert!(
        output.status.success(),
        "scripts/py/check_chart.py ({}) found problems:\n{}{}",
        python.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// deploy/compose.yaml, resolved by podman-compose (`--dry-run config`:
/// parsed, interpolated and normalised by the real tool, no podman needed).
#[test]
fn the_compose_file_wires_label_studio_mlflow_and_the_server() {
    let compose = require!(
        "podman-compose in the deploy venv (installed by scripts/setup.sh)",
        Some(cache_dir().join("venv-deploy/bin/podman-compose")).filter(|p| p.is_file())
    );
    let deploy = repo_root().join("deploy");
    let config = |env_file: &str| {
        std::process::Command::new(&compose)
            .args([
                "--dry-run",
                "-f",
                "compose.yaml",
                "--env-file",
                env_file,
                "config",
            ])
            .current_dir(&deploy)
            .output()
            .expect("run podman-compose")
    };
    let resolved = config("compose.env.example");
    let text = String::from_utf8_lossy(&resolved.stdout);
    assert!(
        resolved.status.success(),
        "podman-compose config failed:\n{text}{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    for wiring in [
        "label-studio:",
        "mlflow:",
        "ml-backend:",
        "LABEL_STUDIO_URL: http://label-studio:8080",
        "MLFLOW_TRACKING_URI: http://mlflow:5000",
        "- ml-backend-state:/var/lib/configurable-ls-backend",
        "read_only: true",
    ] {
        assert!(text.contains(wiring), "{wiring:?} missing from:\n{text}");
    }
    // A secret left unset is named, not silently empty.
    let unset = config("/dev/null");
    let stderr = String::from_utf8_lossy(&unset.stderr);
    assert!(
        stderr.contains("LABEL_STUDIO_USERNAME is missing a value: set it in deploy/.env"),
        "{stderr}"
    );
}
