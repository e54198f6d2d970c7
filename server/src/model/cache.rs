//! The on-disk model cache (`<state-dir>/models/`): turns any
//! [`ModelSource`] into a local folder with a parsed `MLmodel` and the path
//! of the ONNX file.
//!
//! Layout: `<dir>/<key>/manifest.json` + `<dir>/<key>/model/…` per entry,
//! where `<key>` is a sha256 over the model's identity (the artifact proxy
//! location and its file list with sizes, or an upload's own sha256);
//! `<dir>/.tmp/` holds downloads in progress, renamed into place when
//! complete; `<dir>/.refs/` remembers which entry a URI last resolved to, so
//! a model still loads from the cache while MLflow is unreachable.
//!
//! Every reuse checks each file's size and (once per process, or after the
//! file changed) its sha256 against the manifest; a damaged entry is
//! discarded and fetched again. Concurrent requests for one key share one
//! download. Entries are evicted least-recently-used first when the cache
//! grows past its bound, but never while a [`ModelLease`] holds them. One
//! process per cache folder. Local paths are used in place, not copied.
//!
//! Does not talk HTTP itself ([`RegistryClient`]) nor unpack uploads
//! (`archive`), and does not load models into ONNX Runtime.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::archive::{self, ArchiveLimits, UploadedModel};
use super::mlmodel::{MLMODEL_FILE, MlModel};
use super::registry::{self, ProgressFn, RegistryClient, RemoteFile, ResolvedModel, RetryPolicy};
use super::source::{MlflowConfig, ModelSource, ModelSourceError, ModelUri};

/// Default size bound of the cache (20 GiB).
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 20 << 30;

const MANIFEST_FILE: &str = "manifest.json";
const FILES_DIR: &str = "model";
const TMP_DIR: &str = ".tmp";
const REFS_DIR: &str = ".refs";
const MANIFEST_FORMAT: u32 = 1;

/// The on-disk model cache. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ModelCache {
    shared: Arc<Shared>,
    retry: RetryPolicy,
    limits: ArchiveLimits,
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    http: reqwest::Client,
    state: Mutex<State>,
    /// One lock per key: held while an entry is checked or filled, so that
    /// concurrent requests for the same model share one download.
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
}

struct Entry {
    /// Bytes on disk (0 while not on disk).
    bytes: u64,
    last_used: SystemTime,
    /// Live [`ModelLease`]s (and materializations in progress).
    leases: usize,
    on_disk: bool,
    /// Files whose sha256 was checked in this process: path → (size, mtime)
    /// at the time.
    verified: HashMap<String, (u64, SystemTime)>,
}

impl Entry {
    fn absent() -> Self {
        Self {
            bytes: 0,
            last_used: SystemTime::now(),
            leases: 0,
            on_disk: false,
            verified: HashMap::new(),
        }
    }
}

/// A model ready on local disk.
#[derive(Debug, Clone)]
pub struct CachedModel {
    /// The model folder (holds `MLmodel` when there is one). For a bare
    /// local `.onnx` file, the file's folder.
    pub dir: PathBuf,
    /// The ONNX file to load (`flavors.onnx.data` inside `dir`). Load it from
    /// this path, not from memory: external-data files sit next to it.
    pub onnx_path: PathBuf,
    /// The parsed `MLmodel`; `None` for bare `.onnx` models.
    pub mlmodel: Option<MlModel>,
    /// For people, e.g. `models:/orientation/2 (run 4b1c…)`.
    pub description: String,
    /// Keeps the cache entry from eviction while held (clones share it).
    pub lease: ModelLease,
}

/// Keeps a cache entry from being evicted while any clone of it lives.
/// Local models have a lease that holds nothing.
#[derive(Clone)]
pub struct ModelLease {
    inner: Option<Arc<LeaseInner>>,
}

struct LeaseInner {
    shared: Arc<Shared>,
    key: String,
}

