//! Backends persisted in the state directory ([`StateDir`]): one manifest
//! per backend and the files it was built from, stored by content.
//!
//! Persistence is crash-safe: see [`StateDir`] for the layout and the order
//! of writes that keeps either the old or the new version of a backend.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::backend::{BackendConfig, BackendName, PersistedBackend};
use crate::store::spec::{Spec, StoredConfig, is_blob_name, sha256_hex};
use crate::store::{
    BackendStore, Generation, Head, Precondition, ReplicaReport, ReplicaStatus, StoreError,
    StoredBackend,
};

/// Why persisted state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backend '{name}' on disk is unreadable: {message}")]
    Corrupt { name: String, message: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The on-disk state. Everything in it is private to the server: folders
/// are `0700` and files `0600`, because manifests hold credentials.
///
/// ```text
/// <root>/
///   backends/<name>.json   one manifest per backend: config, secrets, and
///                          the sha256 of each hook and uploaded model
///   blobs/<sha256>         hooks and uploaded models, stored by content
///   models/ compiled/ downloads/   caches owned by other modules
/// ```
///
/// Saving writes the blobs first (each to a temporary file that is synced,
/// renamed into place and followed by a sync of the folder), then the
/// manifest the same way; the rename replaces the old manifest in one step,
/// so after a crash at any point the backend is either the old version or
/// the new one. Blobs no manifest refers to are collected when the state dir
/// is opened and after a delete.
///
/// [`StateDir::open`] also repairs what a crash or an older version left:
/// temporary files, staging folders, and the former one-folder-per-backend
/// layout (`backends/<name>/{config.json, pre.wasm, post.wasm, model.name,
/// model.upload}`), which it migrates.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    /// Saves share it (saves of different backends run side by side); blob
    /// collection takes it alone, so it never sees blobs whose manifest is
    /// not written yet.
    writes: Arc<RwLock<()>>,
    /// Held from a write's generation check to its end, so `If-Match`
    /// holds between the check and the write.
    checked_writes: Arc<std::sync::Mutex<()>>,
    /// What this process last reported serving: the state dir has one
    /// replica, and it is this one.
    reports: Arc<std::sync::Mutex<Option<ReplicaStatus>>>,
}

/// Subfolders of the state dir.
const OWN_SUBDIRS: [&str; 2] = ["backends", "blobs"];

/// Every subfolder: this module's and the engine's caches, kept here so
/// that they are private too.
fn subdirs() -> impl Iterator<Item = &'static str> {
    OWN_SUBDIRS.into_iter().chain(crate::runtime::CACHE_SUBDIRS)
}
/// The manifest format this version writes.
const MANIFEST_FORMAT: u32 = 2;
const MANIFEST_EXT: &str = "json";
/// Prefix of files being written; any found when opening are crash leftovers.
const TEMP_PREFIX: &str = ".tmp-";
/// Leftovers of the former layout's saves.
const STAGING_PREFIX: &str = ".staging-";
const RETIRED_PREFIX: &str = ".retired-";
const PRIVATE_DIR_MODE: u32 = 0o700;
const PRIVATE_FILE_MODE: u32 = 0o600;

// The former layout.
const CONFIG_FILE: &str = "config.json";
const PRE_FILE: &str = "pre.wasm";
const POST_FILE: &str = "post.wasm";
const UPLOAD_NAME_FILE: &str = "model.name";
const UPLOAD_FILE: &str = "model.upload";

/// One backend's manifest, `backends/<name>.json`: its [`Spec`], named
/// and numbered. No `Debug`: it holds credentials in clear.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    name: String,
    /// Absent in manifests written before generations existed.
    #[serde(default = "first_generation")]
    generation: Generation,
    #[serde(flatten)]
    spec: Spec,
}

fn first_generation() -> Generation {
    Generation::FIRST
}

