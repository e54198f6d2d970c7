//! Turns a task data value into bytes for the pipeline.
//!
//! `fetch` owns everything between a string in `task.data` and the bytes of
//! the file it names: classifying the value, Label Studio credentials, HTTP
//! downloads with their limits, and the on-disk download cache. It does not
//! decode the bytes (that is `imageops` and the hooks), decide which task
//! fields to fetch (that is the pipeline), or store configuration. A
//! backend's `fetch:` section is [`FetchSettings`].
//!
//! # Values
//! | value | fetched from |
//! |---|---|
//! | `/data/upload/…`, `/data/local-files/?d=…`, any `/…` path | Label Studio URL + the path |
//! | `http(s)://` on the Label Studio origin | as is, with credentials |
//! | `s3://`, `gs://`, `azure-blob://`, `azure-spi://` | `GET <ls>/tasks/<id>/resolve/?fileuri=<urlsafe base64>`, following the 303 to the presigned URL |
//! | other `http(s)://` | as is, without credentials, subject to `allowed_hosts` |
//! | `data:[<type>][;base64],…` | decoded in place |
//!
//! The content type is the response's `Content-Type` when it is specific,
//! else the file's magic bytes (PNG, JPEG, WebP, BMP, TIFF, GIF, WAV, MP3,
//! FLAC, Ogg, MP4, WebM, …), else the extension.
//!
//! # Credentials
//! The API key goes only to Label Studio's origin (scheme, host and port
//! equal to the *configured* Label Studio URL: [`FetchConfig::label_studio_url`],
//! from `fetch.label_studio_url` or `LABEL_STUDIO_URL`), on the first
//! request and on redirects that stay there; redirects are followed by hand, so a 303 to a presigned
//! S3 URL carries no `Authorization`. A key that is not a JWT is a legacy
//! token (`Authorization: Token <key>`). A personal access token (a JWT whose
//! payload has `token_type: refresh`) is exchanged at
//! `POST <ls>/api/token/refresh/` for an access token sent as `Bearer`,
//! cached until [`REFRESH_MARGIN`] before its `exp`, refreshed under a lock
//! so concurrent downloads refresh once, and refreshed once more if Label
//! Studio answers 401 to a cached one. No error message contains a key.
//!
//! The `hostname` Label Studio sends to `/setup` is only a fallback for
//! joining relative paths ([`FetchRequest::fallback_label_studio_url`]):
//! anyone who can reach `/setup` can send one, so it is not trusted with
//! credentials. Without a configured URL, relative paths are fetched from it
//! without credentials and under the SSRF guard, unless its host is listed
//! in [`FetchConfig::allowed_hosts`] (then it is treated like a configured
//! Label Studio URL). Its failures say to set `fetch.label_studio_url`.
//!
//! # SSRF guard
//! Task values are written by whoever can create tasks, so downloads that
//! do not start at the trusted Label Studio origin are guarded, on every
//! redirect hop:
//! - With [`FetchConfig::allowed_hosts`] non-empty, only those hosts may be
//!   reached: `example.com` matches that host on any port, `*.example.com`
//!   its subdomains. Listed hosts may resolve to private addresses.
//! - Otherwise any public host may be reached, and private destinations
//!   are refused ([`FetchError::PrivateAddress`]): loopback, RFC 1918 and
//!   `fc00::/7`, link-local (`169.254/16` with cloud metadata, `fe80::/10`),
//!   carrier-grade NAT, unspecified, multicast and broadcast addresses, also
//!   in IPv4-mapped form. The check runs on the resolved addresses inside
//!   the HTTP client's resolver (so DNS rebinding is covered) and on literal
//!   IPs before sending; nothing is connected to, so the refusal reads the
//!   same whether a port is open or closed.
//! - Opting in lifts the private-address refusal: per backend with
//!   [`FetchConfig::allow_private_networks`] (`fetch.allow_private_networks`)
//!   or for the whole server with [`FetcherOptions::allow_private_networks`]
//!   (`--allow-private-networks`, `CLS_ALLOW_PRIVATE_NETWORKS`).
//! - Behind a forward proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`,
//!   minus `NO_PROXY`) the proxy resolves names, so guarded hops it carries
//!   are resolved here first and refused if any address is private
//!   ([`ProxySettings`]).
//!
//! Label Studio's origin is always allowed (it usually lives on a private
//! network next to this server), and where Label Studio itself redirects
//! (presigned cloud URLs, often a private object store) is trusted. Error
//! messages give the status code and reason of a failed response, never
//! its body.
//!
//! # Limits and cache
//! One [`Fetcher`] per process: one HTTP client (connect timeout, total
//! timeout per download, at most [`DEFAULT_MAX_REDIRECTS`] redirects), a
//! bound on concurrent downloads and another per origin
//! ([`DEFAULT_MAX_PER_ORIGIN`], like a browser's), a per-file cap ([`FetchConfig::max_bytes`],
//! checked against `Content-Length` and while streaming), concurrent
//! requests for the same download sharing one transfer, and an on-disk
//! cache keyed by the SHA-256 of the absolute URL. Immutable URLs are served
//! from it without asking again: Label Studio uploads (`/data/upload/…`,
//! whose names carry a random prefix and are never reused) and web URLs
//! with a content hash or UUID in their path. Other web URLs and Label
//! Studio's local files are cached as HTTP allows a shared cache: served
//! while fresh (`Cache-Control: max-age`/`s-maxage`, `Expires`), then
//! revalidated with a conditional request (`If-None-Match` from `ETag`,
//! `If-Modified-Since` from `Last-Modified`), a `304` costing a round trip
//! but no body; `no-store`, `private` and responses with neither a
//! validator nor a lifetime are not stored. Cloud objects are fetched every
//! time (their presigned URLs change on every resolve). A cache entry
//! remembers which key fetched it and is only served to requests made with
//! the same key.

