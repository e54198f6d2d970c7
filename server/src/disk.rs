//! What the on-disk caches (models, task files, compiled hooks) share about
//! files: recording a use where eviction reads it after a restart.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Records a use of `path` as its modification time, which the caches order
/// eviction by: access times are often not kept (`noatime`, `relatime`).
/// Failing only costs eviction order, so it is logged, not returned.
pub(crate) fn mark_used(path: &Path) {
    let touched = fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(path = %path.display(), "cannot record a use of a cached file: {e}");
    }
}

/// A file of an on-disk cache, as eviction sees it.
pub(crate) struct CachedFile {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// The last use [`mark_used`] recorded.
    pub(crate) used: SystemTime,
}

/// The plain files directly in `dir` that `wanted` accepts (none if `dir`
/// cannot be read).
pub(crate) fn cached_files(dir: &Path, wanted: impl Fn(&Path) -> bool) -> Vec<CachedFile> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| wanted(&e.path()))
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(fs::Metadata::is_file)?;
            Some(CachedFile {
                path: e.path(),
                size: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect()
}

/// Deletes the least recently used of `files` until the rest fit in
/// `max_bytes`, sparing `keep`.
pub(crate) fn evict_least_recently_used(
    mut files: Vec<CachedFile>,
    max_bytes: u64,
    keep: Option<&Path>,
) {
    let mut total: u64 = files.iter().map(|f| f.size).sum();
    files.sort_by_key(|f| f.used);
    for victim in files {
        if total <= max_bytes {
            break;
        }
        if Some(victim.path.as_path()) == keep {
            continue;
        }
        tracing::debug!(path = %victim.path.display(), "evicting a cached file");
        if fs::remove_file(&victim.path).is_ok() {
            total -= victim.size;
        }
    }
}
