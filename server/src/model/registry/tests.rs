//! The registry client against fake MLflow servers: retries, error
//! messages and URL handling.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

use super::client::endpoint;
use super::*;
use crate::model::source::{MlflowAuth, ModelSourceError, ModelUri, display_url};
use crate::secret::Secret;

const FAST: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    initial_backoff: Duration::from_millis(1),
    max_backoff: Duration::from_millis(4),
};

/// Serves `app` on 127.0.0.1:0 and returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn client(uri: &str, auth: MlflowAuth) -> RegistryClient {
    RegistryClient::new(
        MlflowConfig::new(uri, auth).unwrap(),
        http_client().unwrap(),
    )
    .with_retry(FAST)
}

fn version_uri() -> ModelUri {
    ModelUri::parse("models:/orientation/2").unwrap()
}

#[derive(Clone, Default)]
struct Counts {
    get: Arc<AtomicUsize>,
    download_uri: Arc<AtomicUsize>,
}

/// `model-versions/get` fails with 500 `fail_first` times, then answers.
fn flaky_registry(counts: Counts, fail_first: usize) -> Router {
    Router::new()
        .route(
            "/api/2.0/mlflow/model-versions/get",
            get(move |State(c): State<Counts>| async move {
                if c.get.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
                }
                axum::Json(serde_json::json!({
                    "model_version": {"name": "orientation", "version": "2", "run_id": "4b1c", "status": "READY",
                                      "source": "models:/m-123"}
                }))
                .into_response()
            }),
        )
        .route(
            "/api/2.0/mlflow/model-versions/get-download-uri",
            get(|State(c): State<Counts>| async move {
                c.download_uri.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({"artifact_uri": "mlflow-artifacts:/1/models/m-123/artifacts"}))
            }),
        )
        .with_state(counts)
}

#[tokio::test]
async fn a_500_then_success_is_retried() {
    let counts = Counts::default();
    let base = serve(flaky_registry(counts.clone(), 1)).await;
    let resolved = client(&base, MlflowAuth::None)
        .resolve(&version_uri())
        .await
        .unwrap();
    assert_eq!(counts.get.load(Ordering::SeqCst), 2);
    assert_eq!(counts.download_uri.load(Ordering::SeqCst), 1);
    assert_eq!(resolved.description, "models:/orientation/2 (run 4b1c)");
    assert_eq!(resolved.version.as_deref(), Some("2"));
    assert_eq!(
        resolved.artifact_uri,
        "mlflow-artifacts:/1/models/m-123/artifacts"
    );
    assert_eq!(resolved.location.path, "1/models/m-123/artifacts");
    assert_eq!(display_url(&resolved.location.server), base);
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_the_retry_budget() {
    let counts = Counts::default();
    let base = serve(flaky_registry(counts.clone(), usize::MAX)).await;
    let err = client(&base, MlflowAuth::None)
        .resolve(&version_uri())
        .await
        .unwrap_err();
    assert_eq!(
        counts.get.load(Ordering::SeqCst),
        FAST.max_attempts as usize
    );
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .contains("answered HTTP 500 to GET /api/2.0/mlflow/model-versions/get"),
        "{err}"
    );
}

#[tokio::test]
async fn a_401_is_not_retried_and_names_the_user_but_not_the_password() {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let app = Router::new().route(
        "/api/2.0/mlflow/model-versions/get",
        get(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                assert!(headers.contains_key("authorization"));
                (
                    StatusCode::UNAUTHORIZED,
                    [("www-authenticate", "Basic realm=\"mlflow\"")],
                    "",
                )
            }
        }),
    );
    let base = serve(app).await;
    let auth = MlflowAuth::Basic {
        username: "alice".into(),
        password: Secret::new("hunter2"),
    };
    let err = client(&base, auth)
        .resolve(&version_uri())
        .await
        .unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "MLflow at {base} rejected the credentials (basic auth as user 'alice')"
        )),
        "{msg}"
    );
    assert!(!msg.contains("hunter2") && !format!("{err:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_missing_version_names_model_version_and_server() {
    let app = Router::new().route(
        "/api/2.0/mlflow/model-versions/get",
        get(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({
                    "error_code": "RESOURCE_DOES_NOT_EXIST",
                    "message": "Model Version (name=orientation, version=7) not found"
                })),
            )
        }),
    );
    let base = serve(app).await;
    let uri = ModelUri::parse("models:/orientation/7").unwrap();
    let err = client(&base, MlflowAuth::None)
        .resolve(&uri)
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "model 'orientation' has no version 7 in the registry at {base}"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn connection_refused_is_reported_after_retries() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(&base, MlflowAuth::None)
        .resolve(&version_uri())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot reach MLflow tracking server at {base}: connection refused")
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn non_proxied_artifact_uris_are_explained() {
    let app = Router::new()
        .route(
            "/api/2.0/mlflow/model-versions/get",
            get(|| async { axum::Json(serde_json::json!({"model_version": {"version": "1"}})) }),
        )
        .route(
            "/api/2.0/mlflow/model-versions/get-download-uri",
            get(|| async {
                axum::Json(
                    serde_json::json!({"artifact_uri": "s3://bucket/1/models/m-1/artifacts"}),
                )
            }),
        );
    let base = serve(app).await;
    let uri = ModelUri::parse("models:/orientation/1").unwrap();
    let err = client(&base, MlflowAuth::None)
        .resolve(&uri)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelSourceError::ArtifactsNotProxied { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("s3://bucket/1/models/m-1/artifacts") && msg.contains("--serve-artifacts"),
        "{msg}"
    );
}

#[test]
fn endpoints_keep_the_tracking_path_and_encode_segments() {
    let base = Url::parse("https://dagshub.com/alice/repo.mlflow").unwrap();
    assert_eq!(
        endpoint(&base, &["api", "2.0", "mlflow", "runs", "get"]).as_str(),
        "https://dagshub.com/alice/repo.mlflow/api/2.0/mlflow/runs/get"
    );
    let base = Url::parse("http://m:5000/").unwrap();
    assert_eq!(
        endpoint(&base, &["api", "x y"]).as_str(),
        "http://m:5000/api/x%20y"
    );
}

#[test]
fn artifact_uris_with_a_host_use_that_host() {
    let c = client("https://mlflow.example/prefix", MlflowAuth::None);
    let uri = version_uri();
    let loc = c
        .location("mlflow-artifacts://other:5001/1/abc/artifacts/model", &uri)
        .unwrap();
    assert_eq!(loc.server.as_str(), "https://other:5001/prefix");
    assert_eq!(loc.path, "1/abc/artifacts/model");
    let loc = c.location("mlflow-artifacts:/1/abc", &uri).unwrap();
    assert_eq!(loc.server.as_str(), "https://mlflow.example/prefix");
    assert!(matches!(
        c.location("/var/mlruns/1/abc", &uri),
        Err(ModelSourceError::ArtifactsNotProxied { .. })
    ));
}