mod auth;
mod cache;
mod error;
mod guard;
mod http;
mod proxy;
mod sniff;

pub use sniff::magic as sniff_media_type;
mod source;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared, WeakShared};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use url::Url;

pub use auth::REFRESH_MARGIN;
pub use error::FetchError;
pub use guard::is_private as is_private_address;
pub use proxy::ProxySettings;

use crate::secret::Secret;
use auth::{Credential, Tokens};
use cache::DiskCache;
use source::{Remote, Source};

/// Default [`FetchConfig::max_bytes`]: 50 MB.
pub const DEFAULT_MAX_BYTES: u64 = 50_000_000;
/// Default [`FetcherOptions::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`FetcherOptions::timeout`]: one download, redirects included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`FetcherOptions::max_redirects`].
pub const DEFAULT_MAX_REDIRECTS: usize = 5;
/// Default [`FetcherOptions::max_concurrent`].
pub const DEFAULT_MAX_CONCURRENT: usize = 16;

/// Downloads in progress at once from one origin (scheme, host and port),
/// like a browser's per-host limit. Origins with a small listen backlog
/// (Python's `http.server`, development servers, small proxies) drop
/// connection attempts beyond it, and every dropped SYN waits out a
/// one-second retransmit.
pub const DEFAULT_MAX_PER_ORIGIN: usize = 6;

/// Past this many origins, the idle ones' slots are forgotten.
const ORIGINS_KEPT: usize = 256;
/// Default [`FetcherOptions::cache_max_bytes`]: 1 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 1 << 30;

/// Environment variables for the Label Studio URL, in order of preference
/// (the names the Label Studio SDK and ML backends use).
pub const LABEL_STUDIO_URL_ENV: [&str; 2] = ["LABEL_STUDIO_URL", "LABEL_STUDIO_HOST"];
/// Environment variables for the Label Studio API key, in order of preference.
pub const LABEL_STUDIO_API_KEY_ENV: [&str; 2] =
    ["LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"];

/// How to download task files, as users write it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_studio_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Lets this backend's task downloads reach private, loopback and
    /// link-local addresses, which the SSRF guard refuses by default (see
    /// [`crate::fetch`]). Label Studio's configured URL and the hosts in
    /// `allowed_hosts` never need it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private_networks: bool,
}

