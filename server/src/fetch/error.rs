//! [`FetchError`]: every way turning a task value into bytes can fail, each
//! message naming what was fetched and what to change. No message ever
//! contains the API key or an access token.

/// Why a task value could not be fetched.
///
/// Every variant's message starts with what was being fetched (the URL, the
/// cloud URI or the abbreviated `data:` URI) and ends with the reason and,
/// where one exists, the setting that fixes it. Presigned URLs are shown
/// without their query string, so signatures never reach a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The value is relative to Label Studio (or a cloud URI that Label Studio
    /// resolves) and neither the backend nor the request names Label Studio.
    #[error("{what} but no Label Studio URL is configured (set LABEL_STUDIO_URL)")]
    NoLabelStudioUrl {
        /// What needed Label Studio, e.g. `relative URL /data/upload/1/a.png`.
        what: String,
    },

    /// A cloud URI (`s3://`, `gs://`, …) arrived without the id of its task,
    /// which Label Studio's resolve endpoint needs.
    #[error(
        "cloud URI {uri} is resolved through Label Studio's /tasks/<id>/resolve/, but no task id was given"
    )]
    NoTaskId {
        /// The cloud URI.
        uri: String,
    },

    /// The value is not something this module can fetch (an unknown scheme,
    /// a relative path without a leading `/`, plain text).
    #[error("cannot fetch {value:?}: {reason}")]
    Unsupported {
        /// The value, abbreviated when long.
        value: String,
        /// Why it is not fetchable.
        reason: String,
    },

    /// A `data:` URI that does not decode.
    #[error("invalid data: URI {value}: {reason}")]
    InvalidDataUri {
        /// The URI, abbreviated to its header.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// `fetch.allowed_hosts` is set and this host is not on it (SSRF guard).
    #[error(
        "GET {url}: host {host} is not in fetch.allowed_hosts ({allowed}); only Label Studio and those hosts may be fetched{hint}"
    )]
    HostNotAllowed {
        /// What was being fetched.
        url: String,
        /// The refused host.
        host: String,
        /// The allowed hosts, comma-separated.
        allowed: String,
        /// What to change, starting with ` — `, or empty.
        hint: String,
    },

    /// The destination is a private, loopback, link-local or otherwise
    /// non-public address (the host is an IP literal of that kind, or every
    /// address its name resolves to is), and nothing opted in to reaching
    /// it (SSRF guard). Decided before any connection is attempted, so the
    /// message is the same whether anything listens there.
    #[error(
        "GET {url}: refused: {host} resolves to a private/loopback address; add it to fetch.allowed_hosts or set allow_private_networks (fetch.allow_private_networks for this backend, --allow-private-networks or CLS_ALLOW_PRIVATE_NETWORKS=1 for the server){hint}"
    )]
    PrivateAddress {
        /// What was being fetched, with the redirect hop refused if any.
        url: String,
        /// The refused host as the URL names it.
        host: String,
        /// What to change, starting with ` — `, or empty.
        hint: String,
    },

    /// The file is larger than `fetch.max_bytes`.
    #[error("{url}: {}", too_large(*size, *limit))]
    TooLarge {
        /// What was being fetched (with the method for HTTP, e.g. `GET http://…`).
        url: String,
        /// The size announced by `Content-Length` or known exactly, if any;
        /// `None` when the download was cut off while streaming.
        size: Option<u64>,
        /// The limit, `fetch.max_bytes`.
        limit: u64,
    },

    /// The server answered with a non-success status. The response body is
    /// never quoted: it may come from a service the task's author should
    /// not be able to read.
    #[error("GET {url}: {status} from {server}{hint}")]
    Status {
        /// What was being fetched, with the redirect hop that failed if any.
        url: String,
        /// The numeric status code.
        code: u16,
        /// The status line, e.g. `401 Unauthorized`.
        status: String,
        /// `Label Studio` or the host (and port) that answered.
        server: String,
        /// What to change, starting with ` — `, or empty.
        hint: String,
    },

    /// The request did not complete: connection refused, DNS, TLS, timeout,
    /// or the connection dropped while reading the body.
    #[error("GET {url}: {reason}")]
    Request {
        /// What was being fetched.
        url: String,
        /// What went wrong, with the underlying causes.
        reason: String,
    },

    /// More redirects than the fetcher follows.
    #[error("GET {url}: too many redirects (more than {max})")]
    TooManyRedirects {
        /// What was being fetched.
        url: String,
        /// The redirect limit.
        max: usize,
    },

    /// A redirect led back to a URL already visited.
    #[error("GET {url}: redirect loop (redirected back to {target})")]
    RedirectLoop {
        /// What was being fetched.
        url: String,
        /// The URL visited twice, without its query string.
        target: String,
    },

    /// Exchanging the personal access token for an access token failed.
    #[error(
        "POST {url}: could not exchange the personal access token in LABEL_STUDIO_API_KEY (or fetch.api_key) for an access token: {reason}"
    )]
    TokenRefresh {
        /// The refresh endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// A Label Studio URL setting does not parse.
    #[error("invalid Label Studio URL {value:?} in {setting}: {reason}")]
    InvalidLabelStudioUrl {
        /// The setting it came from, e.g. `LABEL_STUDIO_URL`.
        setting: String,
        /// The value given.
        value: String,
        /// Why it is not usable.
        reason: String,
    },

    /// The fetcher could not be built (cache directory, HTTP client).
    #[error("starting the fetcher: {reason}")]
    Setup {
        /// What failed.
        reason: String,
    },
}

fn too_large(size: Option<u64>, limit: u64) -> String {
    match size {
        Some(size) => format!(
            "file is {}, over the {} limit (fetch.max_bytes)",
            human_bytes(size),
            human_bytes(limit)
        ),
        None => format!(
            "file is over the {} limit (fetch.max_bytes); stopped reading there",
            human_bytes(limit)
        ),
    }
}

/// Formats a byte count in decimal units: `512 bytes`, `1.5 kB`, `73 MB`,
/// `50.4 MB`, `2 GB` (one decimal, dropped when it is zero).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "kB")];
    for (scale, unit) in UNITS {
        if n >= scale {
            // Round to one decimal in integer arithmetic (tenths of the unit).
            let tenths = (n.saturating_mul(10) + scale / 2) / scale;
            return if tenths.is_multiple_of(10) {
                format!("{} {unit}", tenths / 10)
            } else {
                format!("{}.{} {unit}", tenths / 10, tenths % 10)
            };
        }
    }
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// The chain of causes of an error, joined by `: `, for messages that must
/// own their text (the error is shared between deduplicated requests).
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // hyper and reqwest often repeat the inner message in the outer one.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_like_the_brief() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1), "1 byte");
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(73_000_000), "73 MB");
        assert_eq!(human_bytes(50_000_000), "50 MB");
        assert_eq!(human_bytes(50_400_000), "50.4 MB");
        assert_eq!(human_bytes(2_000_000_000), "2 GB");
    }

    #[test]
    fn too_large_names_the_setting() {
        let e = FetchError::TooLarge {
            url: "GET http://ls/data/upload/1/a.png".into(),
            size: Some(73_000_000),
            limit: 50_000_000,
        };
        assert_eq!(
            e.to_string(),
            "GET http://ls/data/upload/1/a.png: file is 73 MB, over the 50 MB limit (fetch.max_bytes)"
        );
    }
}
