//! `manifest.json`, the record of what an entry holds (its source, model
//! folder, ONNX file and every file's size and sha256), and the checks of
//! an entry's files against it.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FILES_DIR, MANIFEST_FILE, MANIFEST_FORMAT};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub(super) format: u32,
    pub(super) key: String,
    /// The URI (or upload) first stored under this key.
    pub(super) source: String,
    pub(super) description: String,
    /// The model folder inside `model/` (`""` for `model/` itself).
    pub(super) model_root: String,
    /// The ONNX file, relative to the model folder.
    pub(super) onnx_file: String,
    pub(super) total_bytes: u64,
    pub(super) files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ManifestFile {
    pub(super) path: String,
    pub(super) size: u64,
    pub(super) sha256: String,
}

pub(super) fn read_manifest(entry_dir: &Path) -> Result<Manifest, String> {
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
        .all(crate::model::mlmodel::is_safe_relative);
    if !paths_safe {
        return Err("manifest names a path outside the entry".to_owned());
    }
    Ok(manifest)
}

/// Checks every manifest file's size, and its sha256 unless `known` shows it
/// was hashed in this process and has not changed since.
pub(super) fn verify(
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
pub(super) fn stat_all(
    entry_dir: &Path,
    files: &[ManifestFile],
) -> HashMap<String, (u64, SystemTime)> {
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