impl StateDir {
    /// Opens (and creates) a state directory, then repairs it: tightens
    /// permissions, removes crash leftovers, migrates backends stored in the
    /// former layout and collects unreferenced blobs. Repairs that fail are
    /// logged; nothing stored is deleted unless it is safe to.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StateError> {
        let root = root.into();
        create_private_dir(&root)?;
        for sub in subdirs() {
            create_private_dir(&root.join(sub))?;
        }
        let state = Self {
            root,
            writes: Arc::new(RwLock::new(())),
            checked_writes: Arc::default(),
            reports: Arc::default(),
        };
        state.repair();
        Ok(state)
    }

    fn repair(&self) {
        let _alone = self.write_alone();
        self.secure_existing_files();
        self.remove_leftovers();
        self.recover_interrupted_saves();
        self.migrate_former_layout();
        self.collect_garbage();
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn backends_dir(&self) -> PathBuf {
        self.root.join("backends")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.backends_dir().join(format!("{name}.{MANIFEST_EXT}"))
    }

    fn write_shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.writes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_alone(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.writes.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a backend durably, replacing any previous version in one
    /// step, and returns its new generation (one more than the one on disk).
    pub fn save(&self, backend: &PersistedBackend) -> Result<Generation, StateError> {
        let _shared = self.write_shared();
        let generation = self
            .generation_of(backend.name.as_str())
            .map_or(Generation::FIRST, Generation::next);
        self.save_locked(backend, generation)?;
        Ok(generation)
    }

    fn save_locked(
        &self,
        backend: &PersistedBackend,
        generation: Generation,
    ) -> Result<(), StateError> {
        let corrupt = |e: serde_json::Error| StateError::Corrupt {
            name: backend.name.to_string(),
            message: e.to_string(),
        };
        let (spec, blobs) = Spec::of(backend).map_err(corrupt)?;
        for blob in &blobs {
            self.store_blob(blob.bytes)?;
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            name: backend.name.to_string(),
            generation,
            spec,
        };
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(corrupt)?;
        write_durably(
            &self.backends_dir(),
            &self.manifest_path(backend.name.as_str()),
            &bytes,
        )
    }

    /// The generation on disk of backend `name`, if it is stored.
    fn generation_of(&self, name: &str) -> Option<Generation> {
        match self.read_manifest(name) {
            Ok(manifest) => Some(manifest.generation),
            // The former layout had no generations.
            Err(_) => self
                .backends_dir()
                .join(name)
                .is_dir()
                .then_some(Generation::FIRST),
        }
    }

    /// Stores `bytes` under their sha256 unless a complete copy is there.
    fn store_blob(&self, bytes: &[u8]) -> Result<String, StateError> {
        let sha256 = sha256_hex(bytes);
        let path = self.blobs_dir().join(&sha256);
        let complete = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !complete {
            write_durably(&self.blobs_dir(), &path, bytes)?;
        }
        Ok(sha256)
    }

    /// Deletes a backend: its manifest goes in one step, then the blobs only
    /// it used.
    pub fn delete(&self, name: &BackendName) -> Result<(), StateError> {
        let _alone = self.write_alone();
        let manifest = self.manifest_path(name.as_str());
        match std::fs::remove_file(&manifest) {
            Ok(()) => sync_dir(&self.backends_dir())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateError::Io {
                    path: manifest,
                    source,
                });
            }
        }
        // A backend the former layout still holds (it could not be migrated).
        let former = self.backends_dir().join(name.as_str());
        match std::fs::remove_dir_all(&former) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateError::Io {
                    path: former,
                    source,
                });
            }
        }
        self.collect_garbage();
        Ok(())
    }

    /// Reads every persisted backend. Unreadable entries come back as errors
    /// beside the good ones, so one corrupt backend does not stop the rest.
    pub fn load_all(&self) -> Vec<Result<StoredBackend, StateError>> {
        let entries = match self.backend_entries() {
            Ok(entries) => entries,
            Err(e) => return vec![Err(e)],
        };
        entries
            .into_iter()
            .map(|entry| self.load_entry(&entry))
            .collect()
    }

    /// Reads one persisted backend; `None` if there is none by that name.
    pub fn load(&self, name: &BackendName) -> Result<Option<StoredBackend>, StateError> {
        let entries = self.backend_entries()?;
        entries
            .iter()
            .find(|e| e.name() == name.as_str())
            .map(|entry| self.load_entry(entry))
            .transpose()
    }

    /// Every persisted backend's name and generation. An unreadable one is
    /// listed too (as generation 1), so that loading it reports why.
    pub fn heads(&self) -> Result<Vec<Head>, StateError> {
        let entries = self.backend_entries()?;
        Ok(entries
            .iter()
            .filter_map(|entry| {
                let name = BackendName::new(entry.name()).ok()?;
                let generation = self
                    .generation_of(entry.name())
                    .unwrap_or(Generation::FIRST);
                Some(Head { name, generation })
            })
            .collect())
    }

    fn load_entry(&self, entry: &BackendEntry) -> Result<StoredBackend, StateError> {
        match entry {
            BackendEntry::Manifest(name) => self.load_manifest(name),
            BackendEntry::Former(name) => self.load_former(name).map(|backend| StoredBackend {
                backend,
                generation: Generation::FIRST,
            }),
        }
    }

    /// The backends on disk, by name: manifests, and folders of the former
    /// layout that have no manifest (ones that could not be migrated).
    fn backend_entries(&self) -> Result<Vec<BackendEntry>, StateError> {
        let dir = self.backends_dir();
        let mut manifests = Vec::new();
        let mut folders = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))?.flatten() {
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                folders.push(file_name);
            } else if let Some(name) = file_name.strip_suffix(&format!(".{MANIFEST_EXT}")) {
                manifests.push(name.to_owned());
            }
        }
        folders.retain(|f| !manifests.contains(f));
        let mut entries: Vec<BackendEntry> = manifests
            .into_iter()
            .map(BackendEntry::Manifest)
            .chain(folders.into_iter().map(BackendEntry::Former))
            .collect();
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(entries)
    }

    fn read_manifest(&self, name: &str) -> Result<Manifest, StateError> {
        let corrupt = |message: String| StateError::Corrupt {
            name: name.to_owned(),
            message,
        };
        let path = self.manifest_path(name);
        let bytes =
            std::fs::read(&path).map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(corrupt(format!(
                "manifest format {} is not {MANIFEST_FORMAT} (written by another version of this server)",
                manifest.format
            )));
        }
        if manifest.name != name {
            return Err(corrupt(format!(
                "the manifest names backend '{}'",
                manifest.name
            )));
        }
        if let Some(bad) = manifest.spec.invalid_blob() {
            return Err(corrupt(format!("'{bad}' is not a sha256")));
        }
        Ok(manifest)
    }

    fn load_manifest(&self, name: &str) -> Result<StoredBackend, StateError> {
        let corrupt = |message: String| StateError::Corrupt {
            name: name.to_owned(),
            message,
        };
        let backend_name = BackendName::new(name).map_err(|e| corrupt(e.to_string()))?;
        let manifest = self.read_manifest(name)?;
        let generation = manifest.generation;
        let backend = manifest
            .spec
            .into_backend(backend_name, |sha256| {
                let path = self.blobs_dir().join(sha256);
                std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
            })
            .map_err(corrupt)?;
        Ok(StoredBackend {
            backend,
            generation,
        })
    }

    /// Reads a backend stored in the former layout, `backends/<name>/`.
    fn load_former(&self, name: &str) -> Result<PersistedBackend, StateError> {
        load_former_dir(name, &self.backends_dir().join(name))
    }

    /// Makes every existing folder `0700` and file `0600` where credentials
    /// or uploads live; the caches below are covered by the root's mode.
    fn secure_existing_files(&self) {
        let mut dirs = vec![self.root.clone()];
        dirs.extend(subdirs().map(|sub| self.root.join(sub)));
        for dir in &dirs {
            set_private(dir, PRIVATE_DIR_MODE);
        }
        for dir in [self.backends_dir(), self.blobs_dir()] {
            secure_tree(&dir);
        }
    }

    /// Removes temporary files and staging folders a crash left behind.
    fn remove_leftovers(&self) {
        for dir in [self.backends_dir(), self.blobs_dir()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) || name.starts_with(STAGING_PREFIX) {
                    tracing::info!(path = %entry.path().display(), "removing the leftover of an interrupted save");
                    remove_path(&entry.path());
                }
            }
        }
    }

    /// The former layout moved a backend's folder aside before moving the
    /// new one in; a crash between the two left only the moved-aside copy.
    /// Such a copy is put back when the backend is otherwise missing, and
    /// removed when it is not.
    fn recover_interrupted_saves(&self) {
        let dir = self.backends_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut retired: Vec<(String, PathBuf, SystemTime)> = entries
            .flatten()
            .filter_map(|entry| {
                let file_name = entry.file_name().into_string().ok()?;
                let name = retired_backend_name(&file_name)?.to_owned();
                let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
                Some((name, entry.path(), modified))
            })
            .collect();
        // Newest first, so the latest copy of a backend wins.
        retired.sort_by_key(|entry| std::cmp::Reverse(entry.2));
        for (name, path, _) in retired {
            let missing = !dir.join(&name).exists() && !self.manifest_path(&name).exists();
            if missing && load_former_dir(&name, &path).is_ok() {
                match std::fs::rename(&path, dir.join(&name)) {
                    Ok(()) => {
                        tracing::warn!(backend = %name, "restored backend from an interrupted save");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(backend = %name, path = %path.display(), "cannot restore backend from an interrupted save: {e}");
                        continue;
                    }
                }
            }
            remove_path(&path);
        }
    }

    /// Moves backends stored as `backends/<name>/` to manifests and blobs.
    /// A folder is removed only once its manifest is durable; one that cannot
    /// be read stays where it is (and is reported by [`StateDir::load_all`]).
    fn migrate_former_layout(&self) {
        let Ok(entries) = self.backend_entries() else {
            return;
        };
        let dir = self.backends_dir();
        let folders = entries.iter().filter_map(|e| match e {
            BackendEntry::Former(name) => Some(name),
            BackendEntry::Manifest(_) => None,
        });
        for name in folders {
            let Ok(backend) = self.load_former(name) else {
                continue;
            };
            if let Err(e) = self.save_locked(&backend, Generation::FIRST) {
                tracing::error!(backend = %name, "cannot migrate backend to the manifest layout (it stays in the former one): {e}");
                continue;
            }
            tracing::info!(backend = %name, "migrated backend to the manifest layout");
            remove_path(&dir.join(name));
            if let Err(e) = sync_dir(&dir) {
                tracing::warn!("{e}");
            }
        }
        // Folders left beside a manifest: a migration interrupted after its
        // manifest was written. Removed only when they hold the same backend.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if !self.manifest_path(&name).exists() {
                continue;
            }
            let same = match (self.load_former(&name), self.load_manifest(&name)) {
                (Ok(former), Ok(current)) => former == current.backend,
                _ => false,
            };
            if same {
                remove_path(&entry.path());
            } else {
                tracing::warn!(
                    backend = %name, path = %entry.path().display(),
                    "a folder in the former layout differs from the backend's manifest; the manifest is used and the folder kept for inspection"
                );
            }
        }
    }

    /// Deletes blobs no manifest refers to. Skipped (and logged) when any
    /// manifest cannot be read, since its blobs are unknown.
    fn collect_garbage(&self) {
        let entries = match self.backend_entries() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("not collecting unused blobs: {e}");
                return;
            }
        };
        let mut referenced = std::collections::HashSet::new();
        for entry in &entries {
            let BackendEntry::Manifest(name) = entry else {
                continue;
            };
            match self.read_manifest(name) {
                Ok(manifest) => referenced.extend(manifest.spec.blobs().map(str::to_owned)),
                Err(e) => {
                    tracing::warn!(
                        "not collecting unused blobs while a manifest is unreadable: {e}"
                    );
                    return;
                }
            }
        }
        let dir = self.blobs_dir();
        let Ok(blobs) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut removed = 0usize;
        for blob in blobs.flatten() {
            let name = blob.file_name().to_string_lossy().into_owned();
            if is_blob_name(&name) && !referenced.contains(&name) {
                match std::fs::remove_file(blob.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(path = %blob.path().display(), "cannot remove unused blob: {e}")
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed unused blobs");
            let _ = sync_dir(&dir);
        }
    }
}

