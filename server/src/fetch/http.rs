//! One HTTP download: redirects followed by hand (so credentials go only to
//! Label Studio's origin and every hop passes the SSRF guard), one token
//! refresh and retry on a 401, and a body read that stops at the size cap.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use tokio::time::Instant;
use url::Url;

use super::auth::{Credential, Tokens, header};
use super::error::{FetchError, causes};
use super::source::{Kind, Remote, same_origin};
use crate::secret::Secret;

/// Longest server `detail` quoted in an error.
const DETAIL_CHARS: usize = 200;
/// Most bytes of an error body read to find its `detail`.
const DETAIL_BYTES: usize = 4_096;

/// Everything one download needs besides its [`Remote`].
pub(crate) struct Ctx<'a> {
    pub client: &'a reqwest::Client,
    pub tokens: &'a Tokens,
    /// Label Studio's base URL: the only origin credentials are sent to.
    pub ls: Option<&'a Url>,
    pub credential: &'a Credential,
    /// `fetch.allowed_hosts`; empty allows every host.
    pub allowed_hosts: &'a [String],
    pub max_bytes: u64,
    pub max_redirects: usize,
    /// The budget for the whole download, all redirects and any token
    /// refresh included.
    pub timeout: Duration,
}

/// A successful download.
pub(crate) struct Downloaded {
    pub bytes: Bytes,
    /// The final response's `Content-Type`, if any.
    pub content_type: Option<String>,
}

