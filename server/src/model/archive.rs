//! Uploaded models: a bare `.onnx` file, or a `.zip`, `.tar.gz` or `.tar` of
//! an MLflow model folder, unpacked safely into a folder the caller owns.
//!
//! "Safely" means: no entry is written outside the destination (absolute
//! paths, `..`, backslashes and links are refused), the number of entries and
//! the bytes actually written are capped while streaming (declared sizes are
//! not trusted; the cap grows with the upload's size, so a small archive
//! cannot unpack to gigabytes), and nothing is overwritten. Owns unpacking only; where the folder lives
//! and how long it is kept is [`crate::model::ModelCache`]'s business.

use std::fmt;
use std::fs;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::mlmodel::MLMODEL_FILE;
use super::source::ModelUri;

/// Default absolute cap on the bytes an upload may unpack to (8 GiB).
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 8 << 30;
/// Default: an archive may unpack to this many times its own size...
pub const DEFAULT_MAX_EXPANSION_RATIO: u64 = 50;
/// ...or to this many bytes (256 MiB), whichever is larger, so small
/// archives of very compressible files still unpack.
pub const DEFAULT_MIN_UNPACKED_ALLOWANCE: u64 = 256 << 20;
/// Default cap on the number of entries in an uploaded archive.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
/// The file name a bare `.onnx` upload is stored under.
pub const UPLOADED_ONNX_FILE: &str = "model.onnx";

/// Longest tar extension record (GNU long name, PAX header) accepted; the
/// `tar` crate reads these into memory.
const MAX_TAR_EXTENSION_BYTES: u64 = 64 << 10;
/// How deep the model folder may sit inside an archive
/// (`MLmodel`, `model/MLmodel`, `export/model/MLmodel`).
const MAX_ROOT_DEPTH: usize = 2;

/// Caps applied while unpacking an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Most bytes written in total, whatever the upload's size.
    pub max_unpacked_bytes: u64,
    /// Most entries (files and folders).
    pub max_entries: usize,
    /// Most bytes written per byte of upload...
    pub max_expansion_ratio: u64,
    /// ...unless the total stays under this allowance.
    pub min_unpacked_allowance: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_unpacked_bytes: DEFAULT_MAX_UNPACKED_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_expansion_ratio: DEFAULT_MAX_EXPANSION_RATIO,
            min_unpacked_allowance: DEFAULT_MIN_UNPACKED_ALLOWANCE,
        }
    }
}

impl ArchiveLimits {
    /// Most bytes an upload of `upload_bytes` may unpack to:
    /// `max(min_unpacked_allowance, max_expansion_ratio × upload_bytes)`,
    /// never above `max_unpacked_bytes`.
    pub fn unpacked_cap(&self, upload_bytes: u64) -> u64 {
        upload_bytes
            .saturating_mul(self.max_expansion_ratio)
            .max(self.min_unpacked_allowance)
            .min(self.max_unpacked_bytes)
    }
}

/// What an uploaded file is, from its first bytes and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// A bare ONNX model.
    Onnx,
    /// A zip archive of a model folder.
    Zip,
    /// A gzip-compressed tar archive of a model folder.
    TarGz,
    /// An uncompressed tar archive of a model folder.
    Tar,
}

impl UploadKind {
    /// Detects the kind from the file's magic bytes, falling back to the
    /// name's extension for ONNX files (which have no magic number).
    pub fn detect(file_name: &str, head: &[u8]) -> Result<Self, ArchiveError> {
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            return Ok(Self::Zip);
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            return Ok(Self::TarGz);
        }
        if head.get(257..262) == Some(b"ustar".as_slice()) {
            return Ok(Self::Tar);
        }
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".onnx") {
            return Ok(Self::Onnx);
        }
        Err(ArchiveError::UnknownFormat {
            file_name: file_name.to_owned(),
        })
    }
}