impl Drop for LeaseInner {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if let Some(entry) = state.entries.get_mut(&self.key) {
            entry.leases = entry.leases.saturating_sub(1);
            // A lookup that found nothing leaves no trace.
            if entry.leases == 0 && !entry.on_disk {
                state.entries.remove(&self.key);
            }
        }
    }
}

impl ModelLease {
    fn none() -> Self {
        Self { inner: None }
    }

    /// The cache key this lease holds, `None` for local models.
    pub fn key(&self) -> Option<&str> {
        self.inner.as_ref().map(|l| l.key.as_str())
    }
}

impl fmt::Debug for ModelLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key() {
            Some(key) => write!(f, "ModelLease({key})"),
            None => f.write_str("ModelLease(local)"),
        }
    }
}

impl fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelCache")
            .field("dir", &self.shared.dir)
            .field("max_bytes", &self.shared.max_bytes)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    key: String,
    /// The URI (or upload) first stored under this key.
    source: String,
    description: String,
    /// The model folder inside `model/` (`""` for `model/` itself).
    model_root: String,
    /// The ONNX file, relative to the model folder.
    onnx_file: String,
    total_bytes: u64,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestFile {
    path: String,
    size: u64,
    sha256: String,
}

/// What a fill step put into a staging folder.
struct Filled {
    model_root: String,
    files: Vec<ManifestFile>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent between statements, so a panic
    // elsewhere does not leave them half-updated.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_key(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, ModelSourceError> + Send + 'static,
) -> Result<T, ModelSourceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ModelSourceError::io("process", path, io::Error::other(e.to_string())))?
}