/// How one backend fetches task files: [`FetchSettings`]
/// (the `fetch:` section users write) checked and completed from the
/// environment by [`FetchConfig::from_settings`]. `Debug` prints the key as
/// `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// Label Studio's base URL: relative `/data/…` values are joined onto it,
    /// cloud URIs resolved through it, only its origin gets the API key, and
    /// it is exempt from the SSRF guard. Without it, a request's
    /// [`FetchRequest::fallback_label_studio_url`] (from `/setup`'s
    /// `hostname`) is used to join paths, without credentials.
    pub label_studio_url: Option<Url>,
    /// A Label Studio legacy token or personal access token.
    pub api_key: Option<Secret>,
    /// When non-empty, the only hosts plain `http(s)` values may reach
    /// besides Label Studio: `host` or `*.domain`. Listed hosts may resolve
    /// to private addresses. See the module docs.
    pub allowed_hosts: Vec<String>,
    /// The largest file fetched, in bytes.
    pub max_bytes: u64,
    /// Lets this backend's downloads reach private and loopback addresses
    /// (`fetch.allow_private_networks`, default `false`). The server-wide
    /// [`FetcherOptions::allow_private_networks`] does the same for every
    /// backend.
    pub allow_private_networks: bool,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            label_studio_url: None,
            api_key: None,
            allowed_hosts: Vec::new(),
            max_bytes: DEFAULT_MAX_BYTES,
            allow_private_networks: false,
        }
    }
}

impl FetchConfig {
    /// Builds a backend's configuration from its `fetch:` settings, filling
    /// what they leave unset from the environment
    /// ([`FetchConfig::with_env_defaults`]); `max_bytes` defaults to
    /// [`DEFAULT_MAX_BYTES`].
    pub fn from_settings(settings: &FetchSettings) -> Result<Self, FetchError> {
        let label_studio_url = settings
            .label_studio_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(|u| parse_label_studio_url(u, "fetch.label_studio_url"))
            .transpose()?;
        Self {
            label_studio_url,
            api_key: settings
                .api_key
                .clone()
                .filter(|k| !k.expose().trim().is_empty()),
            allowed_hosts: settings.allowed_hosts.clone(),
            max_bytes: settings.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
            allow_private_networks: settings.allow_private_networks,
        }
        .with_env_defaults()
    }

    /// Fills an unset `label_studio_url` from [`LABEL_STUDIO_URL_ENV`] and an
    /// unset `api_key` from [`LABEL_STUDIO_API_KEY_ENV`] (empty variables
    /// count as unset). Values already set win.
    ///
    /// ```no_run
    /// # use cls::fetch::FetchConfig;
    /// let cfg = FetchConfig::default().with_env_defaults()?;
    /// # Ok::<(), cls::fetch::FetchError>(())
    /// ```
    pub fn with_env_defaults(self) -> Result<Self, FetchError> {
        self.with_defaults_from(|name| std::env::var(name).ok())
    }

    fn with_defaults_from(
        mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, FetchError> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if self.label_studio_url.is_none()
            && let Some((name, value)) = LABEL_STUDIO_URL_ENV
                .iter()
                .find_map(|n| var(n).map(|v| (*n, v)))
        {
            self.label_studio_url = Some(parse_label_studio_url(&value, name)?);
        }
        if self.api_key.is_none() {
            self.api_key = LABEL_STUDIO_API_KEY_ENV
                .iter()
                .find_map(|n| var(n))
                .map(|v| Secret::new(v.trim()));
        }
        Ok(self)
    }
}

