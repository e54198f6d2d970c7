//! What a task value points at, decided without any I/O: inline `data:`
//! bytes, a file on Label Studio, a cloud object Label Studio resolves, or a
//! plain web URL. Also decodes `data:` URIs and holds the caching rule.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use bytes::Bytes;
use url::Url;

use super::error::FetchError;

/// URI schemes Label Studio's cloud storages put into task data.
pub(crate) const CLOUD_SCHEMES: [&str; 4] = ["s3", "gs", "azure-blob", "azure-spi"];

/// Longest value shown in error messages before it is abbreviated.
const SHOWN: usize = 120;

/// Where a value's bytes come from, with everything the download needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Inline bytes from a `data:` URI (already decoded).
    Inline {
        /// The decoded bytes.
        bytes: Bytes,
        /// The URI's media type, if it had one.
        media_type: Option<String>,
        /// The URI abbreviated to its header, for [`super::Fetched::uri`].
        shown: String,
    },
    /// An HTTP(S) download.
    Remote(Remote),
}

/// An HTTP(S) download plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remote {
    /// The first URL requested.
    pub url: Url,
    /// How errors name the download (the URL, or the cloud URI and the
    /// Label Studio endpoint resolving it).
    pub label: String,
    /// What [`super::Fetched::uri`] reports.
    pub uri: String,
    /// The file name used to guess the type from its extension.
    pub name: String,
    /// The kind of download, which decides caching and error hints.
    pub kind: Kind,
}

/// The kind of a [`Remote`] download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A Label Studio upload, `/data/upload/…`: immutable, cached.
    Upload,
    /// Label Studio local-files storage, `/data/local-files/?d=…`.
    LocalFiles,
    /// Any other URL on the Label Studio host.
    LabelStudio,
    /// A cloud URI fetched through Label Studio's resolve endpoint.
    Cloud,
    /// A URL on another host; `immutable` per [`looks_immutable`].
    Web {
        /// Whether the URL names its content by hash, so it may be cached.
        immutable: bool,
    },
}

impl Kind {
    /// Whether downloads of this kind are cached and served from the cache
    /// without asking the origin again.
    ///
    /// The rule: only URLs whose bytes can never change — Label Studio
    /// uploads (`/data/upload/<project>/<8 hex>-<name>`: Label Studio never
    /// reuses an upload path) and other URLs that carry a content hash or a
    /// UUID in their path.
    pub(crate) fn cacheable(self) -> bool {
        matches!(self, Kind::Upload | Kind::Web { immutable: true })
    }

    /// Whether downloads of this kind are cached as HTTP allows
    /// (`Cache-Control`, `Expires`) and revalidated with their `ETag` or
    /// `Last-Modified`: URLs that keep naming the same file while its bytes
    /// may change. Cloud objects are not: their presigned URLs change on
    /// every resolve, so no cached copy would ever be asked for again.
    pub(crate) fn revalidatable(self) -> bool {
        matches!(
            self,
            Kind::LocalFiles | Kind::LabelStudio | Kind::Web { immutable: false }
        )
    }
}