/// An uploaded model file, identified by the sha256 of its bytes.
#[derive(Clone)]
pub struct UploadedModel {
    file_name: String,
    sha256: String,
    content: UploadContent,
}

#[derive(Clone)]
enum UploadContent {
    Bytes(Bytes),
    File(Arc<PathBuf>),
}

impl UploadedModel {
    /// An upload held in memory. Hashes the bytes, so call it off the async
    /// runtime (`spawn_blocking`) for large uploads.
    pub fn from_bytes(file_name: impl Into<String>, bytes: Bytes) -> Self {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Self {
            file_name: file_name.into(),
            sha256,
            content: UploadContent::Bytes(bytes),
        }
    }

    /// An upload saved to a file, which must stay in place until the upload
    /// has been materialized. Hashes the file on a blocking thread.
    pub async fn from_file(
        file_name: impl Into<String>,
        path: PathBuf,
    ) -> Result<Self, ArchiveError> {
        let hash_path = path.clone();
        let sha256 = tokio::task::spawn_blocking(move || -> Result<String, ArchiveError> {
            let mut file =
                fs::File::open(&hash_path).map_err(|e| ArchiveError::io(&hash_path, e))?;
            let mut hasher = Sha256::new();
            io::copy(&mut file, &mut hasher).map_err(|e| ArchiveError::io(&hash_path, e))?;
            Ok(hex::encode(hasher.finalize()))
        })
        .await
        .map_err(|e| ArchiveError::Corrupt {
            detail: format!("hashing was interrupted: {e}"),
        })??;
        Ok(Self {
            file_name: file_name.into(),
            sha256,
            content: UploadContent::File(Arc::new(path)),
        })
    }

    /// The name the file was uploaded under.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Lower-case hex sha256 of the uploaded bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// `upload:<sha256>`: how a backend config refers to this upload once it
    /// is in the cache.
    pub fn uri(&self) -> ModelUri {
        ModelUri::Upload {
            sha256: self.sha256.clone(),
        }
    }

    /// The upload's size in bytes.
    fn len(&self) -> Result<u64, ArchiveError> {
        match &self.content {
            UploadContent::Bytes(bytes) => Ok(bytes.len() as u64),
            UploadContent::File(path) => fs::metadata(path.as_ref())
                .map(|m| m.len())
                .map_err(|e| ArchiveError::io(path.as_ref(), e)),
        }
    }

    fn open(&self) -> Result<Box<dyn ReadSeek>, ArchiveError> {
        Ok(match &self.content {
            UploadContent::Bytes(bytes) => Box::new(Cursor::new(bytes.clone())),
            UploadContent::File(path) => Box::new(
                fs::File::open(path.as_ref()).map_err(|e| ArchiveError::io(path.as_ref(), e))?,
            ),
        })
    }
}

impl fmt::Debug for UploadedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadedModel")
            .field("file_name", &self.file_name)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// One file written by [`unpack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedFile {
    /// Path relative to the destination, `/`-separated.
    pub path: String,
    /// Bytes written.
    pub size: u64,
    /// Lower-case hex sha256 of the bytes written.
    pub sha256: String,
}

/// The result of [`unpack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The folder holding `MLmodel` (or the `.onnx` file), relative to the
    /// destination; empty for the destination itself.
    pub model_root: String,
    /// Every file written.
    pub files: Vec<UnpackedFile>,
}