impl ModelCache {
    /// Opens (creating if needed) the cache in `dir`, bounded to `max_bytes`
    /// of entries not in use. Reads every entry's manifest and clears
    /// unfinished downloads; call it once at startup.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, ModelSourceError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| ModelSourceError::io("create", &dir, e))?;
        let tmp = dir.join(TMP_DIR);
        match fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ModelSourceError::io("clear", &tmp, e)),
        }
        for sub in [TMP_DIR, REFS_DIR] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|e| ModelSourceError::io("create", &path, e))?;
        }
        let mut state = State::default();
        for item in fs::read_dir(&dir).map_err(|e| ModelSourceError::io("read", &dir, e))? {
            let item = item.map_err(|e| ModelSourceError::io("read", &dir, e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if !is_key(&name) {
                continue;
            }
            let entry_dir = item.path();
            match read_manifest(&entry_dir) {
                Ok(manifest) => {
                    let last_used = fs::metadata(entry_dir.join(MANIFEST_FILE))
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    state.entries.insert(
                        name,
                        Entry {
                            bytes: manifest.total_bytes,
                            last_used,
                            leases: 0,
                            on_disk: true,
                            verified: HashMap::new(),
                        },
                    );
                }
                Err(problem) => {
                    tracing::warn!(entry = %entry_dir.display(), "discarding cache entry: {problem}");
                    if let Err(e) = fs::remove_dir_all(&entry_dir) {
                        tracing::warn!(entry = %entry_dir.display(), "cannot remove cache entry: {e}");
                    }
                }
            }
        }
        Ok(Self {
            shared: Arc::new(Shared {
                dir,
                max_bytes,
                http: registry::http_client()?,
                state: Mutex::new(state),
                key_locks: Mutex::new(HashMap::new()),
            }),
            retry: RetryPolicy::default(),
            limits: ArchiveLimits::default(),
        })
    }

    /// Replaces the retry policy for MLflow requests.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the caps applied to uploaded archives.
    pub fn with_archive_limits(mut self, limits: ArchiveLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Bytes held by cache entries on disk.
    pub fn total_bytes(&self) -> u64 {
        lock(&self.shared.state)
            .entries
            .values()
            .filter(|e| e.on_disk)
            .map(|e| e.bytes)
            .sum()
    }

    /// Makes `source` available on local disk: downloads (or reuses) MLflow
    /// models, unpacks (or reuses) uploads, and checks local paths in place.
    /// `mlflow` is needed for registry, run and artifact URIs only.
    pub async fn materialize(
        &self,
        source: &ModelSource,
        mlflow: Option<&MlflowConfig>,
    ) -> Result<CachedModel, ModelSourceError> {
        self.materialize_inner(source, mlflow, None).await
    }

    /// [`ModelCache::materialize`], reporting download progress to
    /// `progress` (bytes done, bytes expected, over all of the model's files).
    pub async fn materialize_with_progress(
        &self,
        source: &ModelSource,
        mlflow: Option<&MlflowConfig>,
        progress: ProgressFn,
    ) -> Result<CachedModel, ModelSourceError> {
        self.materialize_inner(source, mlflow, Some(progress)).await
    }

    async fn materialize_inner(
        &self,
        source: &ModelSource,
        mlflow: Option<&MlflowConfig>,
        progress: Option<ProgressFn>,
    ) -> Result<CachedModel, ModelSourceError> {
        match source {
            ModelSource::Upload(upload) => self.upload(upload).await,
            ModelSource::Uri(uri @ (ModelUri::LocalDir(_) | ModelUri::OnnxFile(_))) => {
                local(uri.clone()).await
            }
            ModelSource::Uri(ModelUri::Upload { sha256 }) => {
                let key = upload_key(sha256);
                let description = format!("upload:{sha256}");
                let _guard = self.key_lock(&key).lock_owned().await;
                let lease = self.lease(&key);
                match self.reuse(&key, &description, &lease).await? {
                    Some(model) => Ok(model),
                    None => Err(ModelSourceError::UploadNotCached {
                        sha256: sha256.clone(),
                    }),
                }
            }
            ModelSource::Uri(uri) => {
                let Some(mlflow) = mlflow else {
                    return Err(ModelSourceError::NoTrackingServer {
                        uri: uri.to_string(),
                    });
                };
                self.remote(uri, mlflow, progress).await
            }
        }
    }

    async fn remote(
        &self,
        uri: &ModelUri,
        mlflow: &MlflowConfig,
        progress: Option<ProgressFn>,
    ) -> Result<CachedModel, ModelSourceError> {
        let client =
            RegistryClient::new(mlflow.clone(), self.shared.http.clone()).with_retry(self.retry);
        let found = async {
            let resolved = client.resolve(uri).await?;
            let files = client.list_files(&resolved.location).await?;
            Ok::<_, ModelSourceError>((resolved, files))
        }
        .await;
        let (resolved, files) = match found {
            Ok(found) => found,
            Err(error) if error.is_transient() => {
                return match self.offline_copy(uri, mlflow).await {
                    Some(model) => {
                        tracing::warn!(
                            model = %uri,
                            "{error}; using the cached copy from the last successful resolution"
                        );
                        Ok(model)
                    }
                    None => Err(error),
                };
            }
            Err(error) => return Err(error),
        };
        if files.is_empty() {
            return Err(ModelSourceError::NotFound {
                detail: format!(
                    "{}: no files at {} on the MLflow tracking server at {}",
                    resolved.description,
                    resolved.artifact_uri,
                    mlflow.display_uri()
                ),
            });
        }
        let key = remote_key(&resolved, &files);
        let description = resolved.description.clone();
        let model = self
            .get_or_fill(
                &key,
                &description,
                &uri.to_string(),
                move |staging: PathBuf| async move {
                    download(&client, &resolved, &files, &staging, progress.as_ref()).await
                },
            )
            .await?;
        self.remember(mlflow, uri, &key).await;
        Ok(model)
    }

    async fn upload(&self, upload: &UploadedModel) -> Result<CachedModel, ModelSourceError> {
        let key = upload_key(upload.sha256());
        let description = format!(
            "upload {} (sha256 {})",
            upload.file_name(),
            upload.sha256().get(..12).unwrap_or_default()
        );
        let to_unpack = upload.clone();
        let limits = self.limits;
        self.get_or_fill(
            &key,
            &description,
            &upload.uri().to_string(),
            move |staging: PathBuf| async move {
                let where_ = staging.clone();
                blocking(&where_, move || {
                    let unpacked = archive::unpack(&to_unpack, &staging, &limits)?;
                    Ok(Filled {
                        model_root: unpacked.model_root,
                        files: unpacked
                            .files
                            .into_iter()
                            .map(|f| ManifestFile {
                                path: f.path,
                                size: f.size,
                                sha256: f.sha256,
                            })
                            .collect(),
                    })
                })
                .await
            },
        )
        .await
    }

    fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.shared.key_locks)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    fn lease(&self, key: &str) -> ModelLease {
        lock(&self.shared.state)
            .entries
            .entry(key.to_owned())
            .or_insert_with(Entry::absent)
            .leases += 1;
        ModelLease {
            inner: Some(Arc::new(LeaseInner {
                shared: self.shared.clone(),
                key: key.to_owned(),
            })),
        }
    }

    /// Returns the entry under `key` when it exists and verifies; discards
    /// it (with a warning) when it is damaged.
    async fn reuse(
        &self,
        key: &str,
        description: &str,
        lease: &ModelLease,
    ) -> Result<Option<CachedModel>, ModelSourceError> {
        let entry_dir = self.shared.dir.join(key);
        if !entry_dir.is_dir() {
            return Ok(None);
        }
        let known = lock(&self.shared.state)
            .entries
            .get(key)
            .map(|e| e.verified.clone())
            .unwrap_or_default();
        let dir = entry_dir.clone();
        let checked = blocking(&entry_dir, move || {
            let manifest = match read_manifest(&dir) {
                Ok(manifest) => manifest,
                Err(problem) => return Ok(Err(problem)),
            };
            match verify(&dir, &manifest, known) {
                Ok(verified) => {
                    touch(&dir.join(MANIFEST_FILE));
                    Ok(Ok((manifest, verified)))
                }
                Err(problem) => Ok(Err(problem)),
            }
        })
        .await?;
        let (manifest, verified) = match checked {
            Ok(found) => found,
            Err(problem) => {
                tracing::warn!(
                    model = description,
                    entry = %entry_dir.display(),
                    "cached model is damaged ({problem}); fetching it again"
                );
                self.discard(key);
                return Ok(None);
            }
        };
        {
            let mut state = lock(&self.shared.state);
            let entry = state
                .entries
                .entry(key.to_owned())
                .or_insert_with(Entry::absent);
            entry.on_disk = true;
            entry.bytes = manifest.total_bytes;
            entry.last_used = SystemTime::now();
            entry.verified = verified;
        }
        let root = entry_dir.join(FILES_DIR).join(&manifest.model_root);
        let model = self
            .describe(root, description.to_owned(), lease.clone())
            .await?;
        Ok(Some(model))
    }

    async fn describe(
        &self,
        root: PathBuf,
        description: String,
        lease: ModelLease,
    ) -> Result<CachedModel, ModelSourceError> {
        let at = root.clone();
        let label = description.clone();
        let (mlmodel, onnx) = blocking(&at, move || {
            locate_model(&root, &label).map(|(m, o)| (m, root.join(o)))
        })
        .await?;
        let dir = at;
        Ok(CachedModel {
            dir,
            onnx_path: onnx,
            mlmodel,
            description,
            lease,
        })
    }

    /// Reuses the entry under `key`, or fills a staging folder with `fill`
    /// and moves it into place. Holds the key's lock throughout.
    async fn get_or_fill<F, Fut>(
        &self,
        key: &str,
        description: &str,
        source: &str,
        fill: F,
    ) -> Result<CachedModel, ModelSourceError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<Filled, ModelSourceError>>,
    {
        let _guard = self.key_lock(key).lock_owned().await;
        let lease = self.lease(key);
        if let Some(model) = self.reuse(key, description, &lease).await? {
            return Ok(model);
        }
        let tmp = self.shared.dir.join(TMP_DIR);
        let staging = tempfile::Builder::new()
            .prefix(&format!("{}-", key.get(..16).unwrap_or(key)))
            .tempdir_in(&tmp)
            .map_err(|e| ModelSourceError::io("create a folder in", &tmp, e))?;
        let files_dir = staging.path().join(FILES_DIR);
        tokio::fs::create_dir(&files_dir)
            .await
            .map_err(|e| ModelSourceError::io("create", &files_dir, e))?;
        let filled = fill(files_dir.clone()).await?;

        let root = files_dir.join(&filled.model_root);
        let (_, onnx_file) = {
            let root = root.clone();
            let label = description.to_owned();
            blocking(&files_dir, move || locate_model(&root, &label)).await?
        };
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            key: key.to_owned(),
            source: source.to_owned(),
            description: description.to_owned(),
            model_root: filled.model_root,
            onnx_file,
            total_bytes: filled.files.iter().map(|f| f.size).sum(),
            files: filled.files,
        };
        let manifest_json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ModelSourceError::io("encode", staging.path(), io::Error::other(e)))?;
        let manifest_path = staging.path().join(MANIFEST_FILE);
        tokio::fs::write(&manifest_path, manifest_json)
            .await
            .map_err(|e| ModelSourceError::io("write", &manifest_path, e))?;

        self.evict_to_fit(manifest.total_bytes);
        let entry_dir = self.shared.dir.join(key);
        // `reuse` found no usable entry and discarded any damaged one.
        tokio::fs::rename(staging.path(), &entry_dir)
            .await
            .map_err(|e| ModelSourceError::io("move into place", &entry_dir, e))?;
        let verified = {
            let dir = entry_dir.clone();
            let files = manifest.files.clone();
            blocking(&entry_dir, move || Ok(stat_all(&dir, &files))).await?
        };
        {
            let mut state = lock(&self.shared.state);
            let entry = state
                .entries
                .entry(key.to_owned())
                .or_insert_with(Entry::absent);
            entry.on_disk = true;
            entry.bytes = manifest.total_bytes;
            entry.last_used = SystemTime::now();
            entry.verified = verified;
        }
        tracing::info!(
            model = description,
            bytes = manifest.total_bytes,
            entry = %entry_dir.display(),
            "model cached"
        );
        self.describe(
            entry_dir.join(FILES_DIR).join(&manifest.model_root),
            description.to_owned(),
            lease,
        )
        .await
    }

    /// Moves an entry out of the way (under the state lock, so no new lease
    /// can find it half-deleted) and deletes it.
    fn discard(&self, key: &str) {
        let moved = {
            let mut state = lock(&self.shared.state);
            if let Some(entry) = state.entries.get_mut(key) {
                entry.on_disk = false;
                entry.bytes = 0;
                entry.verified.clear();
            }
            self.move_aside(key)
        };
        if let Some(path) = moved {
            delete_later(path);
        }
    }

    fn move_aside(&self, key: &str) -> Option<PathBuf> {
        let from = self.shared.dir.join(key);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let to = self
            .shared
            .dir
            .join(TMP_DIR)
            .join(format!("gone-{key}-{nanos}"));
        match fs::rename(&from, &to) {
            Ok(()) => Some(to),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(entry = %from.display(), "cannot remove cache entry: {e}");
                None
            }
        }
    }

    /// Evicts unleased entries, least recently used first, until `incoming`
    /// more bytes fit under the bound.
    fn evict_to_fit(&self, incoming: u64) {
        let mut gone = Vec::new();
        let over = {
            let mut state = lock(&self.shared.state);
            let mut total: u64 = state
                .entries
                .values()
                .filter(|e| e.on_disk)
                .map(|e| e.bytes)
                .sum();
            let mut candidates: Vec<(SystemTime, String)> = state
                .entries
                .iter()
                .filter(|(_, e)| e.on_disk && e.leases == 0)
                .map(|(k, e)| (e.last_used, k.clone()))
                .collect();
            candidates.sort();
            for (_, key) in candidates {
                if total.saturating_add(incoming) <= self.shared.max_bytes {
                    break;
                }
                if let Some(entry) = state.entries.get_mut(&key) {
                    total = total.saturating_sub(entry.bytes);
                    tracing::info!(entry = %key, bytes = entry.bytes, "evicting cached model");
                    entry.on_disk = false;
                    entry.bytes = 0;
                    entry.verified.clear();
                }
                if let Some(path) = self.move_aside(&key) {
                    gone.push(path);
                }
            }
            total
                .saturating_add(incoming)
                .saturating_sub(self.shared.max_bytes)
        };
        for path in gone {
            delete_later(path);
        }
        if over > 0 {
            tracing::warn!(
                dir = %self.shared.dir.display(),
                max_bytes = self.shared.max_bytes,
                "model cache is {over} bytes over its bound: every other entry is in use"
            );
        }
    }

    fn ref_path(&self, mlflow: &MlflowConfig, uri: &ModelUri) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update(b"cls-model-cache/ref/v1\n");
        hasher.update(mlflow.display_uri().as_bytes());
        hasher.update(b"\n");
        hasher.update(uri.to_string().as_bytes());
        self.shared
            .dir
            .join(REFS_DIR)
            .join(hex::encode(hasher.finalize()))
    }

    /// Records that `uri` on `mlflow` resolved to `key` (best effort).
    async fn remember(&self, mlflow: &MlflowConfig, uri: &ModelUri, key: &str) {
        let path = self.ref_path(mlflow, uri);
        let tmp = path.with_extension("tmp");
        let written = async {
            tokio::fs::write(&tmp, key).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "cannot record the cache entry of {uri}: {e}");
        }
    }

    /// The entry `uri` last resolved to, if it is still cached and intact.
    async fn offline_copy(&self, uri: &ModelUri, mlflow: &MlflowConfig) -> Option<CachedModel> {
        let key = tokio::fs::read_to_string(self.ref_path(mlflow, uri))
            .await
            .ok()?;
        let key = key.trim();
        if !is_key(key) {
            return None;
        }
        let description = format!(
            "{uri} (cached copy; MLflow at {} unreachable)",
            mlflow.display_uri()
        );
        let _guard = self.key_lock(key).lock_owned().await;
        let lease = self.lease(key);
        self.reuse(key, &description, &lease).await.ok().flatten()
    }
}

