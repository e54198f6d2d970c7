//! What the on-disk caches (models, task files, compiled hooks) share about
//! files: recording a use where eviction reads it after a restart.

use std::fs;
use std::path::Path;
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