/// Why an upload cannot be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Neither a known archive nor a `.onnx` file.
    #[error("{file_name:?} is not a .onnx file, .zip, .tar.gz or .tar archive")]
    UnknownFormat {
        /// The uploaded file's name.
        file_name: String,
    },
    /// An entry's path is absolute, has `..` or `\`, or is otherwise unsafe.
    #[error("archive entry {entry:?} would be written outside the model folder")]
    UnsafePath {
        /// The entry's path as stored.
        entry: String,
    },
    /// A symbolic or hard link.
    #[error("archive entry {entry:?} is a link; links are not allowed in uploads")]
    Link {
        /// The entry's path as stored.
        entry: String,
    },
    /// A device, fifo or other special entry.
    #[error("archive entry {entry:?} is a {kind}, not a file or folder")]
    UnsupportedEntry {
        /// The entry's path as stored.
        entry: String,
        /// What it is.
        kind: String,
    },
    /// More entries than [`ArchiveLimits::max_entries`].
    #[error("the archive has more than {limit} entries")]
    TooManyEntries {
        /// The cap.
        limit: usize,
    },
    /// More bytes than [`ArchiveLimits::unpacked_cap`] allows for the upload.
    #[error(
        "the upload ({upload_bytes} bytes) unpacks to more than {limit} bytes, the most \
         allowed for its size (at most {ratio} times the upload or {allowance} bytes, whichever \
         is larger, and never over {absolute} bytes); unpacking stopped there. Upload an \
         archive that is not a decompression bomb, or the .onnx file itself"
    )]
    TooLarge {
        /// The cap that applied to this upload.
        limit: u64,
        /// The upload's size.
        upload_bytes: u64,
        /// [`ArchiveLimits::max_expansion_ratio`].
        ratio: u64,
        /// [`ArchiveLimits::min_unpacked_allowance`].
        allowance: u64,
        /// [`ArchiveLimits::max_unpacked_bytes`].
        absolute: u64,
    },
    /// Two entries with the same path (or a file where a folder is needed).
    #[error("archive entry {entry:?} appears twice or collides with another entry")]
    Duplicate {
        /// The entry's path.
        entry: String,
    },
    /// The archive is damaged, encrypted or uses an unsupported feature.
    #[error("the archive cannot be read: {detail}")]
    Corrupt {
        /// The decoder's message.
        detail: String,
    },
    /// No `MLmodel` and no `.onnx` file where a model folder should be.
    #[error(
        "the archive holds no MLmodel file and no .onnx file at its root or in a single \
         top-level folder (zip or tar the MLflow model folder itself)"
    )]
    NoModel,
    /// Reading the upload or writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Unpacks `upload` into `dest`, an existing empty folder. Blocking: run it