/// Parses a Label Studio URL from a setting named `setting` (used in the
/// error): `http://` is assumed without a scheme, only `http` and `https`
/// are accepted, the query and fragment are dropped, and user info is
/// refused (credentials belong in the API key).
pub fn parse_label_studio_url(value: &str, setting: &str) -> Result<Url, FetchError> {
    let trimmed = value.trim();
    let fail = |shown: &str, reason: &str| FetchError::InvalidLabelStudioUrl {
        setting: setting.to_owned(),
        value: shown.to_owned(),
        reason: reason.to_owned(),
    };
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| fail(trimmed, &e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail(
            "<redacted: contains user info>",
            "user names and passwords in the URL are not supported; set LABEL_STUDIO_API_KEY",
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fail(trimmed, "only http:// and https:// are supported"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(fail(trimmed, "no host"));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// One value to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchRequest {
    /// The raw task data value (surrounding whitespace is ignored).
    pub value: String,
    /// The task's id: cloud URIs are resolved through
    /// `/tasks/<id>/resolve/`.
    pub task_id: Option<i64>,
    /// Label Studio's URL as `/setup` reported it (`hostname`), used to
    /// join relative paths when [`FetchConfig::label_studio_url`] is unset;
    /// parsed like [`parse_label_studio_url`]. Anyone can call `/setup`, so
    /// the API key is never sent to it (unless its host is in
    /// [`FetchConfig::allowed_hosts`]) and downloads from it are guarded
    /// like any other URL.
    pub fallback_label_studio_url: Option<String>,
}

impl FetchRequest {
    /// A request for `value` with no task id and no fallback URL.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }
}

/// A fetched file.
#[derive(Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file's bytes.
    pub bytes: Bytes,
    /// Its media type (see the module docs for how it is chosen), e.g.
    /// `image/png`; `application/octet-stream` when nothing identifies a
    /// download, `text/plain;charset=US-ASCII` for a `data:` URI without a
    /// type (RFC 2397).
    pub content_type: String,
    /// What was fetched: the absolute URL (relative values joined onto
    /// Label Studio), the cloud URI as given (never the presigned URL), or
    /// for `data:` URIs their header followed by `,…`.
    pub uri: String,
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("content_type", &self.content_type)
            .field("uri", &self.uri)
            .finish()
    }
}

/// Process-wide settings of a [`Fetcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetcherOptions {
    /// Where the download cache lives; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// The cache's total size bound; least recently used entries go first.
    pub cache_max_bytes: u64,
    /// Downloads in progress at once, across all backends (at least 1).
    pub max_concurrent: usize,
    /// Downloads in progress at once from one origin (at least 1).
    pub max_per_origin: usize,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for one whole download: every redirect, any token refresh and
    /// the body.
    pub timeout: Duration,
    /// Redirects followed per download.
    pub max_redirects: usize,
    /// Lets every backend's downloads reach private and loopback addresses
    /// (the server's `--allow-private-networks`, default `false`); see the
    /// module docs.
    pub allow_private_networks: bool,
    /// Forward proxies for downloads; none by default, the environment's
    /// (`HTTP_PROXY`, …) in the server ([`ProxySettings::from_env`]).
    pub proxy: ProxySettings,
}

impl Default for FetcherOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_per_origin: DEFAULT_MAX_PER_ORIGIN,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            allow_private_networks: false,
            proxy: ProxySettings::default(),
        }
    }
}

/// Downloads task files. Make one per process and share it: clones are
/// cheap handles onto the same client, cache, token cache and limits.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

type Pending = BoxFuture<'static, Result<Fetched, FetchError>>;

struct Inner {
    clients: http::Clients,
    options: FetcherOptions,
    permits: Semaphore,
    /// Per-origin download slots, by origin.
    origins: Mutex<HashMap<String, Arc<Semaphore>>>,
    cache: Option<DiskCache>,
    tokens: Tokens,
    /// Downloads in progress, by [`Job::dedup_key`], with an id so a
    /// finished download only removes its own entry.
    inflight: Mutex<HashMap<String, (u64, WeakShared<Pending>)>>,
    next_id: AtomicU64,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// One remote download, owning what the shared future needs.
struct Job {
    remote: Remote,
    /// The trusted Label Studio URL, if any (see [`Fetcher::fetch`]).
    ls: Option<Url>,
    credential: Credential,
    allowed_hosts: Vec<String>,
    allow_private: bool,
    max_bytes: u64,
}

impl Job {
    /// Requests share a transfer only when everything that shapes it is
    /// equal: URL, key, Label Studio origin, guard and limits.
    fn dedup_key(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{:?}",
            self.remote.url,
            self.credential.fingerprint(),
            self.ls.as_ref().map(Url::as_str).unwrap_or(""),
            self.max_bytes,
            self.allow_private,
            self.allowed_hosts
        )
    }
}

/// The Label Studio URL a request uses and how far it is trusted.
struct LabelStudio {
    /// Where relative paths are joined and cloud URIs resolved.
    url: Option<Url>,
    /// Whether [`Self::url`] may receive credentials and skip the SSRF
    /// guard: configured, or a `/setup` hostname on the allow-list.
    trusted: bool,
}