/// Downloads `remote`, following up to `ctx.max_redirects` redirects.
pub(crate) async fn get(ctx: &Ctx<'_>, remote: &Remote) -> Result<Downloaded, FetchError> {
    let deadline = Instant::now() + ctx.timeout;
    let mut url = remote.url.clone();
    let mut visited = vec![url.clone()];
    // The access token Label Studio answered 401 to, once retried.
    let mut rejected: Option<Secret> = None;
    loop {
        let shown = if visited.len() > 1 {
            format!("{}, redirected to {}", remote.label, redact(&url))
        } else {
            remote.label.clone()
        };
        let ls = ctx.ls.filter(|ls| same_origin(&url, ls));
        if remote.kind.guarded() && ls.is_none() {
            check_allowed(&url, ctx.allowed_hosts, &shown)?;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut request = ctx.client.get(url.clone()).timeout(remaining);
        // The access token sent, and whether it was refreshed just now.
        let mut bearer: Option<(Secret, bool)> = None;
        if let Some(ls) = ls {
            let value = match ctx.credential {
                Credential::None => None,
                Credential::Legacy(key) => header("Token", key),
                Credential::Access(key) => header("Bearer", key),
                Credential::Pat(pat) => {
                    let issued = ctx
                        .tokens
                        .access(ctx.client, ls, pat, rejected.as_ref(), remaining)
                        .await?;
                    let value = header("Bearer", &issued.token);
                    bearer = Some((issued.token, issued.fresh));
                    value
                }
            };
            if let Some(value) = value {
                request = request.header(AUTHORIZATION, value);
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| request_error(&shown, e, ctx.timeout))?;
        let status = response.status();

        if status.is_redirection()
            && let Some(location) = response.headers().get(LOCATION)
        {
            let next = location
                .to_str()
                .ok()
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| FetchError::Request {
                    url: shown.clone(),
                    reason: format!("{status} with an unusable Location header"),
                })?;
            if visited.contains(&next) {
                return Err(FetchError::RedirectLoop {
                    url: remote.label.clone(),
                    target: redact(&next),
                });
            }
            if visited.len() > ctx.max_redirects {
                return Err(FetchError::TooManyRedirects {
                    url: remote.label.clone(),
                    max: ctx.max_redirects,
                });
            }
            tracing::debug!(from = %redact(&url), to = %redact(&next), "following redirect");
            visited.push(next.clone());
            url = next;
            continue;
        }

        if status == StatusCode::UNAUTHORIZED
            && rejected.is_none()
            && let Some((token, false)) = bearer
        {
            // The cached access token may have been revoked or expired early:
            // refresh once and retry this hop.
            tracing::debug!(url = %redact(&url), "access token rejected; refreshing once");
            rejected = Some(token);
            continue;
        }

        if !status.is_success() {
            return Err(
                status_error(response, shown, ls.is_some(), remote.kind, ctx.credential).await,
            );
        }
        return read_body(response, &shown, ctx).await;
    }
}

/// Reads the body, refusing it up front when `Content-Length` is over the
/// cap and aborting the stream as soon as it grows past it.
async fn read_body(
    mut response: reqwest::Response,
    shown: &str,
    ctx: &Ctx<'_>,
) -> Result<Downloaded, FetchError> {
    let too_large = |size| FetchError::TooLarge {
        url: format!("GET {shown}"),
        size,
        limit: ctx.max_bytes,
    };
    let announced = response.content_length();
    if let Some(len) = announced
        && len > ctx.max_bytes
    {
        return Err(too_large(Some(len)));
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Cap the up-front allocation: Content-Length is only a claim.
    let capacity = announced.unwrap_or(0).min(ctx.max_bytes).min(16 << 20);
    let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| request_error(shown, e, ctx.timeout))?
    {
        if (body.len() + chunk.len()) as u64 > ctx.max_bytes {
            return Err(too_large(None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Downloaded {
        bytes: body.freeze(),
        content_type,
    })
}

/// The SSRF guard: with `allowed_hosts` set, only those hosts (exact, or
/// `*.example.com` for its subdomains; any port) may be fetched.
fn check_allowed(url: &Url, allowed: &[String], shown: &str) -> Result<(), FetchError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let normalise = |h: &str| {
        h.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    let host = normalise(url.host_str().unwrap_or(""));
    let ok = allowed
        .iter()
        .map(|a| normalise(a))
        .any(|a| match a.strip_prefix("*.") {
            Some(parent) => host.ends_with(&format!(".{parent}")),
            None => host == a,
        });
    if ok {
        Ok(())
    } else {
        Err(FetchError::HostNotAllowed {
            url: shown.to_owned(),
            host,
            allowed: allowed.join(", "),
        })
    }
}

fn request_error(shown: &str, err: reqwest::Error, timeout: Duration) -> FetchError {
    let reason = if err.is_timeout() {
        format!(
            "timed out: the download must finish within {} s",
            timeout.as_secs_f32()
        )
    } else if err.is_connect() {
        format!("could not connect: {}", causes(&err.without_url()))
    } else {
        causes(&err.without_url())
    };
    FetchError::Request {
        url: shown.to_owned(),
        reason,
    }
}

async fn status_error(
    response: reqwest::Response,
    shown: String,
    at_ls: bool,
    kind: Kind,
    credential: &Credential,
) -> FetchError {
    let status = response.status();
    let server = if at_ls {
        "Label Studio".to_owned()
    } else {
        let url = response.url();
        match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => "the server".to_owned(),
        }
    };
    let detail = detail(response).await;
    let hint = match (at_ls, status.as_u16(), kind) {
        (true, 401 | 403, _) if detail.contains("legacy token") => {
            " — legacy tokens are disabled in this Label Studio organisation: set LABEL_STUDIO_API_KEY (or fetch.api_key) to a personal access token, or enable legacy tokens in Label Studio"
        }
        (true, 401 | 403, _) if !credential.is_some() => {
            " — no API key is configured: set LABEL_STUDIO_API_KEY (or fetch.api_key) to a token of a user in that organisation"
        }
        (true, 401 | 403, _) => {
            " — set LABEL_STUDIO_API_KEY (or fetch.api_key) to a token of a user in that organisation"
        }
        (true, 404, Kind::LocalFiles) => {
            " — check that Label Studio serves local files (LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true) and the file is under LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
        }
        (true, 404, Kind::Cloud) => {
            " — no cloud storage of the task's project matches this URI, or the task does not exist"
        }
        (false, 401 | 403, Kind::Cloud) => {
            " — the storage refused the presigned URL Label Studio gave (expired, or Label Studio's storage credentials cannot read the object)"
        }
        _ => "",
    };
    FetchError::Status {
        url: shown,
        code: status.as_u16(),
        status: status.to_string(),
        server,
        detail,
        hint: hint.to_owned(),
    }
}

/// The server's own explanation from an error body (`{"detail": "…"}` as
/// Django REST framework sends), as ` ("…")`, or empty.
pub(crate) async fn detail(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < DETAIL_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&body) else {
        return String::new();
    };
    ["detail", "error", "message"]
        .iter()
        .find_map(|k| map.get(*k).and_then(|v| v.as_str()))
        .map(|text| {
            let text: String = text.chars().take(DETAIL_CHARS).collect();
            format!(" ({text:?})")
        })
        .unwrap_or_default()
}

/// A URL without its query string (presigned URLs carry signatures there).
pub(crate) fn redact(url: &Url) -> String {
    if url.query().is_none() && url.fragment().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    format!("{u}?…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("literal URL")
    }

    #[test]
    fn an_empty_allow_list_allows_everything() {
        assert!(check_allowed(&url("http://10.0.0.1/x"), &[], "x").is_ok());
    }

    #[test]
    fn allowed_hosts_match_exactly_or_by_wildcard() {
        let allowed = vec!["images.example.com".to_owned(), "*.cdn.net".to_owned()];
        for ok in [
            "https://images.example.com/a",
            "http://IMAGES.example.com:8080/a",
            "https://a.b.cdn.net/x",
        ] {
            assert!(check_allowed(&url(ok), &allowed, ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://example.com/a",
            "https://cdn.net/x",
            "http://169.254.169.254/latest",
        ] {
            let e = check_allowed(&url(bad), &allowed, bad).expect_err(bad);
            assert!(e.to_string().contains("not in fetch.allowed_hosts"), "{e}");
        }
    }

    #[test]
    fn redaction_drops_query_strings() {
        assert_eq!(
            redact(&url("https://s3.example.com/b/k.png?X-Amz-Signature=abc")),
            "https://s3.example.com/b/k.png?…"
        );
        assert_eq!(redact(&url("http://h/a")), "http://h/a");
    }
}
