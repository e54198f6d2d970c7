//! The MLflow registry client and the model cache against a real
//! `mlflow server` with the fixture models registered
//! (`scripts/services.sh start`, which exports `CLS_MLFLOW_URI`, and
//! `CLS_MLFLOW_AUTH_URI`/`_USER`/`_PASSWORD` for the basic-auth server).
//!
//! Skipped with a `SKIPPED:` line when the variables are unset, and failing
//! under `CLS_REQUIRE_E2E=1`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cls::model::{
    CachedModel, DEFAULT_CACHE_MAX_BYTES, MlModelError, MlflowAuth, MlflowConfig, ModelCache,
    ModelSource, ModelSourceError, ModelUri, RegistryClient,
};
use cls::secret::Secret;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn cache_in(dir: &Path) -> ModelCache {
    ModelCache::new(dir.join("models"), DEFAULT_CACHE_MAX_BYTES).unwrap()
}

fn source(uri: &str) -> ModelSource {
    ModelSource::Uri(ModelUri::parse(uri).unwrap())
}

async fn materialize(cache: &ModelCache, uri: &str, mlflow: &MlflowConfig) -> CachedModel {
    cache
        .materialize(&source(uri), Some(mlflow))
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e}"))
}

#[tokio::test]
async fn versions_aliases_and_latest_resolve_and_download_the_whole_folder() {
    let uri = harness::require!(
        "CLS_MLFLOW_URI (a running MLflow: scripts/services.sh start)",
        env("CLS_MLFLOW_URI")
    );
    let mlflow = MlflowConfig::new(&uri, MlflowAuth::None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path());

    let v1 = materialize(&cache, "models:/orientation/1", &mlflow).await;
    assert!(v1.onnx_path.is_file(), "{}", v1.onnx_path.display());
    assert!(v1.dir.join("MLmodel").is_file());
    let mlmodel = v1.mlmodel.as_ref().unwrap();
    assert_eq!(mlmodel.onnx.data, "model.onnx");
    assert_eq!(v1.onnx_path, v1.dir.join("model.onnx"));
    let signature = mlmodel.signature.as_ref().unwrap();
    assert_eq!(signature.inputs[0].name.as_deref(), Some("x"));
    assert_eq!(signature.inputs[0].dtype, "float32");
    assert!(
        v1.description.starts_with("models:/orientation/1 (run "),
        "{}",
        v1.description
    );

    // The alias points at version 1: same files, same cache entry.
    let champion = materialize(&cache, "models:/orientation@champion", &mlflow).await;
    assert_eq!(champion.lease.key(), v1.lease.key());
    assert!(
        champion
            .description
            .starts_with("models:/orientation@champion (version 1, run "),
        "{}",
        champion.description
    );

    let latest = materialize(&cache, "models:/orientation/LATEST", &mlflow).await;
    assert!(
        latest
            .description
            .starts_with("models:/orientation/latest (version 2, run "),
        "{}",
        latest.description
    );
    assert_ne!(latest.lease.key(), v1.lease.key());

    // External data: the weights file beside model.onnx is downloaded too.
    let external = materialize(&cache, "models:/orientation_external/1", &mlflow).await;
    let data_files: Vec<_> = std::fs::read_dir(&external.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    assert_eq!(data_files.len(), 1, "{data_files:?}");
    assert!(std::fs::metadata(&data_files[0]).unwrap().len() > 1_000_000);
    assert!(std::fs::metadata(&external.onnx_path).unwrap().len() < 1_000_000);
}

#[tokio::test]
async fn a_corrupt_cached_file_is_downloaded_again() {
    let uri = harness::require!(
        "CLS_MLFLOW_URI (a running MLflow: scripts/services.sh start)",
        env("CLS_MLFLOW_URI")
    );
    let mlflow = MlflowConfig::new(&uri, MlflowAuth::None).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let (onnx, original) = {
        let cache = cache_in(dir.path());
        let model = materialize(&cache, "models:/orientation/1", &mlflow).await;
        let bytes = std::fs::read(&model.onnx_path).unwrap();
        (model.onnx_path.clone(), bytes)
    };
    // Same size, one byte flipped: only the sha256 can tell.
    let mut corrupt = original.clone();
    corrupt[original.len() / 2] ^= 0xff;
    std::fs::write(&onnx, &corrupt).unwrap();

    // A restarted server (new cache instance) must notice and fetch again.
    let cache = cache_in(dir.path());
    let model = materialize(&cache, "models:/orientation/1", &mlflow).await;
    assert_eq!(model.onnx_path, onnx);
    assert!(std::fs::read(&model.onnx_path).unwrap() == original);

    // Truncation is noticed by the same instance too.
    std::fs::write(&onnx, &original[..100]).unwrap();
    let model = materialize(&cache, "models:/orientation/1", &mlflow).await;
    assert!(std::fs::read(&model.onnx_path).unwrap() == original);
}

#[tokio::test]
async fn runs_and_logged_model_uris_reach_the_same_files() {
    let uri = harness::require!(
        "CLS_MLFLOW_URI (a running MLflow: scripts/services.sh start)",
        env("CLS_MLFLOW_URI")
    );
    let mlflow = MlflowConfig::new(&uri, MlflowAuth::None).unwrap();
    let client = RegistryClient::new(mlflow.clone(), cls::model::http_client().unwrap());
    let resolved = client
        .resolve(&ModelUri::parse("models:/orientation/1").unwrap())
        .await
        .unwrap();
    let run_id = resolved.run_id.clone().unwrap();
    let model_id = resolved
        .artifact_uri
        .split('/')
        .find(|s| s.starts_with("m-"))
        .unwrap()
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path());
    let by_version = materialize(&cache, "models:/orientation/1", &mlflow).await;
    // MLflow 3 logs the model outside the run's artifacts; `runs:/<run>/model`
    // finds it through the run's logged models.
    let by_run = materialize(&cache, &format!("runs:/{run_id}/model"), &mlflow).await;
    assert_eq!(by_run.lease.key(), by_version.lease.key());
    let by_id = materialize(&cache, &format!("models:/{model_id}"), &mlflow).await;
    assert_eq!(by_id.lease.key(), by_version.lease.key());
    let by_artifacts = materialize(&cache, &resolved.artifact_uri, &mlflow).await;
    assert_eq!(by_artifacts.lease.key(), by_version.lease.key());
}