/// The state dir as the store of a single process: nobody else writes to
/// it, so there is nothing to follow. Disk work runs on the blocking pool.
impl BackendStore for StateDir {
    fn kind(&self) -> &'static str {
        "dir"
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn heads(&self) -> BoxFuture<'_, Result<Vec<Head>, StoreError>> {
        let state = self.clone();
        blocking(move || state.heads()).boxed()
    }

    fn load<'a>(
        &'a self,
        name: &'a BackendName,
    ) -> BoxFuture<'a, Result<Option<StoredBackend>, StoreError>> {
        let (state, name) = (self.clone(), name.clone());
        blocking(move || state.load(&name)).boxed()
    }

    fn save<'a>(
        &'a self,
        backend: &'a PersistedBackend,
        expect: Precondition,
    ) -> BoxFuture<'a, Result<Generation, StoreError>> {
        let (state, backend) = (self.clone(), backend.clone());
        let name = backend.name.clone();
        blocking_checked(move || state.checked_write(&name, expect, |_| state.save(&backend)))
            .boxed()
    }

    fn delete<'a>(
        &'a self,
        name: &'a BackendName,
        expect: Precondition,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (state, name) = (self.clone(), name.clone());
        blocking_checked(move || {
            state.checked_write(&name, expect, |current| match current {
                None => Ok(false),
                Some(_) => state.delete(&name).map(|()| true),
            })
        })
        .boxed()
    }

    fn report<'a>(
        &'a self,
        replica: &'a str,
        reports: &'a [ReplicaReport],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut last = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some(ReplicaStatus {
            replica: replica.to_owned(),
            heartbeat_age_s: 0.0,
            backends: reports.to_vec(),
        });
        futures::future::ready(Ok(())).boxed()
    }

    fn replicas(&self) -> BoxFuture<'_, Result<Vec<ReplicaStatus>, StoreError>> {
        let last = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let replicas = last.iter().cloned().collect();
        futures::future::ready(Ok(replicas)).boxed()
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