fn delete_later(path: PathBuf) {
    let remove = move || {
        if let Err(e) = fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), "cannot delete old cache entry: {e}");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(remove);
        }
        Err(_) => remove(),
    }
}

async fn download(
    client: &RegistryClient,
    resolved: &ResolvedModel,
    files: &[RemoteFile],
    staging: &Path,
    progress: Option<&ProgressFn>,
) -> Result<Filled, ModelSourceError> {
    let total: u64 = files.iter().filter_map(|f| f.size).sum();
    tracing::info!(
        model = %resolved.description,
        files = files.len(),
        bytes = total,
        "downloading {} ({} files, {total} bytes) from {}",
        resolved.description,
        files.len(),
        client.config().display_uri()
    );
    // MLmodel first: a model without an ONNX flavor fails before its
    // (possibly large) other files are fetched.
    let (first, rest): (Vec<RemoteFile>, Vec<RemoteFile>) =
        files.iter().cloned().partition(|f| f.path == MLMODEL_FILE);
    let offset_progress = |offset: u64| -> Option<ProgressFn> {
        progress.map(|p| {
            let p = p.clone();
            Arc::new(move |done: u64, _: u64| p(offset + done, total)) as ProgressFn
        })
    };
    let mut downloaded = client
        .download(
            &resolved.location,
            &first,
            staging,
            offset_progress(0).as_ref(),
        )
        .await?;
    let label = resolved.description.clone();
    let root = staging.to_path_buf();
    blocking(staging, move || parse_mlmodel(&root, &label).map(drop)).await?;
    let offset = downloaded.iter().map(|f| f.size).sum();
    downloaded.extend(
        client
            .download(
                &resolved.location,
                &rest,
                staging,
                offset_progress(offset).as_ref(),
            )
            .await?,
    );
    Ok(Filled {
        model_root: String::new(),
        files: downloaded
            .into_iter()
            .map(|f| ManifestFile {
                path: f.path,
                size: f.size,
                sha256: f.sha256,
            })
            .collect(),
    })
}