impl LabelStudio {
    /// The configured URL wins; else `/setup`'s hostname, trusted only when
    /// its host is in `allowed_hosts`. A bad hostname is returned as `Err`
    /// so it is reported only to values that need Label Studio.
    fn choose(cfg: &FetchConfig, req: &FetchRequest) -> (Self, Option<FetchError>) {
        if let Some(url) = &cfg.label_studio_url {
            let ls = Self {
                url: Some(url.clone()),
                trusted: true,
            };
            return (ls, None);
        }
        match req
            .fallback_label_studio_url
            .as_deref()
            .map(|h| parse_label_studio_url(h, "/setup hostname"))
        {
            Some(Ok(url)) => {
                let trusted =
                    !cfg.allowed_hosts.is_empty() && http::host_allowed(&url, &cfg.allowed_hosts);
                (
                    Self {
                        url: Some(url),
                        trusted,
                    },
                    None,
                )
            }
            Some(Err(bad)) => (
                Self {
                    url: None,
                    trusted: false,
                },
                Some(bad),
            ),
            None => (
                Self {
                    url: None,
                    trusted: false,
                },
                None,
            ),
        }
    }
}

/// What a failure from the untrusted `/setup` hostname adds, so users learn
/// how to make Label Studio downloads work.
const SETUP_HOSTNAME_HINT: &str = " — this Label Studio URL came from /setup and is not trusted with credentials: set fetch.label_studio_url (or LABEL_STUDIO_URL) and fetch.api_key so the server can download /data/upload/... files";

/// Adds [`SETUP_HOSTNAME_HINT`] to the errors a download from an untrusted
/// `/setup` hostname can end in.
fn with_setup_hint(err: FetchError) -> FetchError {
    match err {
        FetchError::Status {
            url,
            code,
            status,
            server,
            ..
        } => FetchError::Status {
            url,
            code,
            status,
            server,
            // No key was sent, so hints about the configured key do not apply.
            hint: SETUP_HOSTNAME_HINT.to_owned(),
        },
        FetchError::PrivateAddress { url, host, .. } => FetchError::PrivateAddress {
            url,
            host,
            hint: SETUP_HOSTNAME_HINT.to_owned(),
        },
        FetchError::HostNotAllowed {
            url, host, allowed, ..
        } => FetchError::HostNotAllowed {
            url,
            host,
            allowed,
            hint: SETUP_HOSTNAME_HINT.to_owned(),
        },
        FetchError::Request { url, reason } => FetchError::Request {
            url,
            reason: format!("{reason}{SETUP_HOSTNAME_HINT}"),
        },
        other => other,
    }
}

impl Fetcher {
    /// A fetcher with the default limits and a download cache of at most
    /// `cache_max_bytes` in `cache_dir` (created if needed).
    pub fn new(cache_dir: PathBuf, cache_max_bytes: u64) -> Result<Self, FetchError> {
        Self::with_options(FetcherOptions {
            cache_dir: Some(cache_dir),
            cache_max_bytes,
            ..FetcherOptions::default()
        })
    }

    /// Builds the HTTP clients and opens (creating it if needed) the cache.
    pub fn with_options(options: FetcherOptions) -> Result<Self, FetchError> {
        Self::build(options, |builder| builder)
    }

    /// A fetcher whose guarded client resolves the given names to the given
    /// addresses without the private-address filter: tests use it to stand
    /// in for public hosts, which a test machine cannot serve.
    #[cfg(test)]
    pub(crate) fn with_public_test_hosts(
        options: FetcherOptions,
        hosts: &[(&str, std::net::SocketAddr)],
    ) -> Result<Self, FetchError> {
        Self::build(options, |builder| {
            hosts
                .iter()
                .fold(builder, |b, (name, addr)| b.resolve(name, *addr))
        })
    }

