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
//!
//! This file owns the cache's handle and the path every model takes
//! through it (materialize, reuse or fill, describe); the rest is split
//! along its seams:
//! - [`index`]: the in-memory index of entries, leases, per-key locks and
//!   eviction;
//! - [`manifest`]: `manifest.json` and the checks of an entry's files
//!   against it;
//! - [`remote`]: MLflow models (resolution, download, the offline fallback);
//! - [`local`]: local folders and files, and finding the model in a folder.

mod index;
mod local;
mod manifest;
mod remote;
mod tokenizer;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::archive::{self, ArchiveLimits, UploadedModel};
use super::mlmodel::MlModel;
use super::registry::{self, ProgressFn, RetryPolicy};
use super::source::{MlflowConfig, ModelSource, ModelSourceError, ModelUri};
pub use index::ModelLease;
use index::{Entry, State};
use local::{local, locate_model};
use manifest::{Manifest, ManifestFile, read_manifest, stat_all, verify};

/// Default size bound of the cache (10 GiB).
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 10 << 30;

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
    /// The concrete `models:/<name>/<version>` an alias, `latest` or stage
    /// resolved to; `None` for every other source.
    pub pinned: Option<ModelUri>,
    /// Keeps the cache entry from eviction while held (clones share it).
    pub lease: ModelLease,
}

impl fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelCache")
            .field("dir", &self.shared.dir)
            .field("max_bytes", &self.shared.max_bytes)
            .finish_non_exhaustive()
    }
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
                    crate::disk::mark_used(&dir.join(MANIFEST_FILE));
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
            pinned: None,
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
}

/// The cache key of an upload: its sha256, domain-separated.
fn upload_key(sha256: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"cls-model-cache/upload/v1\n");
    hasher.update(sha256.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests;
