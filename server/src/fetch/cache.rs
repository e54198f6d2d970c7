//! The on-disk download cache: one file per URL, named by the SHA-256 of the
//! absolute URL, bounded in total size with least-recently-used eviction.
//!
//! Entry format: one JSON header line (`v`, `content_type`, `credential`
//! fingerprint, body `len`, body `sha256`, and for a URL whose bytes may
//! change its [`Validity`]: `etag`, `last_modified`, `fresh_until`), then
//! the body. Entries are
//! written to a temporary file and renamed into place, and checked on every
//! read: a truncated or corrupt entry is deleted and counts as a miss.
//! Recency survives restarts through the files' modification times.
//!
//! Which URLs are cached at all is decided by [`super::source::Kind::cacheable`].

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Entry format version; other versions are treated as corrupt.
const VERSION: u32 = 1;
/// Longest header line accepted.
const MAX_HEADER: usize = 4_096;
/// Prefix of in-progress writes, removed at startup.
const TMP_PREFIX: &str = ".tmp-";

/// The cache key of an absolute URL.
pub(crate) fn key(url: &str) -> String {
    hex::encode(Sha256::digest(url.as_bytes()))
}

#[derive(Serialize, Deserialize)]
struct Header {
    v: u32,
    content_type: String,
    credential: String,
    len: u64,
    sha256: String,
    #[serde(flatten)]
    validity: Validity,
}

/// When a cached download may be served: always for an immutable URL (the
/// default), else while fresh and, after that, once the origin confirms
/// that its validators still match (a `304 Not Modified`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Validity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Until when (Unix seconds) it may be served without asking the
    /// origin; `None` for an immutable URL, fresh for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_until: Option<u64>,
}

impl Validity {
    /// Whether it may be served without asking the origin at `now` (Unix
    /// seconds).
    pub(crate) fn is_fresh(&self, now: u64) -> bool {
        self.fresh_until.is_none_or(|until| now < until)
    }

    /// Whether the origin can be asked if it changed.
    pub(crate) fn has_validators(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// This validity after a `304 Not Modified` that sent `update`: its
    /// freshness and any validator it repeats replace the stored ones.
    pub(crate) fn refreshed(&self, update: Validity) -> Validity {
        Validity {
            etag: update.etag.or_else(|| self.etag.clone()),
            last_modified: update.last_modified.or_else(|| self.last_modified.clone()),
            fresh_until: update.fresh_until,
        }
    }
}

/// A cache hit.
pub(crate) struct Hit {
    pub bytes: Bytes,
    pub content_type: String,
    pub validity: Validity,
}

/// Recency bookkeeping: entry sizes and a tick per entry, with the ticks
/// ordered so the least recently used entry is found in O(log n).
#[derive(Default)]
struct Index {
    entries: HashMap<String, (u64, u64)>,
    by_tick: BTreeMap<u64, String>,
    total: u64,
    next_tick: u64,
}

impl Index {
    fn touch(&mut self, key: &str) {
        let tick = self.next_tick;
        if let Some((_, old)) = self.entries.get_mut(key) {
            self.by_tick.remove(old);
            *old = tick;
            self.by_tick.insert(tick, key.to_owned());
            self.next_tick += 1;
        }
    }

    fn insert(&mut self, key: &str, size: u64) {
        self.remove(key);
        let tick = self.next_tick;
        self.next_tick += 1;
        self.entries.insert(key.to_owned(), (size, tick));
        self.by_tick.insert(tick, key.to_owned());
        self.total += size;
    }

    fn remove(&mut self, key: &str) {
        if let Some((size, tick)) = self.entries.remove(key) {
            self.by_tick.remove(&tick);
            self.total -= size;
        }
    }

    /// Removes least recently used entries until the total fits `max`;
    /// returns their keys so the files can be deleted outside the lock.
    fn evict(&mut self, max: u64) -> Vec<String> {
        let mut victims = Vec::new();
        while self.total > max {
            let Some((_, key)) = self.by_tick.pop_first() else {
                break;
            };
            if let Some((size, _)) = self.entries.remove(&key) {
                self.total -= size;
            }
            victims.push(key);
        }
        victims
    }
}

/// The cache. All file I/O runs on the blocking pool.
pub(crate) struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
}

