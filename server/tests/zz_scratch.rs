#![allow(clippy::unwrap_used)]
use cls::model::*;
#[tokio::test]
async fn scratch() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let cache = ModelCache::new("/tmp/cls-offline", DEFAULT_CACHE_MAX_BYTES).unwrap()
        .with_retry(RetryPolicy { max_attempts: 2, initial_backoff: std::time::Duration::from_millis(10), max_backoff: std::time::Duration::from_millis(10) });
    let cfg = MlflowConfig::new("http://127.0.0.1:5077", MlflowAuth::None).unwrap();
    for u in ["models:/orientation/1", "models:/orientation/2"] {
        match cache.materialize(&ModelSource::Uri(ModelUri::parse(u).unwrap()), Some(&cfg)).await {
            Ok(m) => eprintln!("OK {u}: {} {}", m.description, m.onnx_path.display()),
            Err(e) => eprintln!("ERR {u}: {e}"),
        }
    }
}