/// Classifies a task value (already trimmed).
///
/// `ls` is the Label Studio base URL (configured, or the `/setup` fallback);
/// `task_id` is needed for cloud URIs.
pub(crate) fn classify(
    value: &str,
    ls: Option<&Url>,
    task_id: Option<i64>,
    max_bytes: u64,
) -> Result<Source, FetchError> {
    if value
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("data:"))
    {
        return decode_data_uri(value, max_bytes);
    }
    if value.starts_with("//") {
        return Err(unsupported(
            value,
            "protocol-relative URLs are not supported; give the scheme (http:// or https://)",
        ));
    }
    if value.starts_with('/') {
        let Some(ls) = ls else {
            return Err(FetchError::NoLabelStudioUrl {
                what: format!("relative URL {}", abbreviate(value)),
            });
        };
        let url = Url::parse(&format!("{}{value}", base(ls)))
            .map_err(|e| unsupported(value, &format!("not a valid path on Label Studio: {e}")))?;
        let kind = ls_kind(&url, ls);
        let name = file_name(&url);
        return Ok(Source::Remote(Remote {
            label: url.to_string(),
            uri: url.to_string(),
            url,
            name,
            kind,
        }));
    }
    let url = Url::parse(value).map_err(|_| {
        unsupported(
            value,
            "not an http(s) URL, a /data/… path on Label Studio, a cloud URI (s3://, gs://, azure-blob://, azure-spi://) or a data: URI",
        )
    })?;
    match url.scheme() {
        "http" | "https" => {
            let kind = match ls {
                Some(ls) if same_origin(&url, ls) => ls_kind(&url, ls),
                _ => Kind::Web {
                    immutable: looks_immutable(&url),
                },
            };
            let name = file_name(&url);
            Ok(Source::Remote(Remote {
                label: url.to_string(),
                uri: url.to_string(),
                url,
                name,
                kind,
            }))
        }
        scheme if CLOUD_SCHEMES.contains(&scheme) => {
            let Some(ls) = ls else {
                return Err(FetchError::NoLabelStudioUrl {
                    what: format!(
                        "cloud URI {} is resolved through Label Studio,",
                        abbreviate(value)
                    ),
                });
            };
            let Some(task_id) = task_id else {
                return Err(FetchError::NoTaskId {
                    uri: abbreviate(value),
                });
            };
            let mut resolve = Url::parse(&format!("{}/tasks/{task_id}/resolve/", base(ls)))
                .map_err(|e| unsupported(value, &format!("building the resolve URL: {e}")))?;
            resolve
                .query_pairs_mut()
                .append_pair("fileuri", &general_purpose::URL_SAFE.encode(value));
            Ok(Source::Remote(Remote {
                label: format!(
                    "{value} (resolved by Label Studio at {}/tasks/{task_id}/resolve/)",
                    base(ls)
                ),
                uri: value.to_owned(),
                name: value.to_owned(),
                url: resolve,
                kind: Kind::Cloud,
            }))
        }
        scheme => Err(unsupported(
            value,
            &format!("the {scheme}: scheme is not supported"),
        )),
    }
}

/// The Label Studio base URL as a prefix: no trailing slash, no query.
pub(crate) fn base(ls: &Url) -> String {
    let mut u = ls.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.as_str().trim_end_matches('/').to_owned()
}

/// Scheme, host and port (with the scheme's default) are equal: the rule
/// for sending Label Studio credentials.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The kind of a URL known to be on the Label Studio host.
fn ls_kind(url: &Url, ls: &Url) -> Kind {
    let prefix = ls.path().trim_end_matches('/');
    let path = url.path().strip_prefix(prefix).unwrap_or(url.path());
    if path.starts_with("/data/upload/") {
        Kind::Upload
    } else if path.starts_with("/data/local-files") {
        Kind::LocalFiles
    } else {
        Kind::LabelStudio
    }
}

/// The part of a URL that names the file: the last path segment, or for
/// Label Studio's `?d=`/`?fileuri=` style URLs the query value.
fn file_name(url: &Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    if last.contains('.') {
        return last.to_owned();
    }
    url.query_pairs()
        .find(|(k, _)| k == "d")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| last.to_owned())
}

/// Whether a web URL names immutable content: some path segment holds a
/// UUID or a run of at least 32 hex digits (an MD5/SHA content hash), as
/// content-addressed stores and CDNs do.
pub(crate) fn looks_immutable(url: &Url) -> bool {
    url.path_segments()
        .into_iter()
        .flatten()
        .any(|seg| has_uuid(seg) || longest_hex_run(seg) >= 32)
}