impl DiskCache {
    /// Opens (creating if needed) the cache in `dir`, indexing existing
    /// entries by modification time, removing leftover temporary files and
    /// evicting down to `max_bytes`.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata()?;
            if name.starts_with(TMP_PREFIX) {
                // A write interrupted by a crash.
                let _ = fs::remove_file(entry.path());
            } else if meta.is_file()
                && name.len() == 64
                && name.bytes().all(|b| b.is_ascii_hexdigit())
            {
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((used, name, meta.len()));
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, key, size) in found {
            index.insert(&key, size);
        }
        let cache = Self {
            dir: dir.to_owned(),
            max_bytes,
            index: Mutex::new(Index::default()),
        };
        let victims = index.evict(max_bytes);
        cache.delete(&victims);
        *cache.lock() = index;
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // Index updates cannot panic half-way; a poisoned lock is still sound.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn delete(&self, keys: &[String]) {
        for key in keys {
            tracing::debug!(key, "evicting cached download");
            let _ = fs::remove_file(self.path(key));
        }
    }

    /// The entry for `key` stored under the same `credential`, if present
    /// and intact. A damaged entry is deleted.
    pub(crate) async fn get(&self, key: &str, credential: &str) -> Option<Hit> {
        if !self.lock().entries.contains_key(key) {
            return None;
        }
        let path = self.path(key);
        let credential = credential.to_owned();
        let read = tokio::task::spawn_blocking(move || read_entry(&path, &credential))
            .await
            .unwrap_or_else(|e| Err(format!("reader task failed: {e}")));
        match read {
            Ok(Some(hit)) => {
                self.lock().touch(key);
                Some(hit)
            }
            // Stored under another key: a miss, the download replaces it.
            Ok(None) => None,
            Err(reason) => {
                tracing::warn!(key, %reason, "discarding damaged cache entry");
                self.lock().remove(key);
                let _ = tokio::fs::remove_file(self.path(key)).await;
                None
            }
        }
    }

    /// Stores a download, servable as `validity` says. Failures are logged,
    /// never returned: the cache is an optimisation.
    pub(crate) async fn put(
        &self,
        key: &str,
        credential: &str,
        content_type: &str,
        bytes: Bytes,
        validity: Validity,
    ) {
        let header = Header {
            v: VERSION,
            content_type: content_type.to_owned(),
            credential: credential.to_owned(),
            len: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            validity,
        };
        let Ok(mut line) = serde_json::to_vec(&header) else {
            return;
        };
        line.push(b'\n');
        let size = (line.len() + bytes.len()) as u64;
        if size > self.max_bytes {
            return;
        }
        let (dir, path) = (self.dir.clone(), self.path(key));
        let written =
            tokio::task::spawn_blocking(move || write_entry(&dir, &path, &line, &bytes)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(key, error = %e, "could not write cache entry");
                return;
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "cache writer task failed");
                return;
            }
        }
        let victims = {
            let mut index = self.lock();
            index.insert(key, size);
            index.evict(self.max_bytes)
        };
        self.delete(&victims);
    }

    /// Entries and bytes currently indexed.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, u64) {
        let index = self.lock();
        (index.entries.len(), index.total)
    }
}

fn write_entry(dir: &Path, path: &Path, header: &[u8], body: &[u8]) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempfile_in(dir)?;
    tmp.write_all(header)?;
    tmp.write_all(body)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `Ok(None)`: intact but stored under another credential.