/// The cache key of a remote model: its proxy location and file list.
fn remote_key(resolved: &ResolvedModel, files: &[RemoteFile]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"cls-model-cache/remote/v1\n");
    hasher.update(super::source::display_url(&resolved.location.server).as_bytes());
    hasher.update(b"\n");
    hasher.update(resolved.location.path.as_bytes());
    hasher.update(b"\n");
    for file in files {
        hasher.update(file.path.as_bytes());
        hasher.update(b"\t");
        hasher.update(
            file.size
                .map_or_else(|| "?".to_owned(), |s| s.to_string())
                .as_bytes(),
        );
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// The cache key of an upload: its sha256, domain-separated.
fn upload_key(sha256: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"cls-model-cache/upload/v1\n");
    hasher.update(sha256.as_bytes());
    hex::encode(hasher.finalize())
}

fn read_manifest(entry_dir: &Path) -> Result<Manifest, String> {
    let path = entry_dir.join(MANIFEST_FILE);
    let text = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| format!("unreadable {}: {e}", path.display()))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(format!(
            "manifest format {} is not {MANIFEST_FORMAT}",
            manifest.format
        ));
    }
    let paths_safe = std::iter::once(manifest.model_root.as_str())
        .filter(|r| !r.is_empty())
        .chain(manifest.files.iter().map(|f| f.path.as_str()))
        .all(super::mlmodel::is_safe_relative);
    if !paths_safe {
        return Err("manifest names a path outside the entry".to_owned());
    }
    Ok(manifest)
}