fn longest_hex_run(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

fn has_uuid(s: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let b = s.as_bytes();
    (0..b.len()).any(|start| {
        let mut i = start;
        for (n, len) in GROUPS.iter().enumerate() {
            if n > 0 {
                if b.get(i) != Some(&b'-') {
                    return false;
                }
                i += 1;
            }
            match b.get(i..i + len) {
                Some(group) if group.iter().all(u8::is_ascii_hexdigit) => i += len,
                _ => return false,
            }
        }
        true
    })
}

/// Base64 that accepts padding or none, as `data:` URIs in the wild do.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes `data:[<media type>][;base64],<data>` (RFC 2397). Base64 may be
/// padded or not, use the URL-safe alphabet, be percent-encoded or contain
/// whitespace; other data is percent-decoded.
pub(crate) fn decode_data_uri(value: &str, max_bytes: u64) -> Result<Source, FetchError> {
    let rest = &value[5..];
    let Some((meta, data)) = rest.split_once(',') else {
        return Err(FetchError::InvalidDataUri {
            value: abbreviate(value),
            reason: "no ',' separates the media type from the data".into(),
        });
    };
    let (media, is_base64) = match meta.rsplit_once(';') {
        Some((m, last)) if last.trim().eq_ignore_ascii_case("base64") => (m, true),
        _ if meta.trim().eq_ignore_ascii_case("base64") => ("", true),
        _ => (meta, false),
    };
    let media = media.trim();
    let shown = format!("data:{meta},…");
    let too_large = |size| FetchError::TooLarge {
        url: shown.clone(),
        size: Some(size),
        limit: max_bytes,
    };
    // Reject before decoding: base64 decodes to 3/4 of its length, anything
    // else to at most its length.
    let estimate = if is_base64 {
        data.len() as u64 / 4 * 3
    } else {
        data.len() as u64 / 3
    };
    if estimate > max_bytes {
        return Err(too_large(estimate));
    }
    let bytes = if is_base64 {
        let text: Vec<u8> = percent_encoding::percent_decode_str(data)
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        LENIENT
            .decode(&text)
            .or_else(|_| LENIENT_URL_SAFE.decode(&text))
            .map_err(|e| FetchError::InvalidDataUri {
                value: shown.clone(),
                reason: format!("bad base64: {e}"),
            })?
    } else {
        percent_encoding::percent_decode_str(data).collect()
    };
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(Source::Inline {
        bytes: Bytes::from(bytes),
        media_type: (media.contains('/')).then(|| media.to_owned()),
        shown,
    })
}

fn unsupported(value: &str, reason: &str) -> FetchError {
    FetchError::Unsupported {
        value: abbreviate(value),
        reason: reason.to_owned(),
    }
}

/// Shortens a value for an error message (`data:` URIs can be megabytes).
pub(crate) fn abbreviate(value: &str) -> String {
    if value.len() <= SHOWN {
        return value.to_owned();
    }
    let mut end = SHOWN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls() -> Url {
        Url::parse("http://127.0.0.1:8089").expect("literal URL")
    }

    fn remote(value: &str, ls: Option<&Url>, task: Option<i64>) -> Remote {
        match classify(value, ls, task, 1_000) {
            Ok(Source::Remote(r)) => r,
            other => panic!("{value}: {other:?}"),
        }
    }

    #[test]
    fn relative_upload_paths_join_onto_label_studio() {
        let r = remote("/data/upload/1/abc-x.png", Some(&ls()), None);
        assert_eq!(
            r.url.as_str(),
            "http://127.0.0.1:8089/data/upload/1/abc-x.png"
        );
        assert_eq!(r.kind, Kind::Upload);
        assert!(r.kind.cacheable());
        assert_eq!(r.name, "abc-x.png");
    }

    #[test]
    fn label_studio_path_prefixes_are_kept() {
        let ls = Url::parse("https://example.com/ls/").expect("literal URL");
        let r = remote("/data/upload/1/a.png", Some(&ls), None);
        assert_eq!(r.url.as_str(), "https://example.com/ls/data/upload/1/a.png");
        assert_eq!(r.kind, Kind::Upload);
    }

    #[test]
    fn local_files_keep_their_query_and_are_not_cached() {
        let r = remote("/data/local-files/?d=dir/my%20img.jpg", Some(&ls()), None);
        assert_eq!(
            r.url.as_str(),
            "http://127.0.0.1:8089/data/local-files/?d=dir/my%20img.jpg"
        );
        assert_eq!(r.kind, Kind::LocalFiles);
        assert!(!r.kind.cacheable());
        assert_eq!(r.name, "dir/my img.jpg");
    }

    #[test]
    fn relative_urls_without_label_studio_say_what_to_set() {
        let e = classify("/data/upload/1/a.png", None, None, 10).expect_err("no LS");
        assert_eq!(
            e.to_string(),
            "relative URL /data/upload/1/a.png but no Label Studio URL is configured (set LABEL_STUDIO_URL)"
        );
    }

    #[test]
    fn absolute_urls_on_the_label_studio_origin_are_label_studio_downloads() {
        let r = remote(
            "http://127.0.0.1:8089/data/upload/2/b.jpg",
            Some(&ls()),
            None,
        );
        assert_eq!(r.kind, Kind::Upload);
        let r = remote(
            "http://127.0.0.1:9999/data/upload/2/b.jpg",
            Some(&ls()),
            None,
        );
        assert_eq!(r.kind, Kind::Web { immutable: false });
    }

    #[test]
    fn cloud_uris_go_through_the_task_resolve_endpoint() {
        let r = remote("s3://bucket/dir/a.png", Some(&ls()), Some(7));
        assert_eq!(r.kind, Kind::Cloud);
        let (k, v) = r.url.query_pairs().next().expect("fileuri");
        assert_eq!(k, "fileuri");
        let decoded = general_purpose::URL_SAFE
            .decode(v.as_bytes())
            .expect("base64");
        assert_eq!(decoded, b"s3://bucket/dir/a.png");
        assert_eq!(r.url.path(), "/tasks/7/resolve/");
        assert_eq!(r.uri, "s3://bucket/dir/a.png");
        for v in ["gs://b/k.wav", "azure-blob://c/k", "azure-spi://c/k"] {
            assert_eq!(remote(v, Some(&ls()), Some(1)).kind, Kind::Cloud);
        }
    }

    #[test]
    fn cloud_uris_need_a_task_id_and_label_studio() {
        let e = classify("gs://b/k", Some(&ls()), None, 10).expect_err("no task");
        assert!(matches!(e, FetchError::NoTaskId { .. }), "{e}");
        let e = classify("gs://b/k", None, Some(1), 10).expect_err("no LS");
        assert!(e.to_string().contains("set LABEL_STUDIO_URL"), "{e}");
    }

    #[test]
    fn unknown_schemes_and_bare_paths_are_refused() {
        for v in [
            "file:///etc/passwd",
            "ftp://h/x",
            "images/a.png",
            "hello world",
            "//h/x",
        ] {
            let e = classify(v, Some(&ls()), Some(1), 10).expect_err(v);
            assert!(matches!(e, FetchError::Unsupported { .. }), "{v}: {e}");
        }
    }

    #[test]
    fn hashes_and_uuids_in_paths_look_immutable() {
        let u = |s| Url::parse(s).expect("literal URL");
        assert!(looks_immutable(&u(
            "https://cdn/x/d41d8cd98f00b204e9800998ecf8427e.png"
        )));
        assert!(looks_immutable(&u(
            "https://cdn/123e4567-e89b-12d3-a456-426614174000/img.jpg"
        )));
        assert!(!looks_immutable(&u("https://cdn/images/cat.jpg")));
        assert!(!looks_immutable(&u("https://cdn/deadbeef-a.jpg")));
    }

    fn inline(value: &str) -> (Vec<u8>, Option<String>) {
        match decode_data_uri(value, 1_000) {
            Ok(Source::Inline {
                bytes, media_type, ..
            }) => (bytes.to_vec(), media_type),
            other => panic!("{value}: {other:?}"),
        }
    }

    #[test]
    fn data_uris_decode_base64_and_percent_encoding() {
        assert_eq!(
            inline("data:image/png;base64,iVBORw0KGgo="),
            (b"\x89PNG\r\n\x1a\n".to_vec(), Some("image/png".into()))
        );
        // Unpadded, URL-safe, percent-encoded and wrapped base64 all decode.
        assert_eq!(inline("data:;base64,aGk").0, b"hi");
        assert_eq!(inline("data:;base64,-_8").0, [0xfb, 0xff]);
        assert_eq!(inline("data:;base64,aG%6B%3D").0, b"hi");
        assert_eq!(inline("data:;base64,aG\nk=").0, b"hi");
        assert_eq!(
            inline("data:text/plain;charset=utf-8,caf%C3%A9%20au%20lait"),
            (
                "café au lait".as_bytes().to_vec(),
                Some("text/plain;charset=utf-8".into())
            )
        );
        assert_eq!(inline("data:,plain").1, None);
    }

    #[test]
    fn broken_data_uris_say_why() {
        let e = decode_data_uri("data:image/png;base64", 10).expect_err("no comma");
        assert!(e.to_string().contains("no ','"), "{e}");
        let e = decode_data_uri("data:image/png;base64,@@@@", 10).expect_err("bad b64");
        assert!(e.to_string().contains("bad base64"), "{e}");
        assert!(
            e.to_string()
                .starts_with("invalid data: URI data:image/png;base64,…"),
            "{e}"
        );
    }

    #[test]
    fn oversized_data_uris_are_refused_before_decoding() {
        let big = format!("data:;base64,{}", "A".repeat(4_000));
        let e = decode_data_uri(&big, 1_000).expect_err("too big");
        assert_eq!(
            e.to_string(),
            "data:;base64,…: file is 3 kB, over the 1 kB limit (fetch.max_bytes)"
        );
    }
}
