//! The cache on real folders: local models, uploads, corruption,
//! eviction, concurrency and startup cleanup.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;

use super::*;
use crate::model::mlmodel::MLMODEL_FILE;

const MLMODEL: &str = "flavors:\n  onnx:\n    data: model.onnx\n";

fn onnx_upload(content: &'static [u8]) -> ModelSource {
    ModelSource::Upload(UploadedModel::from_bytes(
        "m.onnx",
        Bytes::from_static(content),
    ))
}

#[tokio::test]
async fn local_folders_are_used_in_place_and_parsed() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(MLMODEL_FILE), MLMODEL).unwrap();
    fs::write(dir.path().join("model.onnx"), b"x").unwrap();
    let cache = ModelCache::new(dir.path().join("cache"), 1 << 20).unwrap();
    let uri = ModelUri::parse(dir.path().to_str().unwrap()).unwrap();
    let model = cache.materialize(&uri.into(), None).await.unwrap();
    let here = fs::canonicalize(dir.path()).unwrap();
    assert_eq!(model.dir, here);
    assert_eq!(model.onnx_path, here.join("model.onnx"));
    assert_eq!(model.mlmodel.unwrap().onnx.data, "model.onnx");
    assert!(model.lease.key().is_none());

    let file = ModelUri::parse(here.join("model.onnx").to_str().unwrap()).unwrap();
    let model = cache.materialize(&file.into(), None).await.unwrap();
    assert!(model.mlmodel.is_none());
    assert_eq!(model.onnx_path, here.join("model.onnx"));
}

#[tokio::test]
async fn a_missing_onnx_file_named_by_mlmodel_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(MLMODEL_FILE), MLMODEL).unwrap();
    let cache = ModelCache::new(dir.path().join("cache"), 1 << 20).unwrap();
    let uri = ModelUri::LocalDir(dir.path().to_path_buf());
    let err = cache.materialize(&uri.into(), None).await.unwrap_err();
    assert!(
        err.to_string().contains("MLmodel names model.onnx"),
        "{err}"
    );
}

#[tokio::test]
async fn registry_uris_without_a_tracking_server_say_how_to_set_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::new(dir.path(), 1 << 20).unwrap();
    let uri = ModelUri::parse("models:/orientation/1").unwrap();
    let err = cache.materialize(&uri.into(), None).await.unwrap_err();
    assert!(err.to_string().contains("MLFLOW_TRACKING_URI"), "{err}");
}

#[tokio::test]
async fn uploads_are_cached_by_sha256_and_reachable_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::new(dir.path(), 1 << 20).unwrap();
    let source = onnx_upload(b"model-bytes");
    let first = cache.materialize(&source, None).await.unwrap();
    assert!(first.onnx_path.is_file());
    let ModelSource::Upload(upload) = &source else {
        unreachable!()
    };
    let again = cache.materialize(&source, None).await.unwrap();
    assert_eq!(again.onnx_path, first.onnx_path);
    drop((first, again));

    let reopened = ModelCache::new(dir.path(), 1 << 20).unwrap();
    let by_uri = reopened
        .materialize(&ModelSource::Uri(upload.uri()), None)
        .await
        .unwrap();
    assert_eq!(fs::read(&by_uri.onnx_path).unwrap(), b"model-bytes");
    assert_eq!(reopened.total_bytes(), 11);

    let unknown = ModelUri::Upload {
        sha256: "0".repeat(64),
    };
    let err = reopened
        .materialize(&unknown.into(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelSourceError::UploadNotCached { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_corrupt_cached_file_is_detected_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let source = onnx_upload(b"original");
    let path = {
        let cache = ModelCache::new(dir.path(), 1 << 20).unwrap();
        cache.materialize(&source, None).await.unwrap().onnx_path
    };
    // Same size, different bytes: only the sha256 can tell.
    fs::write(&path, b"ORIGINAL").unwrap();
    let cache = ModelCache::new(dir.path(), 1 << 20).unwrap();
    let model = cache.materialize(&source, None).await.unwrap();
    assert_eq!(fs::read(&model.onnx_path).unwrap(), b"original");
    // Truncated, in the same process.
    fs::write(&model.onnx_path, b"orig").unwrap();
    let model = cache.materialize(&source, None).await.unwrap();
    assert_eq!(fs::read(&model.onnx_path).unwrap(), b"original");
}

#[tokio::test]
async fn eviction_removes_least_recently_used_unleased_entries() {
    let dir = tempfile::tempdir().unwrap();
    // Room for two 10-byte models.
    let cache = ModelCache::new(dir.path(), 20).unwrap();
    let a = cache
        .materialize(&onnx_upload(b"aaaaaaaaaa"), None)
        .await
        .unwrap();
    let b = cache
        .materialize(&onnx_upload(b"bbbbbbbbbb"), None)
        .await
        .unwrap();
    let a_path = a.onnx_path.clone();
    let b_path = b.onnx_path.clone();
    drop(b);
    // `a` is leased; `b` is not, so `c` evicts `b` although `a` is older.
    let c = cache
        .materialize(&onnx_upload(b"cccccccccc"), None)
        .await
        .unwrap();
    assert!(a_path.is_file());
    assert!(!b_path.exists());
    assert!(c.onnx_path.is_file());
    assert_eq!(cache.total_bytes(), 20);
    drop(a);
    // Everything leased but `a` now: `d` evicts `a`.
    let d = cache
        .materialize(&onnx_upload(b"dddddddddd"), None)
        .await
        .unwrap();
    assert!(!a_path.exists());
    assert!(d.onnx_path.is_file() && c.onnx_path.is_file());
    // Over the bound when everything is in use: kept, with a warning.
    let e = cache
        .materialize(&onnx_upload(b"eeeeeeeeee"), None)
        .await
        .unwrap();
    assert!(e.onnx_path.is_file());
    assert_eq!(cache.total_bytes(), 30);
}

#[tokio::test]
async fn concurrent_requests_for_one_upload_share_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::new(dir.path(), 1 << 20).unwrap();
    let source = onnx_upload(b"shared");
    let (a, b) = tokio::join!(
        cache.materialize(&source, None),
        cache.materialize(&source, None)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.onnx_path, b.onnx_path);
    assert_eq!(a.lease.key(), b.lease.key());
    let entries = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| is_key(&e.as_ref().unwrap().file_name().to_string_lossy()))
        .count();
    assert_eq!(entries, 1);
}

#[tokio::test]
async fn unfinished_downloads_and_broken_entries_are_cleared_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join(TMP_DIR).join("partial")).unwrap();
    let broken = dir.path().join("a".repeat(64));
    fs::create_dir_all(&broken).unwrap();
    let _cache = ModelCache::new(dir.path(), 1 << 20).unwrap();
    assert!(!broken.exists());
    assert!(!dir.path().join(TMP_DIR).join("partial").exists());
}
