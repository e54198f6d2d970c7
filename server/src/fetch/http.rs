//! One HTTP download: redirects followed by hand (so credentials go only to
//! Label Studio's origin and every hop passes the SSRF guard), one token
//! refresh and retry on a 401, a body read that stops at the size cap, and
//! HTTP caching: a conditional request for a cached copy, and what a
//! response allows to be cached (`Cache-Control`, `Expires`, `ETag`,
//! `Last-Modified`).
//!
//! Per hop, the SSRF guard decides which client sends the request: hops on
//! Label Studio's origin, hops of a download that started there (Label
//! Studio's redirects to presigned storage URLs), hosts listed in
//! `fetch.allowed_hosts` and, when private networks are opted in to, every
//! host, go through the plain client; any other hop must be public, so a
//! literal private IP is refused here and names go through the client whose
//! resolver drops private addresses ([`super::guard::PublicOnly`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{
    AGE, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, DATE, ETAG, EXPIRES, HeaderMap,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION,
};
use tokio::time::Instant;
use url::Url;

use super::auth::{Credential, Tokens, header};
use super::cache::Validity;
use super::error::{FetchError, causes};
use super::guard::{is_private, literal_ip, private_destination};
use super::proxy::{ProxyRoutes, check_public};
use super::source::{Kind, Remote, same_origin};
use crate::secret::Secret;

/// Longest server `detail` kept for deciding a hint (and the debug log).
const DETAIL_CHARS: usize = 200;
/// Most bytes of an error body read to find its `detail`.
const DETAIL_BYTES: usize = 4_096;

/// The two HTTP clients a fetcher holds; see the module docs for which one
/// a hop uses.
pub(crate) struct Clients {
    /// The system resolver: for trusted destinations.
    pub open: reqwest::Client,
    /// A resolver that refuses private addresses, and no proxy: for
    /// everything else.
    pub public_only: reqwest::Client,
    /// Which URLs `open` sends through a forward proxy.
    pub proxied: ProxyRoutes,
}

/// Everything one download needs besides its [`Remote`].
pub(crate) struct Ctx<'a> {
    pub clients: &'a Clients,
    pub tokens: &'a Tokens,
    /// Label Studio's base URL when it is trusted (configured, or a `/setup`
    /// hostname on the allow-list): the only origin credentials are sent to,
    /// and exempt from the SSRF guard.
    pub ls: Option<&'a Url>,
    pub credential: &'a Credential,
    /// `fetch.allowed_hosts`; empty allows every public host.
    pub allowed_hosts: &'a [String],
    /// Private and loopback destinations may be reached (opted in to).
    pub allow_private: bool,
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
    /// How long and on what condition the response may be reused; `None`
    /// when it must not be stored (`no-store`, `private`) or gave nothing
    /// to reuse it by (no validator and no freshness lifetime).
    pub validity: Option<Validity>,
}

/// What a download brought.
pub(crate) enum Got {
    Body(Downloaded),
    /// `304 Not Modified` to a conditional request: the cached copy is
    /// current, with this freshness and these validators.
    NotModified(Validity),
}

