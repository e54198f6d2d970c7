//! The on-disk cache of compiled hooks: our own `Component::serialize()`
//! output, named by the upload's SHA-256 and the engine's compatibility
//! hash, bounded in bytes. A cwasm is 10 to 40 times its upload (a Python
//! hook's is about 36 MiB), and every rebuild of a hook is a new upload, so
//! without a bound the directory only grows; the least recently used
//! artefacts go first, and a hit counts as a use.
//!
//! Uploaded bytes never come back out of here unchecked: the only files read
//! are ones [`ArtefactCache::store`] wrote, atomically, from a component this
//! engine compiled.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

const EXTENSION: &str = "cwasm";

/// Compiled artefacts in one directory, at most `max_bytes` of them.
pub(super) struct ArtefactCache {
    dir: PathBuf,
    max_bytes: u64,
    /// The engine's compatibility hash, part of every name: artefacts of
    /// another wasmtime build or configuration are never loaded.
    engine_tag: String,
}

impl ArtefactCache {
    /// The cache in `dir`, trimmed to `max_bytes` at once (a cache left by
    /// an older version, or a larger bound, shrinks on the next start).
    pub(super) fn open(dir: PathBuf, max_bytes: u64, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cache = Self {
            dir,
            max_bytes,
            engine_tag: format!("{:016x}", hasher.finish()),
        };
        cache.evict(None);
        cache
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.{EXTENSION}", self.engine_tag))
    }

    /// The compiled component for the upload with this SHA-256, if cached
    /// and loadable; an unusable file is deleted.
    pub(super) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.is_file() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts its input. The only files under
        // this directory are ones `store` wrote from our own
        // `Component::serialize()` output (atomically, via rename), named by
        // the sha256 of the upload and this engine's compatibility hash.
        // Uploaded bytes never reach this function: `check_upload` refuses
        // precompiled artefacts outright.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => {
                crate::disk::mark_used(&path);
                Some(component)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable compiled hook: {e:#}");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a freshly compiled component, then evicts down to the bound
    /// (never the one just written). The cache only saves time on restart:
    /// failing to write it is logged, not an error.
    pub(super) fn store(&self, component: &Component, sha256: &str) {
        let path = self.path(sha256);
        let write = || -> Result<(), String> {
            let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
            if bytes.len() as u64 > self.max_bytes {
                return Err(format!(
                    "{} MiB is more than the whole cache ({} MiB)",
                    bytes.len() >> 20,
                    self.max_bytes >> 20
                ));
            }
            fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| e.to_string())?;
            std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| e.to_string())?;
            tmp.persist(&path).map_err(|e| e.to_string())?;
            Ok(())
        };
        match write() {
            Ok(()) => self.evict(Some(&path)),
            Err(e) => tracing::warn!(path = %path.display(), "cannot cache compiled hook: {e}"),
        }
    }

    /// Deletes the least recently used artefacts until the rest fit the
    /// bound, sparing `keep`. Compiles take hundreds of milliseconds or
    /// more, so listing the directory each time costs nothing that matters.
    fn evict(&self, keep: Option<&Path>) {
        crate::disk::evict_least_recently_used(cwasm_files(&self.dir), self.max_bytes, keep);
    }
}

/// The artefacts in `dir`.
fn cwasm_files(dir: &Path) -> Vec<crate::disk::CachedFile> {
    crate::disk::cached_files(dir, |path| path.extension().is_some_and(|x| x == EXTENSION))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, SystemTime};

    use super::*;

    fn compiled(engine: &Engine, name: &str) -> Component {
        // Distinct components: each exports a core module with its own name.
        let wat = format!(r#"(component (core module ${name} (func (export "{name}"))))"#);
        Component::new(engine, wat::parse_str(&wat).unwrap()).unwrap()
    }

    fn age(cache: &ArtefactCache, sha256: &str, seconds_ago: u64) {
        let when = SystemTime::now() - Duration::from_secs(seconds_ago);
        fs::File::options()
            .append(true)
            .open(cache.path(sha256))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn the_least_recently_used_artefacts_are_evicted_past_the_bound() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let one = compiled(&engine, "one").serialize().unwrap().len() as u64;
        // Room for two artefacts of about this size, not three.
        let cache = ArtefactCache::open(dir.path().to_owned(), one * 5 / 2, &engine);
        cache.store(&compiled(&engine, "a"), "a");
        cache.store(&compiled(&engine, "b"), "b");
        age(&cache, "a", 30);
        age(&cache, "b", 20);
        // A hit makes "a" the most recently used: "b" must go next.
        assert!(cache.load(&engine, "a").is_some());
        cache.store(&compiled(&engine, "c"), "c");
        assert!(cache.load(&engine, "a").is_some(), "a was used last");
        assert!(
            cache.load(&engine, "b").is_none(),
            "b was least recently used"
        );
        assert!(cache.load(&engine, "c").is_some(), "the new one is kept");
        assert_eq!(cwasm_files(dir.path()).len(), 2);
    }

    #[test]
    fn opening_trims_a_cache_larger_than_its_bound() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let big = ArtefactCache::open(dir.path().to_owned(), u64::MAX, &engine);
        for name in ["a", "b", "c"] {
            big.store(&compiled(&engine, name), name);
        }
        assert_eq!(cwasm_files(dir.path()).len(), 3);
        let small = ArtefactCache::open(dir.path().to_owned(), 0, &engine);
        assert!(cwasm_files(dir.path()).is_empty());
        small.store(&compiled(&engine, "d"), "d");
        assert!(
            small.load(&engine, "d").is_none(),
            "an artefact larger than the whole cache is not stored"
        );
    }
}