/// with `spawn_blocking`.
pub fn unpack(
    upload: &UploadedModel,
    dest: &Path,
    limits: &ArchiveLimits,
) -> Result<Unpacked, ArchiveError> {
    let mut reader = upload.open()?;
    let mut head = [0u8; 512];
    let head_len = read_up_to(&mut reader, &mut head).map_err(|e| ArchiveError::io(dest, e))?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| ArchiveError::io(dest, e))?;
    let kind = UploadKind::detect(upload.file_name(), &head[..head_len])?;
    let mut writer = Writer::new(dest, limits, upload.len()?);
    match kind {
        UploadKind::Onnx => {
            writer.file(UPLOADED_ONNX_FILE, UPLOADED_ONNX_FILE, &mut reader)?;
        }
        UploadKind::Zip => unpack_zip(reader, &mut writer)?,
        UploadKind::TarGz => {
            check_tar_headers(flate2::read::GzDecoder::new(upload.open()?), &writer)?;
            unpack_tar(flate2::read::GzDecoder::new(reader), &mut writer)?;
        }
        UploadKind::Tar => {
            check_tar_headers(upload.open()?, &writer)?;
            unpack_tar(reader, &mut writer)?;
        }
    }
    let model_root = find_model_root(dest)?;
    Ok(Unpacked {
        model_root,
        files: writer.files,
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes validated entries under `dest`, counting entries and bytes.
struct Writer<'a> {
    dest: &'a Path,
    limits: &'a ArchiveLimits,
    upload_bytes: u64,
    /// Most bytes this upload may write in total.
    cap: u64,
    entries: usize,
    written: u64,
    files: Vec<UnpackedFile>,
}

/// Bytes copied per read while unpacking.
const COPY_CHUNK: usize = 64 << 10;

impl<'a> Writer<'a> {
    fn new(dest: &'a Path, limits: &'a ArchiveLimits, upload_bytes: u64) -> Self {
        Self {
            dest,
            limits,
            upload_bytes,
            cap: limits.unpacked_cap(upload_bytes),
            entries: 0,
            written: 0,
            files: Vec::new(),
        }
    }

    fn too_large(&self) -> ArchiveError {
        ArchiveError::TooLarge {
            limit: self.cap,
            upload_bytes: self.upload_bytes,
            ratio: self.limits.max_expansion_ratio,
            allowance: self.limits.min_unpacked_allowance,
            absolute: self.limits.max_unpacked_bytes,
        }
    }

    fn count_entry(&mut self) -> Result<(), ArchiveError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    fn dir(&mut self, rel: &str, entry: &str) -> Result<(), ArchiveError> {
        let path = self.dest.join(rel);
        if path.is_file() {
            return Err(ArchiveError::Duplicate {
                entry: entry.to_owned(),
            });
        }
        fs::create_dir_all(&path).map_err(|e| ArchiveError::io(&path, e))
    }

    fn file(&mut self, rel: &str, entry: &str, content: &mut dyn Read) -> Result<(), ArchiveError> {
        let path = self.dest.join(rel);
        if let Some(parent) = path.parent() {
            if parent.is_file() {
                return Err(ArchiveError::Duplicate {
                    entry: entry.to_owned(),
                });
            }
            fs::create_dir_all(parent).map_err(|e| ArchiveError::io(parent, e))?;
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => ArchiveError::Duplicate {
                    entry: entry.to_owned(),
                },
                _ => ArchiveError::io(&path, e),
            })?;
        let remaining = self.cap.saturating_sub(self.written);
        let mut out = HashingWriter {
            inner: io::BufWriter::new(file),
            hasher: Sha256::new(),
        };
        let copied = copy_capped(content, &mut out, remaining).map_err(|e| match e {
            CopyError::OverCap => self.too_large(),
            CopyError::Read(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                ArchiveError::Corrupt {
                    detail: format!("{entry}: {e}"),
                }
            }
            CopyError::Read(e) | CopyError::Write(e) => ArchiveError::io(&path, e),
        })?;
        out.inner.flush().map_err(|e| ArchiveError::io(&path, e))?;
        self.written += copied;
        self.files.push(UnpackedFile {
            path: rel.to_owned(),
            size: copied,
            sha256: hex::encode(out.hasher.finalize()),
        });
        Ok(())
    }
}

/// Why [`copy_capped`] stopped.
enum CopyError {
    /// The next chunk would have gone over the cap; it was not written.
    OverCap,
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `to`, writing at most `cap` bytes: a chunk that would
/// cross the cap is refused before it is written, so disk use never exceeds
/// the cap whatever the archive claims.
fn copy_capped(from: &mut dyn Read, to: &mut impl Write, cap: u64) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut copied = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        if copied.saturating_add(n as u64) > cap {
            return Err(CopyError::OverCap);
        }
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        copied += n as u64;
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The safe relative form of an entry path (`a/b/c`), `None` for the root
/// itself (`./`), or an error for anything that could escape.
fn safe_entry_path(raw: &str) -> Result<Option<String>, ArchiveError> {
    let unsafe_path = || ArchiveError::UnsafePath {
        entry: raw.to_owned(),
    };
    if raw.contains('\\') || raw.contains('\0') {
        return Err(unsafe_path());
    }
    let mut parts = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(unsafe_path)?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path());
            }
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// macOS Finder adds `__MACOSX/` resource forks to zips; they are not model
/// files.
fn is_junk(rel: &str) -> bool {
    rel == "__MACOSX" || rel.starts_with("__MACOSX/")
}

fn zip_error(e: zip::result::ZipError) -> ArchiveError {
    ArchiveError::Corrupt {
        detail: e.to_string(),
    }
}