#[tokio::test]
async fn registry_errors_name_the_model_and_the_fix() {
    let uri = harness::require!(
        "CLS_MLFLOW_URI (a running MLflow: scripts/services.sh start)",
        env("CLS_MLFLOW_URI")
    );
    let mlflow = MlflowConfig::new(&uri, MlflowAuth::None).unwrap();
    let shown = mlflow.display_uri();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path());

    for (model, expected) in [
        (
            "models:/orientation/7",
            format!("model 'orientation' has no version 7 in the registry at {shown}"),
        ),
        (
            "models:/orientation@nope",
            format!("model 'orientation' has no alias 'nope' in the registry at {shown}"),
        ),
        (
            "models:/no_such_model/latest",
            format!("model 'no_such_model' is not in the registry at {shown}"),
        ),
    ] {
        let err = cache
            .materialize(&source(model), Some(&mlflow))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ModelSourceError::NotFound { .. }),
            "{model}: {err:?}"
        );
        assert!(err.to_string().starts_with(&expected), "{model}: {err}");
    }

    let err = cache
        .materialize(&source("models:/sklearn_only/1"), Some(&mlflow))
        .await
        .unwrap_err();
    let ModelSourceError::MlModel {
        source: MlModelError::NoOnnxFlavor { flavors },
        ..
    } = &err
    else {
        panic!("expected NoOnnxFlavor, got {err:?}");
    };
    assert!(flavors.iter().any(|f| f == "sklearn"), "{flavors:?}");
    assert!(err.to_string().contains("mlflow.onnx.log_model"), "{err}");
}

#[tokio::test]
async fn progress_is_reported_up_to_the_total() {
    let uri = harness::require!(
        "CLS_MLFLOW_URI (a running MLflow: scripts/services.sh start)",
        env("CLS_MLFLOW_URI")
    );
    let mlflow = MlflowConfig::new(&uri, MlflowAuth::None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path());
    let last = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let seen = last.clone();
    let model = cache
        .materialize_with_progress(
            &source("models:/orientation_external/1"),
            Some(&mlflow),
            Arc::new(move |done, total| {
                seen.0.store(done, Ordering::SeqCst);
                seen.1.store(total, Ordering::SeqCst);
            }),
        )
        .await
        .unwrap();
    let (done, total) = (last.0.load(Ordering::SeqCst), last.1.load(Ordering::SeqCst));
    assert!(total > 1_000_000, "{total}");
    assert_eq!(done, total);
    assert_eq!(cache.total_bytes(), total);
    drop(model);
}

#[tokio::test]
async fn basic_auth_servers_accept_the_right_password_and_explain_a_wrong_one() {
    let uri = harness::require!(
        "CLS_MLFLOW_AUTH_URI (a running basic-auth MLflow: scripts/services.sh start)",
        env("CLS_MLFLOW_AUTH_URI")
    );
    let user = harness::require!("CLS_MLFLOW_AUTH_USER", env("CLS_MLFLOW_AUTH_USER"));
    let password = harness::require!("CLS_MLFLOW_AUTH_PASSWORD", env("CLS_MLFLOW_AUTH_PASSWORD"));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path());

    let good = MlflowConfig::new(
        &uri,
        MlflowAuth::Basic {
            username: user.clone(),
            password: Secret::new(password.clone()),
        },
    )
    .unwrap();
    let model = materialize(&cache, "models:/orientation/1", &good).await;
    assert!(model.onnx_path.is_file());

    let wrong = "definitely-not-the-password";
    let bad = MlflowConfig::new(
        &uri,
        MlflowAuth::Basic {
            username: user.clone(),
            password: Secret::new(wrong),
        },
    )
    .unwrap();
    let err = cache
        .materialize(&source("models:/orientation/2"), Some(&bad))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "MLflow at {} rejected the credentials (basic auth as user '{user}')",
            good.display_uri()
        )),
        "{msg}"
    );
    assert!(!msg.contains(wrong) && !format!("{err:?}").contains(wrong));

    let none = MlflowConfig::new(&uri, MlflowAuth::None).unwrap();
    let err = cache
        .materialize(&source("models:/orientation/2"), Some(&none))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelSourceError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
}