/// Checks every manifest file's size, and its sha256 unless `known` shows it
/// was hashed in this process and has not changed since.
fn verify(
    entry_dir: &Path,
    manifest: &Manifest,
    known: HashMap<String, (u64, SystemTime)>,
) -> Result<HashMap<String, (u64, SystemTime)>, String> {
    let mut verified = HashMap::with_capacity(manifest.files.len());
    for file in &manifest.files {
        let path = entry_dir.join(FILES_DIR).join(&file.path);
        let meta = fs::symlink_metadata(&path).map_err(|_| format!("{} is missing", file.path))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", file.path));
        }
        if meta.len() != file.size {
            return Err(format!(
                "{} has {} bytes, expected {}",
                file.path,
                meta.len(),
                file.size
            ));
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let stamp = (file.size, modified);
        if known.get(&file.path) != Some(&stamp) {
            let digest = hash_file(&path).map_err(|e| format!("cannot read {}: {e}", file.path))?;
            if digest != file.sha256 {
                return Err(format!("{} does not match its sha256", file.path));
            }
        }
        verified.insert(file.path.clone(), stamp);
    }
    Ok(verified)
}

/// The (size, mtime) of freshly written files, which were hashed as they
/// were written.
fn stat_all(entry_dir: &Path, files: &[ManifestFile]) -> HashMap<String, (u64, SystemTime)> {
    files
        .iter()
        .filter_map(|f| {
            let meta = fs::metadata(entry_dir.join(FILES_DIR).join(&f.path)).ok()?;
            Some((f.path.clone(), (meta.len(), meta.modified().ok()?)))
        })
        .collect()
}

fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Records a use in the manifest's mtime, the access time eviction reads
/// after a restart.
fn touch(path: &Path) {
    let result = fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = result {
        tracing::debug!(path = %path.display(), "cannot update access time: {e}");
    }
}

/// A local folder or `.onnx` file, used in place.
async fn local(uri: ModelUri) -> Result<CachedModel, ModelSourceError> {
    let description = uri.to_string();
    let path = match &uri {
        ModelUri::LocalDir(p) | ModelUri::OnnxFile(p) => p.clone(),
        _ => PathBuf::new(),
    };
    blocking(&path.clone(), move || {
        let missing = |what: &str| ModelSourceError::NoModel {
            model: path.display().to_string(),
            detail: format!("no such {what}"),
        };
        match uri {
            ModelUri::OnnxFile(_) => {
                if !path.is_file() {
                    return Err(missing("file"));
                }
                let file = fs::canonicalize(&path)
                    .map_err(|e| ModelSourceError::io("resolve", &path, e))?;
                let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
                Ok(CachedModel {
                    dir,
                    onnx_path: file,
                    mlmodel: None,
                    description,
                    lease: ModelLease::none(),
                })
            }
            _ => {
                if !path.is_dir() {
                    return Err(missing("folder"));
                }
                let dir = fs::canonicalize(&path)
                    .map_err(|e| ModelSourceError::io("resolve", &path, e))?;
                let (mlmodel, onnx) = locate_model(&dir, &description)?;
                Ok(CachedModel {
                    onnx_path: dir.join(onnx),
                    dir,
                    mlmodel,
                    description,
                    lease: ModelLease::none(),
                })
            }
        }
    })
    .await
}