/// Downloads `remote`, following up to `ctx.max_redirects` redirects. With
/// `cached`, the request is conditional on the cached copy's validators.
pub(crate) async fn get(
    ctx: &Ctx<'_>,
    remote: &Remote,
    cached: Option<&Validity>,
) -> Result<Got, FetchError> {
    let deadline = Instant::now() + ctx.timeout;
    let mut url = remote.url.clone();
    let mut visited = vec![url.clone()];
    // Label Studio is trusted, and so is where it redirects (presigned
    // cloud URLs): only downloads that start elsewhere are guarded.
    let guarded = !ctx.ls.is_some_and(|ls| same_origin(&remote.url, ls));
    // The access token Label Studio answered 401 to, once retried.
    let mut rejected: Option<Secret> = None;
    loop {
        let shown = if visited.len() > 1 {
            format!("{}, redirected to {}", remote.label, redact(&url))
        } else {
            remote.label.clone()
        };
        let ls = ctx.ls.filter(|ls| same_origin(&url, ls));
        let client = if guarded && ls.is_none() {
            guarded_client(ctx, &url, &shown).await?
        } else {
            &ctx.clients.open
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut request = client.get(url.clone()).timeout(remaining);
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
                        .access(&ctx.clients.open, ls, pat, rejected.as_ref(), remaining)
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
        if let Some(cached) = cached {
            request = conditional(request, cached);
        }
        let response = request
            .send()
            .await
            .map_err(|e| request_error(&shown, &url, e, ctx.timeout))?;
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

        if status == StatusCode::NOT_MODIFIED && cached.is_some() {
            let (validity, _) = cache_headers(response.headers(), now_unix());
            return Ok(Got::NotModified(validity));
        }

        if !status.is_success() {
            return Err(
                status_error(response, shown, ls.is_some(), remote.kind, ctx.credential).await,
            );
        }
        return read_body(response, &shown, ctx).await.map(Got::Body);
    }
}

/// `request` asking for the body only if it differs from the copy that
/// `cached` describes.
fn conditional(mut request: reqwest::RequestBuilder, cached: &Validity) -> reqwest::RequestBuilder {
    if let Some(etag) = &cached.etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    if let Some(modified) = &cached.last_modified {
        request = request.header(IF_MODIFIED_SINCE, modified);
    }
    request
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a response received at `now` (Unix seconds) allows a shared cache
/// to do (RFC 9111): `None` when it must not be stored (`no-store`,
/// `private`) or cannot be reused (no validator and no freshness). The
/// freshness lifetime is `s-maxage`, else `max-age`, else `Expires` −
/// `Date`, less `Age`; `no-cache` makes it 0 (revalidate every time). No
/// heuristic freshness: without a lifetime a copy is always revalidated.
pub(crate) fn validity(headers: &HeaderMap, now: u64) -> Option<Validity> {
    let (validity, storable) = cache_headers(headers, now);
    storable.then_some(validity)
}

/// The validators and freshness a response's headers give (fresh until
/// `now` when they give no lifetime), and whether it may be stored.
fn cache_headers(headers: &HeaderMap, now: u64) -> (Validity, bool) {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let directives: Vec<(String, Option<String>)> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            let (name, value) = d.split_once('=').unwrap_or((d, ""));
            let value = value.trim().trim_matches('"');
            (
                name.trim().to_ascii_lowercase(),
                (!value.is_empty()).then(|| value.to_owned()),
            )
        })
        .collect();
    let has = |name: &str| directives.iter().any(|(n, _)| n == name);
    let seconds = |name: &str| {
        directives
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref()?.parse::<u64>().ok())
    };
    let forbidden = has("no-store") || has("private");
    let expires = || {
        let expires = httpdate::parse_http_date(text(EXPIRES)?).ok()?;
        let date = text(DATE)
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .unwrap_or_else(std::time::SystemTime::now);
        Some(expires.duration_since(date).map_or(0, |d| d.as_secs()))
    };
    let lifetime = if has("no-cache") {
        Some(0)
    } else {
        seconds("s-maxage")
            .or_else(|| seconds("max-age"))
            .or_else(expires)
    };
    let age = text(AGE)
        .and_then(|a| a.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let validity = Validity {
        etag: text(ETAG).map(str::to_owned),
        last_modified: text(LAST_MODIFIED).map(str::to_owned),
        fresh_until: Some(now.saturating_add(lifetime.unwrap_or(0).saturating_sub(age))),
    };
    let reusable = validity.has_validators() || lifetime.is_some_and(|l| l > age);
    (validity, reusable && !forbidden)
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
    let validity = validity(response.headers(), now_unix());
    // Cap the up-front allocation: Content-Length is only a claim.
    let capacity = announced.unwrap_or(0).min(ctx.max_bytes).min(16 << 20);
    let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let url = response.url().clone();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| request_error(shown, &url, e, ctx.timeout))?
    {
        if (body.len() + chunk.len()) as u64 > ctx.max_bytes {
            return Err(too_large(None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Downloaded {
        bytes: body.freeze(),
        content_type,
        validity,
    })
}

/// The client for a hop that Label Studio does not vouch for, or why the
/// hop is refused: with `allowed_hosts` set only those hosts pass (and
/// reach private addresses if they resolve there: they were listed on
/// purpose); otherwise private destinations are refused unless opted in to,
/// a literal IP here and a name by the resolver of
/// [`Clients::public_only`], or, when a forward proxy carries the hop, by
/// resolving it here first ([`super::proxy`]).
async fn guarded_client<'a>(
    ctx: &Ctx<'a>,
    url: &Url,
    shown: &str,
) -> Result<&'a reqwest::Client, FetchError> {
    if !ctx.allowed_hosts.is_empty() {
        check_allowed(url, ctx.allowed_hosts, shown)?;
        return Ok(&ctx.clients.open);
    }
    if ctx.allow_private {
        return Ok(&ctx.clients.open);
    }
    if literal_ip(url).is_some_and(is_private) {
        return Err(private_address(shown, url.host_str().unwrap_or("")));
    }
    if ctx.clients.proxied.carries(url) {
        check_public(url, shown).await?;
        return Ok(&ctx.clients.open);
    }
    Ok(&ctx.clients.public_only)
}

