//! Content type of a fetched file: the server's `Content-Type` when it says
//! something specific, else the file's magic bytes, else its extension.

/// Header values that say nothing about the content (S3 answers
/// `binary/octet-stream` for objects uploaded without a type).
const GENERIC: [&str; 3] = [
    "application/octet-stream",
    "binary/octet-stream",
    "application/unknown",
];

/// The fallback when nothing identifies the file.
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";

/// Picks the content type: a specific `header` wins (returned trimmed, with
/// its parameters), then [`magic`], then [`by_extension`] of `name` (a path or
/// file name), then `application/octet-stream`.
pub(crate) fn content_type(header: Option<&str>, bytes: &[u8], name: &str) -> String {
    if let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) {
        let essence = h.split(';').next().unwrap_or(h).trim().to_ascii_lowercase();
        if !GENERIC.contains(&essence.as_str()) {
            return h.to_owned();
        }
    }
    magic(bytes)
        .or_else(|| by_extension(name))
        .unwrap_or(OCTET_STREAM)
        .to_owned()
}

/// The media type announced by a file's first bytes, for the image, audio
/// and video formats Label Studio tasks carry.
pub fn magic(b: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, sig: &[u8]| b.get(offset..offset + sig.len()) == Some(sig);
    if at(0, b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if at(0, b"\xFF\xD8\xFF") {
        Some("image/jpeg")
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Some("image/gif")
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Some("image/webp")
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        Some("audio/wav")
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        Some("video/x-msvideo")
    } else if at(0, b"II*\0") || at(0, b"MM\0*") {
        Some("image/tiff")
    } else if at(0, b"BM") && b.len() >= 14 {
        Some("image/bmp")
    } else if at(0, b"ID3") {
        Some("audio/mpeg")
    } else if at(0, b"fLaC") {
        Some("audio/flac")
    } else if at(0, b"OggS") {
        Some("audio/ogg")
    } else if at(0, b"\x1A\x45\xDF\xA3") {
        Some("video/webm")
    } else if at(0, b"%PDF-") {
        Some("application/pdf")
    } else if at(4, b"ftyp") {
        ftyp(b.get(8..12).unwrap_or_default())
    } else if b.len() >= 2 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0 {
        // MPEG audio frame sync: layer bits 00 mean AAC in ADTS framing.
        if b[1] & 0x06 == 0 {
            Some("audio/aac")
        } else {
            Some("audio/mpeg")
        }
    } else {
        None
    }
}

/// ISO base media files (`....ftyp<brand>`): the brand tells still images,
/// audio-only and video apart.
fn ftyp(brand: &[u8]) -> Option<&'static str> {
    match brand {
        b"avif" | b"avis" => Some("image/avif"),
        b"heic" | b"heix" | b"mif1" | b"msf1" => Some("image/heic"),
        b"M4A " | b"M4B " => Some("audio/mp4"),
        b"qt  " => Some("video/quicktime"),
        _ => Some("video/mp4"),
    }
}

/// The media type conventionally meant by `name`'s extension.
pub(crate) fn by_extension(name: &str) -> Option<&'static str> {
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (_, ext) = file.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" | "jpe" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "avif" => "image/avif",
        "heic" => "image/heic",
        "svg" => "image/svg+xml",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_header_wins_over_the_bytes() {
        let png = b"\x89PNG\r\n\x1a\n....";
        assert_eq!(
            content_type(Some("image/jpeg; q=1"), png, "a.gif"),
            "image/jpeg; q=1"
        );
    }

    #[test]
    fn generic_headers_fall_back_to_magic_then_extension() {
        let png = b"\x89PNG\r\n\x1a\n....";
        assert_eq!(
            content_type(Some("binary/octet-stream"), png, "x"),
            "image/png"
        );
        assert_eq!(content_type(None, b"????", "/dir/a.WAV"), "audio/wav");
        assert_eq!(content_type(Some(""), b"", "noext"), OCTET_STREAM);
    }

    #[test]
    fn magic_bytes_identify_common_task_formats() {
        let cases: [(&[u8], &str); 14] = [
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", "image/jpeg"),
            (b"GIF89a\x01\0", "image/gif"),
            (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
            (b"RIFF\0\0\0\0WAVEfmt ", "audio/wav"),
            (b"II*\0\x08\0\0\0", "image/tiff"),
            (b"MM\0*\0\0\0\x08", "image/tiff"),
            (b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0", "image/bmp"),
            (b"ID3\x04\0\0\0\0\0\0", "audio/mpeg"),
            (b"\xFF\xFB\x90\x64", "audio/mpeg"),
            (b"\xFF\xF1\x50\x80", "audio/aac"),
            (b"fLaC\0\0\0\x22", "audio/flac"),
            (b"OggS\0\x02", "audio/ogg"),
            (b"\0\0\0\x20ftypisom\0\0", "video/mp4"),
            (b"\0\0\0\x1cftypavif\0\0", "image/avif"),
        ];
        for (bytes, want) in cases {
            assert_eq!(magic(bytes), Some(want), "{bytes:?}");
        }
        assert_eq!(magic(b"hello"), None);
        assert_eq!(magic(b""), None);
    }

    #[test]
    fn extensions_are_read_from_the_last_path_segment() {
        assert_eq!(by_extension("s3://b/k/photo.JPG"), Some("image/jpeg"));
        assert_eq!(by_extension("dir.d/file"), None);
        assert_eq!(by_extension("a.unknown"), None);
    }
}