/// Parses `dir/MLmodel` when there is one; errors name the model `label`.
fn parse_mlmodel(dir: &Path, label: &str) -> Result<Option<MlModel>, ModelSourceError> {
    let path = dir.join(MLMODEL_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).map_err(|e| ModelSourceError::io("read", &path, e))?;
    MlModel::parse(&text)
        .map(Some)
        .map_err(|source| ModelSourceError::MlModel {
            model: label.to_owned(),
            source,
        })
}

/// Finds the model in a folder: the `MLmodel` file and the ONNX file it
/// names, or else the folder's only `.onnx` file. Returns the parsed
/// `MLmodel` and the ONNX file's path relative to `dir`.
fn locate_model(dir: &Path, label: &str) -> Result<(Option<MlModel>, String), ModelSourceError> {
    let mlmodel = parse_mlmodel(dir, label)?;
    if let Some(mlmodel) = mlmodel {
        let data = mlmodel.onnx.data.clone();
        if !dir.join(&data).is_file() {
            return Err(ModelSourceError::NoModel {
                model: label.to_owned(),
                detail: format!("MLmodel names {data} (flavors.onnx.data), which is missing"),
            });
        }
        return Ok((Some(mlmodel), data));
    }
    let mut onnx: Vec<String> = fs::read_dir(dir)
        .map_err(|e| ModelSourceError::io("read", dir, e))?
        .filter_map(Result::ok)
        .filter(|item| item.file_type().is_ok_and(|t| t.is_file()))
        .map(|item| item.file_name().to_string_lossy().into_owned())
        .filter(|name| name.to_ascii_lowercase().ends_with(".onnx"))
        .collect();
    onnx.sort();
    match onnx.as_slice() {
        [only] => Ok((None, only.clone())),
        [] => Err(ModelSourceError::NoModel {
            model: label.to_owned(),
            detail: "no MLmodel file and no .onnx file".to_owned(),
        }),
        several => Err(ModelSourceError::NoModel {
            model: label.to_owned(),
            detail: format!(
                "no MLmodel file and several .onnx files ({}): add an MLmodel or name one .onnx file",
                several.join(", ")
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;

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
}