impl From<StateError> for StoreError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Io { .. } => StoreError::Unavailable {
                store: "dir",
                message: e.to_string(),
            },
            StateError::Corrupt { name, message } => StoreError::Corrupt { name, message },
        }
    }
}

impl StateDir {
    /// Runs `write` with the backend's current generation if `expect`
    /// allows it, holding the lock that keeps the check true until the
    /// write ends.
    fn checked_write<T>(
        &self,
        name: &BackendName,
        expect: Precondition,
        write: impl FnOnce(Option<Generation>) -> Result<T, StateError>,
    ) -> Result<Result<T, StoreError>, StateError> {
        let _checked = self
            .checked_writes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let current = self.generation_of(name.as_str());
        if let Err(stale) = expect.check(name, current) {
            return Ok(Err(stale));
        }
        write(current).map(Ok)
    }
}

/// Runs a checked write ([`StateDir::checked_write`]) on the blocking pool.
async fn blocking_checked<T: Send + 'static>(
    work: impl FnOnce() -> Result<Result<T, StoreError>, StateError> + Send + 'static,
) -> Result<T, StoreError> {
    blocking(work).await?
}

/// Runs disk work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StoreError> {
    flatten(tokio::task::spawn_blocking(work).await)
}

fn flatten<T>(
    outcome: Result<Result<T, StateError>, tokio::task::JoinError>,
) -> Result<T, StoreError> {
    match outcome {
        Ok(result) => result.map_err(StoreError::from),
        Err(e) => Err(StoreError::Unavailable {
            store: "dir",
            message: format!("state dir work failed: {e}"),
        }),
    }
}