fn unpack_zip(reader: impl Read + Seek, writer: &mut Writer<'_>) -> Result<(), ArchiveError> {
    let mut archive = zip::ZipArchive::new(reader).map_err(zip_error)?;
    if archive.len() > writer.limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            limit: writer.limits.max_entries,
        });
    }
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(zip_error)?;
        let raw = entry.name().to_owned();
        writer.count_entry()?;
        let Some(rel) = safe_entry_path(&raw)? else {
            continue;
        };
        if is_junk(&rel) {
            continue;
        }
        if entry.is_symlink() {
            return Err(ArchiveError::Link { entry: raw });
        }
        if entry.is_dir() {
            writer.dir(&rel, &raw)?;
        } else {
            writer.file(&rel, &raw, &mut entry)?;
        }
    }
    Ok(())
}

/// Reads the headers before the real pass: rejects oversized GNU long-name
/// and PAX records (the `tar` crate reads those into memory), and archives
/// whose entries declare more bytes than the cap, so a tar bomb is refused
/// before it is decompressed in full.
fn check_tar_headers(reader: impl Read, writer: &Writer<'_>) -> Result<(), ArchiveError> {
    let limits = writer.limits;
    let corrupt = |e: io::Error| ArchiveError::Corrupt {
        detail: e.to_string(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(corrupt)?.raw(true);
    let mut declared = 0u64;
    for (count, entry) in entries.enumerate() {
        // Each real entry may carry a long name, a long link name and a PAX
        // record in front of it.
        if count > limits.max_entries.saturating_mul(4) {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        let size = entry.header().entry_size().map_err(corrupt)?;
        declared = declared.saturating_add(size);
        if declared > writer.cap {
            return Err(writer.too_large());
        }
        let is_extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if is_extension && size > MAX_TAR_EXTENSION_BYTES {
            return Err(ArchiveError::Corrupt {
                detail: format!(
                    "a tar extension record is larger than {MAX_TAR_EXTENSION_BYTES} bytes"
                ),
            });
        }
    }
    Ok(())
}

fn unpack_tar(reader: impl Read, writer: &mut Writer<'_>) -> Result<(), ArchiveError> {
    let corrupt = |e: io::Error| ArchiveError::Corrupt {
        detail: e.to_string(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        writer.count_entry()?;
        let Some(rel) = safe_entry_path(&raw)? else {
            continue;
        };
        if is_junk(&rel) {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(ArchiveError::Link { entry: raw });
        }
        if kind.is_dir() {
            writer.dir(&rel, &raw)?;
        } else if kind.is_file() || kind.is_contiguous() {
            writer.file(&rel, &raw, &mut entry)?;
        } else {
            return Err(ArchiveError::UnsupportedEntry {
                entry: raw,
                kind: format!("{kind:?}").to_lowercase(),
            });
        }
    }
    Ok(())
}

/// Finds the model folder: `dest` itself when it holds `MLmodel` or a
/// `.onnx` file, else the single visible folder below it (twice at most).
fn find_model_root(dest: &Path) -> Result<String, ArchiveError> {
    let mut rel: Vec<String> = Vec::new();
    for _ in 0..=MAX_ROOT_DEPTH {
        let here = dest.join(rel.join("/"));
        let listing = fs::read_dir(&here).map_err(|e| ArchiveError::io(&here, e))?;
        let mut dirs = Vec::new();
        let mut has_model = false;
        for item in listing {
            let item = item.map_err(|e| ArchiveError::io(&here, e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let file_type = item.file_type().map_err(|e| ArchiveError::io(&here, e))?;
            if file_type.is_file()
                && (name == MLMODEL_FILE || name.to_ascii_lowercase().ends_with(".onnx"))
            {
                has_model = true;
            } else if file_type.is_dir() && !name.starts_with('.') && name != "__MACOSX" {
                dirs.push(name);
            }
        }
        if has_model {
            return Ok(rel.join("/"));
        }
        match dirs.as_slice() {
            [only] => rel.push(only.clone()),
            _ => break,
        }
    }
    Err(ArchiveError::NoModel)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MLMODEL: &str = "flavors:\n  onnx:\n    data: model.onnx\n";

    fn zip_of(entries: &[(&str, &[u8])]) -> Bytes {
        let mut out = Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (name, data) in entries {
                if name.ends_with('/') {
                    zip.add_directory(*name, opts).unwrap();
                } else {
                    zip.start_file(*name, opts).unwrap();
                    zip.write_all(data).unwrap();
                }
            }
            zip.finish().unwrap();
        }
        Bytes::from(out.into_inner())
    }

    /// A tar.gz whose headers are written by hand, so hostile paths and
    /// entry types reach the archive unchanged.
    fn tar_gz_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Bytes {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            let name_bytes = name.as_bytes();
            header.as_old_mut().name[..name_bytes.len()].copy_from_slice(name_bytes);
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            if kind.is_symlink() || kind.is_hard_link() {
                header.set_link_name("/etc/passwd").unwrap();
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        Bytes::from(gz.finish().unwrap())
    }

    fn unpack_bytes(
        name: &str,
        bytes: Bytes,
    ) -> (tempfile::TempDir, Result<Unpacked, ArchiveError>) {
        unpack_limited(name, bytes, &ArchiveLimits::default())
    }

    fn unpack_limited(
        name: &str,
        bytes: Bytes,
        limits: &ArchiveLimits,
    ) -> (tempfile::TempDir, Result<Unpacked, ArchiveError>) {
        let dir = tempfile::tempdir().unwrap();
        let upload = UploadedModel::from_bytes(name, bytes);
        let result = unpack(&upload, dir.path(), limits);
        (dir, result)
    }

    #[test]
    fn a_zip_of_a_model_folder_unpacks_with_hashes() {
        let (dir, result) = unpack_bytes(
            "model.zip",
            zip_of(&[
                ("model/", b""),
                ("model/MLmodel", MLMODEL.as_bytes()),
                ("model/model.onnx", b"onnx-bytes"),
                ("model/f4688252.data", b"weights"),
                ("__MACOSX/model/._MLmodel", b"junk"),
            ]),
        );
        let unpacked = result.unwrap();
        assert_eq!(unpacked.model_root, "model");
        assert_eq!(unpacked.files.len(), 3);
        let onnx = unpacked
            .files
            .iter()
            .find(|f| f.path == "model/model.onnx")
            .unwrap();
        assert_eq!(onnx.size, 10);
        assert_eq!(onnx.sha256, hex::encode(Sha256::digest(b"onnx-bytes")));
        assert_eq!(
            fs::read(dir.path().join("model/f4688252.data")).unwrap(),
            b"weights"
        );
        assert!(!dir.path().join("__MACOSX").exists());
    }

    #[test]
    fn a_tar_gz_with_dot_slash_paths_unpacks_at_the_root() {
        let (_dir, result) = unpack_bytes(
            "upload.bin",
            tar_gz_of(&[
                ("./", tar::EntryType::Directory, b""),
                ("./MLmodel", tar::EntryType::Regular, MLMODEL.as_bytes()),
                ("./model.onnx", tar::EntryType::Regular, b"x"),
            ]),
        );
        let unpacked = result.unwrap();
        assert_eq!(unpacked.model_root, "");
        assert_eq!(unpacked.files.len(), 2);
    }

    #[test]
    fn a_bare_onnx_upload_is_stored_as_model_onnx() {
        let (dir, result) = unpack_bytes("resnet.onnx", Bytes::from_static(b"\x08\x07onnx"));
        let unpacked = result.unwrap();
        assert_eq!(unpacked.model_root, "");
        assert_eq!(unpacked.files[0].path, UPLOADED_ONNX_FILE);
        assert!(dir.path().join(UPLOADED_ONNX_FILE).is_file());
    }

    #[test]
    fn path_traversal_is_refused_in_zip_and_tar() {
        for name in ["../evil", "model/../../evil", "/etc/evil", "a\\..\\evil"] {
            let (dir, result) = unpack_bytes("m.zip", zip_of(&[(name, b"x")]));
            assert!(
                matches!(result, Err(ArchiveError::UnsafePath { .. })),
                "{name}: {result:?}"
            );
            assert!(!dir.path().parent().unwrap().join("evil").exists());
            let (_dir, result) = unpack_bytes(
                "m.tar.gz",
                tar_gz_of(&[(name, tar::EntryType::Regular, b"x")]),
            );
            assert!(
                matches!(result, Err(ArchiveError::UnsafePath { .. })),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn links_and_special_entries_are_refused() {
        for kind in [tar::EntryType::Symlink, tar::EntryType::Link] {
            let (_dir, result) = unpack_bytes("m.tgz", tar_gz_of(&[("model.onnx", kind, b"")]));
            assert!(
                matches!(result, Err(ArchiveError::Link { .. })),
                "{result:?}"
            );
        }
        let (_dir, result) =
            unpack_bytes("m.tgz", tar_gz_of(&[("dev", tar::EntryType::Char, b"")]));
        assert!(
            matches!(result, Err(ArchiveError::UnsupportedEntry { .. })),
            "{result:?}"
        );

        let mut out = Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            zip.add_symlink(
                "model.onnx",
                "/etc/passwd",
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            zip.finish().unwrap();
        }
        let (_dir, result) = unpack_bytes("m.zip", Bytes::from(out.into_inner()));
        assert!(
            matches!(result, Err(ArchiveError::Link { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn size_and_entry_caps_count_what_is_actually_written() {
        // Highly compressible: tiny archive, large output.
        let big = vec![0u8; 1 << 20];
        let limits = ArchiveLimits {
            max_unpacked_bytes: 1000,
            max_entries: 3,
            ..ArchiveLimits::default()
        };
        let (_dir, result) = unpack_limited("m.zip", zip_of(&[("model.onnx", &big)]), &limits);
        assert!(
            matches!(result, Err(ArchiveError::TooLarge { limit: 1000, .. })),
            "{result:?}"
        );
        let (_dir, result) = unpack_limited(
            "m.tgz",
            tar_gz_of(&[("model.onnx", tar::EntryType::Regular, &big)]),
            &limits,
        );
        assert!(
            matches!(result, Err(ArchiveError::TooLarge { .. })),
            "{result:?}"
        );
        let (_dir, result) = unpack_limited("m.onnx", Bytes::from(big), &limits);
        assert!(
            matches!(result, Err(ArchiveError::TooLarge { .. })),
            "{result:?}"
        );

        let many: Vec<(String, &[u8])> = (0..4)
            .map(|i| (format!("f{i}.onnx"), b"x".as_slice()))
            .collect();
        let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let (_dir, result) = unpack_limited("m.zip", zip_of(&refs), &limits);
        assert!(
            matches!(result, Err(ArchiveError::TooManyEntries { limit: 3 })),
            "{result:?}"
        );
        let tar_entries: Vec<(&str, tar::EntryType, &[u8])> = refs
            .iter()
            .map(|(n, d)| (*n, tar::EntryType::Regular, *d))
            .collect();
        let (_dir, result) = unpack_limited("m.tgz", tar_gz_of(&tar_entries), &limits);
        assert!(
            matches!(result, Err(ArchiveError::TooManyEntries { limit: 3 })),
            "{result:?}"
        );
    }

    /// Bytes of every file under `dir`.
    fn disk_bytes(dir: &Path) -> u64 {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| {
                let meta = e.metadata().unwrap();
                if meta.is_dir() {
                    disk_bytes(&e.path())
                } else {
                    meta.len()
                }
            })
            .sum()
    }

    #[test]
    fn the_unpacked_cap_grows_with_the_upload_between_the_allowance_and_the_absolute_cap() {
        let limits = ArchiveLimits::default();
        assert_eq!(limits.unpacked_cap(0), 256 << 20);
        assert_eq!(limits.unpacked_cap(1 << 20), 256 << 20);
        assert_eq!(limits.unpacked_cap(100 << 20), 5000 << 20);
        assert_eq!(limits.unpacked_cap(1 << 30), DEFAULT_MAX_UNPACKED_BYTES);
        assert_eq!(limits.unpacked_cap(u64::MAX), DEFAULT_MAX_UNPACKED_BYTES);
    }

    #[test]
    fn a_zip_bomb_is_refused_with_a_clear_message_and_writes_no_more_than_the_cap() {
        // 16 MiB of zeros deflate to a few KiB: far more than 50 times.
        let zeros = vec![0u8; 16 << 20];
        let bomb = zip_of(&[("model.onnx", &zeros)]);
        assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
        let limits = ArchiveLimits {
            min_unpacked_allowance: 1 << 20,
            ..ArchiveLimits::default()
        };
        let cap = limits.unpacked_cap(bomb.len() as u64);
        assert_eq!(cap, 1 << 20);
        let (dir, result) = unpack_limited("bomb.zip", bomb, &limits);
        let err = result.unwrap_err();
        assert!(
            matches!(err, ArchiveError::TooLarge { limit, .. } if limit == cap),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("unpacks to more than 1048576 bytes")
                && message.contains("50 times the upload"),
            "{message}"
        );
        let written = disk_bytes(dir.path());
        assert!(written <= cap, "{written} bytes written, cap {cap}");
    }

    #[test]
    fn a_tar_gz_bomb_is_refused_from_its_headers_before_anything_is_written() {
        let zeros = vec![0u8; 16 << 20];
        let bomb = tar_gz_of(&[("model.onnx", tar::EntryType::Regular, &zeros)]);
        let limits = ArchiveLimits {
            min_unpacked_allowance: 1 << 20,
            ..ArchiveLimits::default()
        };
        let (dir, result) = unpack_limited("bomb.tar.gz", bomb, &limits);
        assert!(
            matches!(result, Err(ArchiveError::TooLarge { .. })),
            "{result:?}"
        );
        assert_eq!(disk_bytes(dir.path()), 0);
    }

    #[test]
    fn duplicate_entries_do_not_overwrite() {
        let (_dir, result) = unpack_bytes(
            "m.tgz",
            tar_gz_of(&[
                ("model.onnx", tar::EntryType::Regular, b"good"),
                ("model.onnx", tar::EntryType::Regular, b"evil"),
            ]),
        );
        assert!(
            matches!(result, Err(ArchiveError::Duplicate { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn archives_without_a_model_and_unknown_files_are_refused() {
        let (_dir, result) = unpack_bytes("m.zip", zip_of(&[("a/x.txt", b"x"), ("b/y.txt", b"y")]));
        assert!(matches!(result, Err(ArchiveError::NoModel)), "{result:?}");
        let (_dir, result) = unpack_bytes("notes.txt", Bytes::from_static(b"hello"));
        assert!(
            matches!(result, Err(ArchiveError::UnknownFormat { .. })),
            "{result:?}"
        );
        let (_dir, result) = unpack_bytes("m.zip", Bytes::from_static(b"PK\x03\x04garbage"));
        assert!(
            matches!(result, Err(ArchiveError::Corrupt { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn uploads_from_files_hash_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.onnx");
        fs::write(&path, b"abc").unwrap();
        let upload = UploadedModel::from_file("up.onnx", path).await.unwrap();
        assert_eq!(upload.sha256(), hex::encode(Sha256::digest(b"abc")));
        assert_eq!(
            upload.sha256(),
            UploadedModel::from_bytes("x", Bytes::from_static(b"abc")).sha256()
        );
    }
}
