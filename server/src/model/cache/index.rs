//! The in-memory index of cache entries (size, last use, leases, files
//! already hashed in this process), the per-key locks that make concurrent
//! requests share one fill, leases that keep entries from eviction, and
//! eviction itself (least recently used first, never a leased entry).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::{ModelCache, Shared, TMP_DIR, lock};

#[derive(Default)]
pub(super) struct State {
    pub(super) entries: HashMap<String, Entry>,
}

pub(super) struct Entry {
    /// Bytes on disk (0 while not on disk).
    pub(super) bytes: u64,
    pub(super) last_used: SystemTime,
    /// Live [`ModelLease`]s (and materializations in progress).
    pub(super) leases: usize,
    pub(super) on_disk: bool,
    /// Files whose sha256 was checked in this process: path → (size, mtime)
    /// at the time.
    pub(super) verified: HashMap<String, (u64, SystemTime)>,
}

impl Entry {
    pub(super) fn absent() -> Self {
        Self {
            bytes: 0,
            last_used: SystemTime::now(),
            leases: 0,
            on_disk: false,
            verified: HashMap::new(),
        }
    }
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
    pub(super) fn none() -> Self {
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

impl ModelCache {
    pub(super) fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.shared.key_locks)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    pub(super) fn lease(&self, key: &str) -> ModelLease {
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

    /// Moves an entry out of the way (under the state lock, so no new lease
    /// can find it half-deleted) and deletes it.
    pub(super) fn discard(&self, key: &str) {
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

    pub(super) fn move_aside(&self, key: &str) -> Option<PathBuf> {
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
    pub(super) fn evict_to_fit(&self, incoming: u64) {
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