/// A backend on disk, by where it is stored.
enum BackendEntry {
    Manifest(String),
    Former(String),
}

impl BackendEntry {
    fn name(&self) -> &str {
        match self {
            Self::Manifest(name) | Self::Former(name) => name,
        }
    }
}

/// `.retired-<name>-<uuid>` → `<name>`.
fn retired_backend_name(file_name: &str) -> Option<&str> {
    const UUID_LEN: usize = 36;
    let rest = file_name.strip_prefix(RETIRED_PREFIX)?;
    let cut = rest.len().checked_sub(UUID_LEN + 1)?;
    let (name, suffix) = rest.split_at(cut);
    (suffix.starts_with('-') && BackendName::new(name).is_ok()).then_some(name)
}

/// Reads `dir`, a backend folder of the former layout.
fn load_former_dir(name: &str, dir: &Path) -> Result<PersistedBackend, StateError> {
    let corrupt = |message: String| StateError::Corrupt {
        name: name.to_owned(),
        message,
    };
    let backend_name = BackendName::new(name).map_err(|e| corrupt(e.to_string()))?;
    let read = |file: &str| std::fs::read(dir.join(file));
    let config_bytes = read(CONFIG_FILE).map_err(|e| corrupt(format!("{CONFIG_FILE}: {e}")))?;
    let config: StoredConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| corrupt(format!("{CONFIG_FILE}: {e}")))?;
    let config =
        BackendConfig::try_from(config).map_err(|e| corrupt(format!("{CONFIG_FILE}: {e}")))?;
    let post_hook = read(POST_FILE).map_err(|e| corrupt(format!("{POST_FILE}: {e}")))?;
    let pre_hook =
        optional_file(&dir.join(PRE_FILE)).map_err(|e| corrupt(format!("{PRE_FILE}: {e}")))?;
    let upload_name = optional_file(&dir.join(UPLOAD_NAME_FILE))
        .map_err(|e| corrupt(format!("{UPLOAD_NAME_FILE}: {e}")))?;
    let upload = optional_file(&dir.join(UPLOAD_FILE))
        .map_err(|e| corrupt(format!("{UPLOAD_FILE}: {e}")))?;
    let model_upload = match (upload_name, upload) {
        (Some(n), Some(bytes)) => Some((String::from_utf8_lossy(&n).into_owned(), bytes)),
        (None, None) => None,
        _ => {
            return Err(corrupt(format!(
                "{UPLOAD_NAME_FILE} and {UPLOAD_FILE} must both be present or both absent"
            )));
        }
    };
    Ok(PersistedBackend {
        name: backend_name,
        config,
        pre_hook,
        post_hook,
        model_upload,
    })
}

