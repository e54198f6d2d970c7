//! The on-disk cache of Cranelift's compiled functions (its incremental
//! cache): one file per function, named by the hash Cranelift computes of
//! the function's code and the target, bounded in bytes.
//!
//! Hooks share most of their code: every componentize-py hook carries the
//! same CPython (about 21,000 functions), and a rebuilt Rust hook changes a
//! few functions of its crate. The artefact cache only helps when the whole
//! upload is unchanged; this one makes compiling a new Python hook, or a
//! new build of any hook, cost little more than translating it: a Python
//! hook 6.9-7.7 -> 2.7-3.2 s on 2 cores. Filling it costs the first
//! compile about 3 s (15,000 small files).
//!
//! What is read back is only what [`FunctionCache::insert`] wrote,
//! atomically, from Cranelift's own output; uploaded bytes never land here.
//! The least recently used files go first when the cache is opened and
//! each time a sixteenth of its bound has been written since (listing
//! thousands of files per function stored would cost more than compiling).

use std::borrow::Cow;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Compiled functions in one directory, at most about `max_bytes`.
#[derive(Debug)]
pub(super) struct FunctionCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes stored since the last trim.
    written: AtomicU64,
}

/// A temporary file this old was left by a writer that died.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

impl FunctionCache {
    /// The cache in `dir`, trimmed to `max_bytes` at once.
    pub(super) fn open(dir: PathBuf, max_bytes: u64) -> Self {
        trim(&dir, max_bytes, None);
        Self {
            dir,
            max_bytes,
            written: AtomicU64::new(0),
        }
    }

    /// Trims, sparing `stored`, once a sixteenth of the bound has been
    /// written since the last trim.
    fn count_written(&self, stored: &Path, bytes: u64) {
        let written = self.written.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if written >= self.max_bytes / 16 {
            self.written.store(0, Ordering::Relaxed);
            trim(&self.dir, self.max_bytes, Some(stored));
        }
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        self.dir.join(hex::encode(key))
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let path = self.path(key);
        let mut file = fs::File::open(&path).ok()?;
        let mut bytes = Vec::new();
        if let Err(e) = file.read_to_end(&mut bytes) {
            tracing::debug!(path = %path.display(), "cannot read a cached function: {e}");
            return None;
        }
        // A use, for eviction; losing it only costs eviction order.
        let _ = file.set_modified(SystemTime::now());
        Some(Cow::Owned(bytes))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let path = self.path(key);
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(&self.dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            tmp.write_all(&value)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        match write() {
            Ok(()) => {
                self.count_written(&path, value.len() as u64);
                true
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), "cannot cache a compiled function: {e}");
                false
            }
        }
    }
}

/// Deletes the least recently used files of `dir` until the rest fit
/// `max_bytes` (sparing `keep`), and the temporary files writers that died
/// left behind.
fn trim(dir: &Path, max_bytes: u64, keep: Option<&Path>) {
    let (temporary, functions): (Vec<_>, Vec<_>) = crate::disk::cached_files(dir, |_| true)
        .into_iter()
        .partition(|file| is_temporary(&file.path));
    let abandoned = SystemTime::now() - ABANDONED_AFTER;
    for leftover in temporary.into_iter().filter(|f| f.used < abandoned) {
        let _ = fs::remove_file(leftover.path);
    }
    crate::disk::evict_least_recently_used(functions, max_bytes, keep);
}

/// `tempfile`'s names start with a dot; ours are hex.
fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    /// Makes `path` look last used a minute ago.
    fn age(path: &Path) {
        fs::File::options()
            .append(true)
            .open(path)
            .and_then(|f| f.set_modified(SystemTime::now() - ABANDONED_AFTER))
            .unwrap_or_else(|e| panic!("age {}: {e}", path.display()));
    }

    #[test]
    fn a_stored_function_comes_back_and_the_oldest_go_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FunctionCache::open(dir.path().join("f"), 1 << 20);
        assert!(cache.get(b"one").is_none());
        assert!(cache.insert(b"one", vec![1; 600]));
        assert!(cache.insert(b"two", vec![2; 600]));
        assert_eq!(cache.get(b"two").as_deref(), Some(&[2u8; 600][..]));
        // "two" was used last: trimming to one file's room keeps it.
        age(&cache.path(b"one"));
        let leftover = dir.path().join("f/.tmpLeft");
        fs::write(&leftover, b"partial").expect("leftover");
        age(&leftover);
        let writing = dir.path().join("f/.tmpWriting");
        fs::write(&writing, b"in flight").expect("a write in flight");
        let cache = FunctionCache::open(dir.path().join("f"), 700);
        assert!(cache.get(b"one").is_none(), "the least recently used goes");
        assert!(cache.get(b"two").is_some());
        assert!(!leftover.exists(), "an abandoned temporary file goes");
        assert!(writing.exists(), "a write in flight is left alone");
    }

    #[test]
    fn storing_past_a_sixteenth_of_the_bound_trims() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FunctionCache::open(dir.path().to_path_buf(), 16 * 100);
        for key in 0u8..40 {
            assert!(cache.insert(&[key], vec![key; 100]));
        }
        let kept: u64 = crate::disk::cached_files(dir.path(), |_| true)
            .iter()
            .map(|f| f.size)
            .sum();
        assert!(kept <= 16 * 100, "{kept} bytes kept");
        assert!(cache.get(&[39]).is_some(), "the one just stored stays");
    }
}