    fn build(
        options: FetcherOptions,
        public_only: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Self, FetchError> {
        let client = |builder: reqwest::ClientBuilder| {
            builder
                .connect_timeout(options.connect_timeout)
                .timeout(options.timeout)
                // Redirects are followed by hand in `http::get`, which
                // decides per hop whether credentials may go along and
                // which client may reach the destination.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!(
                    "configurable-ls-backend/",
                    env!("CARGO_PKG_VERSION")
                ))
                .build()
                .map_err(|e| FetchError::Setup {
                    reason: format!("HTTP client: {}", error::causes(&e)),
                })
        };
        let clients = http::Clients {
            open: client(options.proxy.apply(reqwest::Client::builder())?)?,
            // Never through a proxy: the proxy would resolve the name, out
            // of this resolver's sight (see `proxy`).
            public_only: client(public_only(
                reqwest::Client::builder()
                    .no_proxy()
                    .dns_resolver(Arc::new(guard::PublicOnly)),
            ))?,
            proxied: options.proxy.routes(),
        };
        let cache = options
            .cache_dir
            .as_ref()
            .map(|dir| {
                DiskCache::open(dir, options.cache_max_bytes).map_err(|e| FetchError::Setup {
                    reason: format!("download cache {}: {e}", dir.display()),
                })
            })
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                clients,
                permits: Semaphore::new(options.max_concurrent.max(1)),
                origins: Mutex::new(HashMap::new()),
                cache,
                tokens: Tokens::default(),
                inflight: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                options,
            }),
        })
    }

    /// Fetches one task value for a backend configured with `cfg`.
    ///
    /// Concurrent calls for the same download share one transfer; if the
    /// caller that started it is cancelled, the others carry it on.
    pub async fn fetch(
        &self,
        cfg: &FetchConfig,
        req: &FetchRequest,
    ) -> Result<Fetched, FetchError> {
        let (ls, bad_fallback) = LabelStudio::choose(cfg, req);
        let classified = source::classify(
            req.value.trim(),
            ls.url.as_ref(),
            req.task_id,
            cfg.max_bytes,
        );
        let classified = match (classified, bad_fallback) {
            (Err(FetchError::NoLabelStudioUrl { .. }), Some(bad_fallback)) => {
                return Err(bad_fallback);
            }
            (classified, _) => classified?,
        };
        match classified {
            Source::Inline {
                bytes,
                media_type,
                shown,
            } => {
                // RFC 2397: no media type means text/plain; trust magic bytes first.
                let content_type = media_type
                    .or_else(|| sniff::magic(&bytes).map(str::to_owned))
                    .unwrap_or_else(|| "text/plain;charset=US-ASCII".to_owned());
                Ok(Fetched {
                    bytes,
                    content_type,
                    uri: shown,
                })
            }
            Source::Remote(remote) => {
                // A download that starts on an untrusted `/setup` hostname
                // gets its failures explained.
                let from_setup = !ls.trusted
                    && ls
                        .url
                        .as_ref()
                        .is_some_and(|u| source::same_origin(&remote.url, u));
                let trusted = ls.url.filter(|_| ls.trusted);
                let job = Job {
                    remote,
                    // No trusted Label Studio: the key has nowhere to go.
                    credential: match trusted {
                        Some(_) => Credential::from_key(cfg.api_key.as_ref()),
                        None => Credential::None,
                    },
                    ls: trusted,
                    allowed_hosts: cfg.allowed_hosts.clone(),
                    allow_private: cfg.allow_private_networks
                        || self.inner.options.allow_private_networks,
                    max_bytes: cfg.max_bytes,
                };
                let fetched = self.shared(job).await;
                if from_setup {
                    fetched.map_err(with_setup_hint)
                } else {
                    fetched
                }
            }
        }
    }

    /// The in-progress transfer for `job`, joined or started. Runs without
    /// awaiting, so two calls polled together always share.
    fn shared(&self, job: Job) -> Shared<Pending> {
        let key = job.dedup_key();
        let mut inflight = self.inner.lock_inflight();
        if let Some(running) = inflight.get(&key).and_then(|(_, weak)| weak.upgrade()) {
            tracing::debug!(uri = %job.remote.uri, "joining a download in progress");
            return running;
        }
        // Drop entries whose every waiter was cancelled.
        inflight.retain(|_, (_, weak)| weak.upgrade().is_some());
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        let finished_key = key.clone();
        let pending: Pending = async move {
            let result = inner.run(&job).await;
            let mut inflight = inner.lock_inflight();
            if inflight
                .get(&finished_key)
                .is_some_and(|(owner, _)| *owner == id)
            {
                inflight.remove(&finished_key);
            }
            result
        }
        .boxed();
        let shared = pending.shared();
        if let Some(weak) = shared.downgrade() {
            inflight.insert(key, (id, weak));
        }
        shared
    }
}

/// A cached copy for `job`, unless it is over the job's size limit.
fn served(job: &Job, bytes: Bytes, content_type: String) -> Result<Fetched, FetchError> {
    let size = bytes.len() as u64;
    if size > job.max_bytes {
        return Err(FetchError::TooLarge {
            url: format!("GET {}", job.remote.label),
            size: Some(size),
            limit: job.max_bytes,
        });
    }
    Ok(Fetched {
        bytes,
        content_type,
        uri: job.remote.uri.clone(),
    })
}