fn read_entry(path: &Path, credential: &str) -> Result<Option<Hit>, String> {
    let data = fs::read(path).map_err(|e| format!("read: {e}"))?;
    let end = data
        .iter()
        .take(MAX_HEADER)
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header: Header =
        serde_json::from_slice(&data[..end]).map_err(|e| format!("bad header: {e}"))?;
    if header.v != VERSION {
        return Err(format!("format version {}", header.v));
    }
    let body = &data[end + 1..];
    if body.len() as u64 != header.len {
        return Err(format!("truncated: {} of {} bytes", body.len(), header.len));
    }
    if hex::encode(Sha256::digest(body)) != header.sha256 {
        return Err("checksum mismatch".into());
    }
    if header.credential != credential {
        return Ok(None);
    }
    // Recency for the next startup's index; best effort.
    if let Ok(file) = fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
    let start = end + 1;
    Ok(Some(Hit {
        bytes: Bytes::from(data).slice(start..),
        content_type: header.content_type,
        validity: header.validity,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[tokio::test]
    async fn entries_round_trip_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache::open(dir.path(), 1_000_000).expect("open");
        let k = key("http://ls/data/upload/1/a.png");
        cache
            .put(&k, "anonymous", "image/png", body(10), Validity::default())
            .await;
        let hit = cache.get(&k, "anonymous").await.expect("hit");
        assert_eq!(
            (hit.bytes, hit.content_type.as_str()),
            (body(10), "image/png")
        );

        let reopened = DiskCache::open(dir.path(), 1_000_000).expect("reopen");
        assert!(reopened.get(&k, "anonymous").await.is_some());
    }

    #[tokio::test]
    async fn another_credential_misses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache::open(dir.path(), 1_000_000).expect("open");
        cache
            .put("k", "cred-a", "image/png", body(10), Validity::default())
            .await;
        assert!(cache.get("k", "cred-b").await.is_none());
        assert!(
            cache.get("k", "cred-a").await.is_some(),
            "the entry is kept"
        );
    }

    #[tokio::test]
    async fn least_recently_used_entries_are_evicted_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Each entry is a ~150-byte header plus 400 bytes: room for three.
        let cache = DiskCache::open(dir.path(), 1_800).expect("open");
        for k in ["a", "b", "c"] {
            cache
                .put(k, "x", "t/t", body(400), Validity::default())
                .await;
        }
        assert!(cache.get("a", "x").await.is_some(), "a is now the newest");
        cache
            .put("d", "x", "t/t", body(400), Validity::default())
            .await;
        assert!(
            cache.get("b", "x").await.is_none(),
            "b was least recently used"
        );
        assert!(!dir.path().join("b").exists());
        for k in ["a", "c", "d"] {
            assert!(cache.get(k, "x").await.is_some(), "{k}");
        }
        let (n, total) = cache.usage();
        assert_eq!(n, 3);
        assert!(total <= 1_800);
    }

    #[tokio::test]
    async fn entries_larger_than_the_cache_are_not_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache::open(dir.path(), 100).expect("open");
        cache
            .put("k", "x", "t/t", body(500), Validity::default())
            .await;
        assert_eq!(cache.usage(), (0, 0));
    }

    #[tokio::test]
    async fn damaged_entries_are_deleted_and_miss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache::open(dir.path(), 1_000_000).expect("open");
        for k in ["trunc", "flip", "junk"] {
            cache
                .put(k, "x", "t/t", body(100), Validity::default())
                .await;
        }
        let path = |k: &str| dir.path().join(k);
        let full = fs::read(path("trunc")).expect("read");
        fs::write(path("trunc"), &full[..full.len() - 10]).expect("truncate");
        let mut flipped = fs::read(path("flip")).expect("read");
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        fs::write(path("flip"), flipped).expect("flip");
        fs::write(path("junk"), b"not a cache entry").expect("junk");
        for k in ["trunc", "flip", "junk"] {
            assert!(cache.get(k, "x").await.is_none(), "{k}");
            assert!(!path(k).exists(), "{k} deleted");
        }
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn startup_removes_interrupted_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(".tmp-abc"), b"partial").expect("write");
        DiskCache::open(dir.path(), 1_000).expect("open");
        assert!(!dir.path().join(".tmp-abc").exists());
    }
}