/// A file's bytes, `None` when it does not exist; other errors are errors.
fn optional_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `path` (in `dir`) so that a crash leaves either the old file or
/// the complete new one: temporary file, sync, rename, sync of the folder.
fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    use std::io::Write;
    // Temporary files are created `0600`.
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    tmp.write_all(bytes).map_err(io_error(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    tmp.persist(path).map_err(|e| StateError::Io {
        path: path.to_owned(),
        source: e.error,
    })?;
    sync_dir(dir)
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StateError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR_MODE);
    builder.create(dir).map_err(io_error(dir))
}

/// Sets a file's or folder's mode (not following links); failures are logged.
fn set_private(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.file_type().is_symlink() || meta.permissions().mode() & 0o777 == mode {
            return;
        }
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), "cannot make private (mode {mode:o}): {e}");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// [`set_private`] on everything below `dir`.
fn secure_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                set_private(&path, PRIVATE_DIR_MODE);
                secure_tree(&path);
            }
            Ok(t) if t.is_file() => set_private(&path, PRIVATE_FILE_MODE),
            _ => {}
        }
    }
}

/// Removes a file or folder, logging failures (used for leftovers only).
fn remove_path(path: &Path) {
    let removed = if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    if let Err(e) = removed
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), "cannot remove: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendConfig, BackendName, PersistedBackend};
    use crate::secret::Secret;

    #[test]
    fn saved_backends_load_back_with_secrets_and_corrupt_ones_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let mut config = BackendConfig::empty();
        config.model.uri = Some("models:/m/1".into());
        config.model.password = Some(Secret::new("pw"));
        let backend = PersistedBackend {
            name: BackendName::new("a").unwrap(),
            config: config.clone(),
            pre_hook: None,
            post_hook: b"post".to_vec(),
            model_upload: None,
        };
        state.save(&backend).unwrap();
        state.save(&backend).unwrap(); // replacing works too
        std::fs::create_dir_all(tmp.path().join("backends/broken")).unwrap();
        let loaded = state.load_all();
        assert_eq!(loaded.len(), 2);
        let good = loaded[0].as_ref().unwrap();
        assert_eq!(good.generation, Generation::new(2));
        let good = &good.backend;
        assert_eq!(good.config, config);
        assert_eq!(good.config.model.password.as_ref().unwrap().expose(), "pw");
        assert!(matches!(loaded[1], Err(StateError::Corrupt { .. })));
        state.delete(&backend.name).unwrap();
        assert_eq!(state.load_all().len(), 1);
    }

    fn backend(name: &str, version: &str, post: &[u8]) -> PersistedBackend {
        let mut config = BackendConfig::empty();
        config.model_version = Some(version.to_owned());
        config.model.password = Some(Secret::new("pw"));
        config.fetch.api_key = Some(Secret::new("key"));
        PersistedBackend {
            name: BackendName::new(name).unwrap(),
            config,
            pre_hook: Some(format!("pre-{version}").into_bytes()),
            post_hook: post.to_vec(),
            model_upload: Some(("m.onnx".into(), format!("model-{version}").into_bytes())),
        }
    }

    fn loaded(state: &StateDir) -> Vec<PersistedBackend> {
        state
            .load_all()
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{e}")).backend)
            .collect()
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Writes `backend` in the layout of earlier versions, with their modes.
    fn write_former_layout(root: &Path, folder: &str, backend: &PersistedBackend) {
        use std::os::unix::fs::PermissionsExt;
        let dir = root.join("backends").join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        let config = serde_json::to_vec(&StoredConfig::new(&backend.config).unwrap()).unwrap();
        std::fs::write(dir.join(CONFIG_FILE), config).unwrap();
        std::fs::write(dir.join(POST_FILE), &backend.post_hook).unwrap();
        if let Some(pre) = &backend.pre_hook {
            std::fs::write(dir.join(PRE_FILE), pre).unwrap();
        }
        if let Some((name, bytes)) = &backend.model_upload {
            std::fs::write(dir.join(UPLOAD_NAME_FILE), name).unwrap();
            std::fs::write(dir.join(UPLOAD_FILE), bytes).unwrap();
        }
        for path in [root.to_owned(), root.join("backends"), dir.clone()] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(
            dir.join(CONFIG_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn state_files_are_private_and_existing_ones_are_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("state");
        write_former_layout(&root, "old", &backend("old", "v1", b"post"));
        let state = StateDir::open(&root).unwrap();
        state.save(&backend("new", "v1", b"post-new")).unwrap();
        assert_eq!(mode(&root), 0o700);
        for sub in subdirs() {
            assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
        }
        for dir in [root.join("backends"), root.join("blobs")] {
            for name in names_in(&dir) {
                assert_eq!(
                    mode(&dir.join(&name)),
                    0o600,
                    "{}",
                    dir.join(name).display()
                );
            }
        }
        assert_eq!(names_in(&root.join("backends")), ["new.json", "old.json"]);
    }

    #[test]
    fn a_former_layout_backend_loads_and_is_migrated_without_loss() {
        let tmp = tempfile::tempdir().unwrap();
        let old = backend("old", "v1", b"post");
        write_former_layout(tmp.path(), "old", &old);
        let mut minimal = backend("minimal", "v1", b"post-minimal");
        minimal.pre_hook = None;
        minimal.model_upload = None;
        write_former_layout(tmp.path(), "minimal", &minimal);

        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(loaded(&state), vec![minimal.clone(), old.clone()]);
        assert_eq!(
            names_in(&tmp.path().join("backends")),
            ["minimal.json", "old.json"],
            "the former folders are gone once migrated"
        );
        // A second start reads the manifests alone.
        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(loaded(&state), vec![minimal, old]);
    }

    #[test]
    fn an_unreadable_former_layout_folder_is_kept_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("backends/broken");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CONFIG_FILE), b"{not json").unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let all = state.load_all();
        assert_eq!(all.len(), 1);
        assert!(
            matches!(&all[0], Err(StateError::Corrupt { name, .. }) if name == "broken"),
            "{all:?}"
        );
        assert!(dir.join(CONFIG_FILE).is_file(), "nothing is deleted");
    }

    #[test]
    fn leftovers_of_interrupted_saves_are_cleaned() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        state.save(&backend("a", "v1", b"post")).unwrap();
        let backends = tmp.path().join("backends");
        std::fs::create_dir_all(backends.join(".staging-x1y2")).unwrap();
        std::fs::write(backends.join(".staging-x1y2/config.json"), b"{}").unwrap();
        std::fs::write(backends.join(".tmp-abc"), b"half a manifest").unwrap();
        std::fs::write(tmp.path().join("blobs/.tmp-def"), b"half a blob").unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(names_in(&backends), ["a.json"]);
        assert!(
            names_in(&tmp.path().join("blobs"))
                .iter()
                .all(|n| is_blob_name(n))
        );
        assert_eq!(loaded(&state), vec![backend("a", "v1", b"post")]);
    }

    #[test]
    fn a_backend_lost_between_the_former_layouts_renames_is_restored() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = backend("a-b", "v1", b"post");
        // Moved aside, the new version still staged: the former save's window.
        write_former_layout(
            tmp.path(),
            ".retired-a-b-0b6f3c1e-2f4d-4a57-9a51-8f3f1f0e9d11",
            &v1,
        );
        write_former_layout(tmp.path(), ".staging-Qx81", &backend("a-b", "v2", b"p2"));
        // A retired copy whose backend still exists is a plain leftover.
        write_former_layout(tmp.path(), "c", &backend("c", "v2", b"pc"));
        write_former_layout(
            tmp.path(),
            ".retired-c-7d1c2f57-3f5b-4c0e-8a8e-2b9e3f9a0c42",
            &backend("c", "v1", b"pc1"),
        );
        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(loaded(&state), vec![v1, backend("c", "v2", b"pc")]);
        assert_eq!(
            names_in(&tmp.path().join("backends")),
            ["a-b.json", "c.json"]
        );
    }

    #[test]
    fn unreferenced_blobs_are_collected_and_referenced_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let a = backend("a", "v1", b"post-a");
        let b = backend("b", "v1", b"post-b");
        state.save(&a).unwrap();
        state.save(&b).unwrap();
        let blob = |bytes: &[u8]| tmp.path().join("blobs").join(sha256_hex(bytes));
        let orphan = blob(b"orphan");
        std::fs::write(&orphan, b"orphan").unwrap();

        let state = StateDir::open(tmp.path()).unwrap();
        assert!(!orphan.exists());
        for kept in [b"post-a".as_slice(), b"post-b", b"pre-v1", b"model-v1"] {
            assert!(blob(kept).is_file());
        }
        // Shared blobs (pre-v1, model-v1) outlive one of their users.
        state.delete(&b.name).unwrap();
        assert!(!blob(b"post-b").exists());
        assert!(blob(b"pre-v1").is_file() && blob(b"model-v1").is_file());
        assert_eq!(loaded(&state), vec![a]);
    }

    #[test]
    fn no_blob_is_collected_while_a_manifest_is_unreadable() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        state.save(&backend("a", "v1", b"post-a")).unwrap();
        std::fs::write(tmp.path().join("backends/b.json"), b"{not json").unwrap();
        let maybe_bs = tmp.path().join("blobs").join(sha256_hex(b"post-b"));
        std::fs::write(&maybe_bs, b"post-b").unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        assert!(
            maybe_bs.is_file(),
            "b's blobs are unknown, so none is deleted"
        );
        let all = state.load_all();
        assert!(all[0].is_ok());
        assert!(matches!(&all[1], Err(StateError::Corrupt { name, .. }) if name == "b"));
    }

    #[test]
    fn a_damaged_blob_is_reported_instead_of_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        state.save(&backend("a", "v1", b"post-a")).unwrap();
        std::fs::write(
            tmp.path().join("blobs").join(sha256_hex(b"post-a")),
            b"post-",
        )
        .unwrap();
        let all = state.load_all();
        let err = all[0].as_ref().unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn a_crash_at_any_step_of_a_replacing_save_leaves_the_old_or_the_new_version() {
        let v1 = backend("a", "v1", b"post-v1");
        let v2 = backend("a", "v2", b"post-v2");
        let fresh = || {
            let tmp = tempfile::tempdir().unwrap();
            let state = StateDir::open(tmp.path()).unwrap();
            state.save(&v1).unwrap();
            (tmp, state)
        };

        // Killed after the new blobs were written.
        let (tmp, state) = fresh();
        state.store_blob(&v2.post_hook).unwrap();
        state.store_blob(b"pre-v2").unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(loaded(&state), vec![v1.clone()]);
        assert!(
            !tmp.path()
                .join("blobs")
                .join(sha256_hex(b"post-v2"))
                .exists()
        );

        // Killed while the new manifest was being written, before its rename.
        let (tmp, state) = fresh();
        state.store_blob(&v2.post_hook).unwrap();
        let full = serde_json::to_vec(&Manifest {
            format: MANIFEST_FORMAT,
            name: "a".into(),
            generation: Generation::new(2),
            spec: Spec::of(&v2).unwrap().0,
        })
        .unwrap();
        std::fs::write(
            tmp.path().join("backends/.tmp-Cd34"),
            &full[..full.len() / 2],
        )
        .unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(loaded(&state), vec![v1.clone()]);
        assert_eq!(names_in(&tmp.path().join("backends")), ["a.json"]);

        // Killed after the rename: the new version, complete.
        let (tmp, state) = fresh();
        state.save(&v2).unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(loaded(&state), vec![v2]);
        assert!(
            !tmp.path()
                .join("blobs")
                .join(sha256_hex(b"post-v1"))
                .exists()
        );
    }
}