/// The refusal of a private destination, whichever check found it.
pub(super) fn private_address(shown: &str, host: &str) -> FetchError {
    FetchError::PrivateAddress {
        url: shown.to_owned(),
        host: host.to_owned(),
        hint: String::new(),
    }
}

/// Whether `url`'s host is in `allowed`: exact, or `*.example.com` for its
/// subdomains; any port.
pub(crate) fn host_allowed(url: &Url, allowed: &[String]) -> bool {
    let normalise = |h: &str| {
        h.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    let host = normalise(url.host_str().unwrap_or(""));
    allowed
        .iter()
        .map(|a| normalise(a))
        .any(|a| match a.strip_prefix("*.") {
            Some(parent) => host.ends_with(&format!(".{parent}")),
            None => host == a,
        })
}

/// The allow-list half of the SSRF guard: with `allowed_hosts` set, only
/// those hosts ([`host_allowed`]) may be fetched.
fn check_allowed(url: &Url, allowed: &[String], shown: &str) -> Result<(), FetchError> {
    if allowed.is_empty() || host_allowed(url, allowed) {
        return Ok(());
    }
    let host = url.host_str().unwrap_or("");
    Err(FetchError::HostNotAllowed {
        url: shown.to_owned(),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase(),
        allowed: allowed.join(", "),
        hint: String::new(),
    })
}

fn request_error(shown: &str, url: &Url, err: reqwest::Error, timeout: Duration) -> FetchError {
    // The resolver refused the name: the same answer as for a literal IP,
    // and no connection was attempted.
    if private_destination(&err).is_some() {
        return private_address(shown, url.host_str().unwrap_or(""));
    }
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
    // Read only to pick a hint; never quoted (see FetchError::Status).
    let detail = if at_ls {
        detail(response).await.unwrap_or_default()
    } else {
        String::new()
    };
    if !detail.is_empty() {
        tracing::debug!(url = %shown, %status, detail, "Label Studio refused a download");
    }
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
        hint: hint.to_owned(),
    }
}

/// Label Studio's own explanation from an error body (`{"detail": "…"}` as
/// Django REST framework sends), at most [`DETAIL_CHARS`] long. For picking
/// hints and debug logs only: error messages never quote it.
pub(crate) async fn detail(mut response: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < DETAIL_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&body) else {
        return None;
    };
    ["detail", "error", "message"]
        .iter()
        .find_map(|k| map.get(*k).and_then(|v| v.as_str()))
        .map(|text| text.chars().take(DETAIL_CHARS).collect())
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
    fn an_empty_allow_list_leaves_the_decision_to_the_private_network_check() {
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