impl Inner {
    /// The download slots of `url`'s origin (redirects count against the
    /// origin of the first request).
    fn origin_slots(&self, url: &Url) -> Arc<Semaphore> {
        let per_origin = self.options.max_per_origin.max(1);
        let mut origins = self.origins.lock().unwrap_or_else(|p| p.into_inner());
        if origins.len() >= ORIGINS_KEPT {
            // Only slots nobody holds or waits for can go.
            origins.retain(|_, slots| {
                Arc::strong_count(slots) > 1 || slots.available_permits() < per_origin
            });
        }
        origins
            .entry(url.origin().ascii_serialization())
            .or_insert_with(|| Arc::new(Semaphore::new(per_origin)))
            .clone()
    }

    fn lock_inflight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (u64, WeakShared<Pending>)>> {
        // Only inserts and removes happen under this lock; a poisoned map is
        // still consistent.
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cache lookup, then the download (under the concurrency bound), then
    /// the cache fill.
    async fn run(&self, job: &Job) -> Result<Fetched, FetchError> {
        let remote = &job.remote;
        let immutable = remote.kind.cacheable();
        let cache = self
            .cache
            .as_ref()
            .filter(|_| immutable || remote.kind.revalidatable());
        let cache_key = cache::key(remote.url.as_str());
        let credential = job.credential.fingerprint();
        let mut stale = None;
        if let Some(cache) = cache
            && let Some(hit) = cache.get(&cache_key, &credential).await
        {
            if immutable || hit.validity.is_fresh(http::now_unix()) {
                tracing::debug!(uri = %remote.uri, "download cache hit");
                return served(job, hit.bytes, hit.content_type);
            }
            stale = hit.validity.has_validators().then_some(hit);
        }

        // The semaphores are never closed, so acquiring cannot fail. The
        // origin's slot first: a download waiting for a busy origin must
        // not hold one of the global slots other origins could use.
        let origin = self.origin_slots(&remote.url);
        let origin_permit = origin.acquire().await.ok();
        let permit = self.permits.acquire().await.ok();
        tracing::debug!(uri = %remote.uri, "downloading");
        let ctx = http::Ctx {
            clients: &self.clients,
            tokens: &self.tokens,
            ls: job.ls.as_ref(),
            credential: &job.credential,
            allowed_hosts: &job.allowed_hosts,
            allow_private: job.allow_private,
            max_bytes: job.max_bytes,
            max_redirects: self.options.max_redirects,
            timeout: self.options.timeout,
        };
        let got = http::get(&ctx, remote, stale.as_ref().map(|hit| &hit.validity)).await?;
        drop((permit, origin_permit));
        let downloaded = match (got, stale) {
            (http::Got::NotModified(update), Some(hit)) => {
                tracing::debug!(uri = %remote.uri, "download cache hit, revalidated");
                let validity = hit.validity.refreshed(update);
                // Rewritten (and synced) only for something worth keeping:
                // a new lifetime or new validators, not every 304.
                let worth_keeping = validity.is_fresh(http::now_unix())
                    || validity.etag != hit.validity.etag
                    || validity.last_modified != hit.validity.last_modified;
                if let Some(cache) = cache.filter(|_| worth_keeping) {
                    cache
                        .put(
                            &cache_key,
                            &credential,
                            &hit.content_type,
                            hit.bytes.clone(),
                            validity,
                        )
                        .await;
                }
                return served(job, hit.bytes, hit.content_type);
            }
            (http::Got::Body(downloaded), _) => downloaded,
            (http::Got::NotModified(_), None) => {
                return Err(FetchError::Request {
                    url: remote.label.clone(),
                    reason: "304 Not Modified to a request that was not conditional".into(),
                });
            }
        };

        let content_type = sniff::content_type(
            downloaded.content_type.as_deref(),
            &downloaded.bytes,
            &remote.name,
        );
        let validity = if immutable {
            Some(cache::Validity::default())
        } else {
            downloaded.validity
        };
        if let Some((cache, validity)) = cache.zip(validity) {
            cache
                .put(
                    &cache_key,
                    &credential,
                    &content_type,
                    downloaded.bytes.clone(),
                    validity,
                )
                .await;
        }
        Ok(Fetched {
            bytes: downloaded.bytes,
            content_type,
            uri: remote.uri.clone(),
        })
    }
}
