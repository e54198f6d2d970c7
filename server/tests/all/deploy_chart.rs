//! The Helm chart in deploy/helm, checked without a cluster by
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
