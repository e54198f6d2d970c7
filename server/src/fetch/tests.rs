//! The fetcher against in-process servers on `127.0.0.1:0`: one plays Label
//! Studio (checks `Authorization`, issues access tokens, resolves cloud
//! URIs with a 303), another plays a storage bucket that fails any request
//! carrying credentials. Requests are counted; nothing sleeps.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use url::Url;

use super::auth::tests::jwt;
use super::*;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";
const LEGACY: &str = "0123456789abcdef0123456789abcdef01234567";
const UPLOAD: &str = "/data/upload/1/0a1b2c3d-cat.png";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The same token on every call: the fake Label Studio compares what it is
/// sent with `pat()`, so the expiry must not depend on the current second.
fn pat() -> String {
    const YEAR_2100: u64 = 4_102_444_800;
    jwt(&serde_json::json!({"token_type": "refresh", "exp": YEAR_2100, "jti": "pat"}))
}

/// Label Studio's state as the fake sees it.
struct Ls {
    storage: SocketAddr,
    /// Organisation has legacy tokens disabled.
    legacy_disabled: AtomicBool,
    /// The PAT is accepted by `/api/token/refresh/`.
    pat_valid: AtomicBool,
    /// Lifetime of issued access tokens, in seconds.
    access_ttl: AtomicU64,
    /// Access tokens currently accepted.
    access: Mutex<HashSet<String>>,
    refreshes: AtomicUsize,
    hits: Mutex<HashMap<String, usize>>,
}

impl Ls {
    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// `Err` carries the `detail` Label Studio answers a 401 with.
    fn authorised(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err("Authentication credentials were not provided.");
        };
        if let Some(token) = auth.strip_prefix("Token ") {
            if self.legacy_disabled.load(Ordering::SeqCst) {
                return Err("legacy token authentication has been disabled for this organization");
            }
            return if token == LEGACY {
                Ok(())
            } else {
                Err("Invalid token.")
            };
        }
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return if self.access.lock().expect("access lock").contains(token) {
                Ok(())
            } else {
                Err("Given token not valid for any token type")
            };
        }
        Err("Invalid token header.")
    }
}

async fn ls_routes(State(ls): State<Arc<Ls>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    *ls.hits
        .lock()
        .expect("hits lock")
        .entry(path.clone())
        .or_default() += 1;

    if path == "/api/token/refresh/" {
        let body = axum::body::to_bytes(req.into_body(), 10_000)
            .await
            .expect("refresh body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("refresh JSON");
        if body["refresh"] != pat() || !ls.pat_valid.load(Ordering::SeqCst) {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"detail": "Token is invalid or expired"})),
            )
                .into_response();
        }
        let n = ls.refreshes.fetch_add(1, Ordering::SeqCst);
        let ttl = ls.access_ttl.load(Ordering::SeqCst);
        let access =
            jwt(&serde_json::json!({"token_type": "access", "exp": now() + ttl, "jti": n}));
        ls.access
            .lock()
            .expect("access lock")
            .insert(access.clone());
        return axum::Json(serde_json::json!({ "access": access })).into_response();
    }
    // Public test routes.
    if path == "/loop" {
        return redirect(StatusCode::FOUND, "/loop");
    }
    if let Some(n) = path.strip_prefix("/chain/") {
        let n: u32 = n.parse().expect("chain step");
        return redirect(StatusCode::FOUND, &format!("/chain/{}", n + 1));
    }
    if path == "/hang" {
        std::future::pending::<()>().await;
    }

    if let Err(detail) = ls.authorised(req.headers()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "detail": detail })),
        )
            .into_response();
    }
    match path.as_str() {
        UPLOAD => ([(header::CONTENT_TYPE, "image/png")], PNG).into_response(),
        "/data/upload/1/big.png" => vec![0u8; 2_000].into_response(),
        "/data/upload/1/endless.bin" => {
            let chunks = futures::stream::repeat_with(|| {
                Ok::<_, Infallible>(Bytes::from_static(&[0u8; 1024]))
            });
            Response::new(Body::from_stream(chunks))
        }
        "/data/local-files/" => {
            let d = query.get("d").map(String::as_str).unwrap_or("");
            // No Content-Type: the fetcher must sniff or use the extension.
            let body: &[u8] = if d.ends_with(".png") {
                PNG
            } else {
                b"RIFF-less audio"
            };
            Response::new(Body::from(body))
        }
        "/tasks/1/resolve/" => {
            let uri = query.get("fileuri").map(String::as_str).unwrap_or("");
            let uri = base64::engine::general_purpose::URL_SAFE
                .decode(uri)
                .expect("fileuri is urlsafe base64");
            let uri = String::from_utf8(uri).expect("utf-8 URI");
            let Some(key) = uri.strip_prefix("s3://bucket/") else {
                return StatusCode::NOT_FOUND.into_response();
            };
            redirect(
                StatusCode::SEE_OTHER,
                &format!(
                    "http://{}/presigned/{key}?X-Amz-Signature=s3cr3t",
                    ls.storage
                ),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"detail": "Not found."})),
        )
            .into_response(),
    }
}

fn redirect(status: StatusCode, to: &str) -> Response {
    (status, [(header::LOCATION, to.to_owned())]).into_response()
}

/// The storage bucket: any `Authorization` header is a leak and fails.
#[derive(Default)]
struct Storage {
    hits: AtomicUsize,
}

async fn storage_routes(State(storage): State<Arc<Storage>>, req: Request) -> Response {
    storage.hits.fetch_add(1, Ordering::SeqCst);
    if req.headers().contains_key(header::AUTHORIZATION) {
        return (
            StatusCode::BAD_REQUEST,
            "Authorization header leaked to storage",
        )
            .into_response();
    }
    let path = req.uri().path();
    let port = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit(':').next())
        .unwrap_or("")
        .to_owned();
    if path == "/bounce-local" {
        // A name that resolves to loopback, as a rebinding DNS answer would.
        return redirect(
            StatusCode::FOUND,
            &format!("http://localhost:{port}/plain/cat.png"),
        );
    }
    if path == "/secret-403" {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"detail": "internal admin panel, password hunter2"})),
        )
            .into_response();
    }
    if path == "/secret-500" {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Traceback: connect(db, password=hunter2)",
        )
            .into_response();
    }
    if path == "/bounce" {
        // Same server, named by IP instead of `localhost`.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let port = host.and_then(|h| h.rsplit(':').next()).unwrap_or("");
        return redirect(
            StatusCode::FOUND,
            &format!("http://127.0.0.1:{port}/plain/cat.png"),
        );
    }
    if path.starts_with("/presigned/")
        && !req.uri().query().unwrap_or("").contains("X-Amz-Signature")
    {
        return StatusCode::FORBIDDEN.into_response();
    }
    ([(header::CONTENT_TYPE, "binary/octet-stream")], PNG).into_response()
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    // The listener is bound before this returns, so connections queue
    // until the server task accepts them.
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

struct Harness {
    ls: Arc<Ls>,
    ls_url: Url,
    storage: Arc<Storage>,
    storage_addr: SocketAddr,
    fetcher: Fetcher,
    cache_dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        Self::with_options(FetcherOptions::default()).await
    }

    async fn with_options(options: FetcherOptions) -> Self {
        let storage = Arc::new(Storage::default());
        let storage_addr = serve(
            Router::new()
                .fallback(storage_routes)
                .with_state(Arc::clone(&storage)),
        )
        .await;
        let ls = Arc::new(Ls {
            storage: storage_addr,
            legacy_disabled: AtomicBool::new(false),
            pat_valid: AtomicBool::new(true),
            access_ttl: AtomicU64::new(300),
            access: Mutex::new(HashSet::new()),
            refreshes: AtomicUsize::new(0),
            hits: Mutex::new(HashMap::new()),
        });
        let ls_addr = serve(
            Router::new()
                .fallback(ls_routes)
                .with_state(Arc::clone(&ls)),
        )
        .await;
        let cache_dir = tempfile::tempdir().expect("cache dir");
        let fetcher = Fetcher::with_options(FetcherOptions {
            cache_dir: Some(cache_dir.path().to_owned()),
            ..options
        })
        .expect("fetcher");
        Self {
            ls,
            ls_url: Url::parse(&format!("http://{ls_addr}")).expect("LS URL"),
            storage,
            storage_addr,
            fetcher,
            cache_dir,
        }
    }

    fn cfg(&self, key: Option<&str>) -> FetchConfig {
        FetchConfig {
            label_studio_url: Some(self.ls_url.clone()),
            api_key: key.map(Secret::new),
            ..FetchConfig::default()
        }
    }

    async fn fetch(
        &self,
        cfg: &FetchConfig,
        value: impl Into<String>,
    ) -> Result<Fetched, FetchError> {
        self.fetcher.fetch(cfg, &FetchRequest::new(value)).await
    }

    fn upload_url(&self) -> String {
        format!("http://{}{UPLOAD}", self.ls_url.authority())
    }
}

#[tokio::test]
async fn legacy_tokens_download_uploads() {
    let h = Harness::new().await;
    let got = h.fetch(&h.cfg(Some(LEGACY)), UPLOAD).await.expect("fetch");
    assert_eq!(got.bytes, PNG);
    assert_eq!(got.content_type, "image/png");
    assert_eq!(got.uri, format!("http://{}{UPLOAD}", h.ls_url.authority()));
}

#[tokio::test]
async fn absolute_urls_on_the_label_studio_origin_get_credentials() {
    let h = Harness::new().await;
    let url = h.upload_url();
    let got = h.fetch(&h.cfg(Some(LEGACY)), &url).await.expect("fetch");
    assert_eq!(got.bytes, PNG);
}

#[tokio::test]
async fn a_rejected_key_names_the_setting_and_never_appears() {
    let h = Harness::new().await;
    let err = h
        .fetch(&h.cfg(Some("wrong-key-123")), UPLOAD)
        .await
        .expect_err("401");
    assert_eq!(
        err.to_string(),
        format!(
            "GET http://{}{UPLOAD}: 401 Unauthorized from Label Studio — set LABEL_STUDIO_API_KEY (or fetch.api_key) to a token of a user in that organisation",
            h.ls_url.authority()
        )
    );
    assert!(!format!("{err} {err:?}").contains("wrong-key-123"));
    assert!(matches!(err, FetchError::Status { code: 401, .. }));
}

#[tokio::test]
async fn a_missing_key_says_none_is_configured() {
    let h = Harness::new().await;
    let err = h.fetch(&h.cfg(None), UPLOAD).await.expect_err("401");
    assert!(
        err.to_string().contains("no API key is configured"),
        "{err}"
    );
}

#[tokio::test]
async fn disabled_legacy_tokens_suggest_a_personal_access_token() {
    let h = Harness::new().await;
    h.ls.legacy_disabled.store(true, Ordering::SeqCst);
    let err = h
        .fetch(&h.cfg(Some(LEGACY)), UPLOAD)
        .await
        .expect_err("401");
    assert!(
        err.to_string().contains("legacy tokens are disabled"),
        "{err}"
    );
    assert!(!err.to_string().contains(LEGACY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_personal_access_token_is_exchanged_once_for_concurrent_downloads() {
    let h = Harness::new().await;
    let cfg = h.cfg(Some(&pat()));
    // Distinct URLs, so in-flight dedup does not hide concurrent refreshes.
    let fetches = (0..8).map(|i| h.fetch(&cfg, format!("/data/local-files/?d={i}.png")));
    for got in futures::future::join_all(fetches).await {
        assert_eq!(got.expect("fetch").bytes, PNG);
    }
    assert_eq!(h.ls.refreshes.load(Ordering::SeqCst), 1);
    // And the access token stays cached for later downloads.
    h.fetch(&cfg, UPLOAD).await.expect("fetch");
    assert_eq!(h.ls.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn access_tokens_near_their_exp_are_refreshed() {
    let h = Harness::new().await;
    // Inside the refresh margin from the start: every download refreshes.
    h.ls.access_ttl.store(10, Ordering::SeqCst);
    let cfg = h.cfg(Some(&pat()));
    h.fetch(&cfg, "/data/local-files/?d=a.png")
        .await
        .expect("first");
    h.fetch(&cfg, "/data/local-files/?d=b.png")
        .await
        .expect("second");
    assert_eq!(h.ls.refreshes.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_401_to_a_cached_access_token_refreshes_once_and_retries() {
    let h = Harness::new().await;
    let cfg = h.cfg(Some(&pat()));
    h.fetch(&cfg, "/data/local-files/?d=a.png")
        .await
        .expect("first");
    // Label Studio forgets every access token (revoked, restarted, …).
    h.ls.access.lock().expect("access lock").clear();
    let got = h
        .fetch(&cfg, "/data/local-files/?d=a.png")
        .await
        .expect("retried");
    assert_eq!(got.bytes, PNG);
    assert_eq!(h.ls.refreshes.load(Ordering::SeqCst), 2);
    assert_eq!(h.ls.hits("/data/local-files/"), 3, "ok, 401, retry");
}

#[tokio::test]
async fn a_rejected_personal_access_token_fails_clearly() {
    let h = Harness::new().await;
    h.ls.pat_valid.store(false, Ordering::SeqCst);
    let pat = pat();
    let err = h
        .fetch(&h.cfg(Some(&pat)), UPLOAD)
        .await
        .expect_err("refresh fails");
    let text = err.to_string();
    assert!(matches!(err, FetchError::TokenRefresh { .. }), "{text}");
    assert!(
        text.contains("401 Unauthorized from Label Studio"),
        "{text}"
    );
    assert!(text.contains("revoked"), "{text}");
    assert!(!text.contains(&pat));
    assert_eq!(h.ls.hits(UPLOAD), 0);
}

#[tokio::test]
async fn cloud_uris_follow_the_303_without_sending_credentials() {
    let h = Harness::new().await;
    for key in [LEGACY.to_owned(), pat()] {
        let req = FetchRequest {
            task_id: Some(1),
            ..FetchRequest::new("s3://bucket/dir/cat.png")
        };
        let got = h
            .fetcher
            .fetch(&h.cfg(Some(&key)), &req)
            .await
            .expect("fetch");
        assert_eq!(got.bytes, PNG);
        // binary/octet-stream from the bucket: sniffed instead.
        assert_eq!(got.content_type, "image/png");
        assert_eq!(got.uri, "s3://bucket/dir/cat.png");
    }
    assert_eq!(h.storage.hits.load(Ordering::SeqCst), 2);
    assert_eq!(h.ls.hits("/tasks/1/resolve/"), 2);
}

#[tokio::test]
async fn cloud_uris_no_storage_matches_get_a_hint() {
    let h = Harness::new().await;
    let req = FetchRequest {
        task_id: Some(1),
        ..FetchRequest::new("gs://other/x.png")
    };
    let err = h
        .fetcher
        .fetch(&h.cfg(Some(LEGACY)), &req)
        .await
        .expect_err("404");
    let text = err.to_string();
    assert!(
        text.starts_with("GET gs://other/x.png (resolved by Label Studio at"),
        "{text}"
    );
    assert!(text.contains("404 Not Found from Label Studio"), "{text}");
    assert!(text.contains("no cloud storage"), "{text}");
}

#[tokio::test]
async fn credentials_never_go_to_other_hosts() {
    let h = Harness::new().await;
    let url = format!("http://{}/plain/cat.png", h.storage_addr);
    let cfg = FetchConfig {
        // The stand-in for another host is on loopback.
        allow_private_networks: true,
        ..h.cfg(Some(LEGACY))
    };
    let got = h.fetch(&cfg, &url).await.expect("fetch");
    assert_eq!(got.bytes, PNG);
    assert_eq!(h.storage.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn allowed_hosts_refuse_other_hosts_but_not_label_studio() {
    let h = Harness::new().await;
    let cfg = FetchConfig {
        allowed_hosts: vec!["images.example.com".into()],
        ..h.cfg(Some(LEGACY))
    };
    let url = format!("http://{}/plain/cat.png", h.storage_addr);
    let err = h.fetch(&cfg, &url).await.expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "GET {url}: host 127.0.0.1 is not in fetch.allowed_hosts (images.example.com); only Label Studio and those hosts may be fetched"
        )
    );
    assert_eq!(h.storage.hits.load(Ordering::SeqCst), 0, "nothing was sent");
    h.fetch(&cfg, UPLOAD)
        .await
        .expect("Label Studio is always allowed");
}

#[tokio::test]
async fn allowed_hosts_apply_to_every_redirect() {
    let h = Harness::new().await;
    let cfg = FetchConfig {
        allowed_hosts: vec!["localhost".into()],
        ..h.cfg(None)
    };
    // localhost is allowed; it redirects to 127.0.0.1, which is not.
    let url = format!("http://localhost:{}/bounce", h.storage_addr.port());
    let err = h.fetch(&cfg, &url).await.expect_err("refused");
    assert!(
        matches!(err, FetchError::HostNotAllowed { ref host, .. } if host == "127.0.0.1"),
        "{err}"
    );
    assert_eq!(h.storage.hits.load(Ordering::SeqCst), 1, "only the bounce");
}

#[tokio::test]
async fn files_over_the_limit_are_refused_by_content_length() {
    let h = Harness::new().await;
    let cfg = FetchConfig {
        max_bytes: 1_000,
        ..h.cfg(Some(LEGACY))
    };
    let err = h
        .fetch(&cfg, "/data/upload/1/big.png")
        .await
        .expect_err("too big");
    assert_eq!(
        err.to_string(),
        format!(
            "GET http://{}/data/upload/1/big.png: file is 2 kB, over the 1 kB limit (fetch.max_bytes)",
            h.ls_url.authority()
        )
    );
}

#[tokio::test]
async fn streams_over_the_limit_are_cut_off() {
    let h = Harness::new().await;
    let cfg = FetchConfig {
        max_bytes: 100_000,
        ..h.cfg(Some(LEGACY))
    };
    // The body never ends: only the cap can finish this download.
    let err = h
        .fetch(&cfg, "/data/upload/1/endless.bin")
        .await
        .expect_err("too big");
    assert!(
        matches!(
            err,
            FetchError::TooLarge {
                size: None,
                limit: 100_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("over the 100 kB limit"), "{err}");
}

#[tokio::test]
async fn redirect_loops_are_detected() {
    let h = Harness::new().await;
    let err = h.fetch(&h.cfg(None), "/loop").await.expect_err("loop");
    assert!(matches!(err, FetchError::RedirectLoop { .. }), "{err}");
    assert!(err.to_string().contains("redirect loop"), "{err}");
}

#[tokio::test]
async fn redirect_chains_stop_after_the_limit() {
    let h = Harness::new().await;
    let err = h
        .fetch(&h.cfg(None), "/chain/0")
        .await
        .expect_err("too many");
    assert_eq!(
        err,
        FetchError::TooManyRedirects {
            url: format!("{}chain/0", h.ls_url),
            max: DEFAULT_MAX_REDIRECTS,
        }
    );
    let hops: usize = (0..10).map(|i| h.ls.hits(&format!("/chain/{i}"))).sum();
    assert_eq!(
        hops,
        DEFAULT_MAX_REDIRECTS + 1,
        "the first request and 5 redirects"
    );
}

#[tokio::test]
async fn slow_servers_hit_the_total_timeout() {
    let h = Harness::with_options(FetcherOptions {
        timeout: Duration::from_millis(300),
        ..FetcherOptions::default()
    })
    .await;
    let err = h.fetch(&h.cfg(None), "/hang").await.expect_err("timeout");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn refused_connections_say_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let fetcher = Fetcher::with_options(FetcherOptions::default()).expect("fetcher");
    let cfg = FetchConfig {
        allow_private_networks: true,
        ..FetchConfig::default()
    };
    let err = fetcher
        .fetch(&cfg, &FetchRequest::new(format!("http://{addr}/a.png")))
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .starts_with(&format!("GET http://{addr}/a.png: could not connect")),
        "{err}"
    );
}

#[tokio::test]
async fn data_uris_need_no_server() {
    let fetcher = Fetcher::with_options(FetcherOptions::default()).expect("fetcher");
    let cfg = FetchConfig::default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(PNG);
    let got = fetcher
        .fetch(&cfg, &FetchRequest::new(format!(" data:;base64,{b64} ")))
        .await
        .expect("base64");
    assert_eq!(
        (got.bytes.as_ref(), got.content_type.as_str()),
        (PNG, "image/png")
    );
    assert_eq!(got.uri, "data:;base64,…");
    let got = fetcher
        .fetch(&cfg, &FetchRequest::new("data:text/plain,hello%20world"))
        .await
        .expect("percent-encoded");
    assert_eq!(
        (got.bytes.as_ref(), got.content_type.as_str()),
        (&b"hello world"[..], "text/plain")
    );
    let got = fetcher
        .fetch(&cfg, &FetchRequest::new("data:,hi"))
        .await
        .expect("no media type");
    assert_eq!(got.content_type, "text/plain;charset=US-ASCII");
    let small = FetchConfig {
        max_bytes: 4,
        ..FetchConfig::default()
    };
    let err = fetcher
        .fetch(
            &small,
            &FetchRequest::new(format!("data:image/png;base64,{b64}")),
        )
        .await
        .expect_err("too big");
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn a_cache_hit_avoids_a_second_request_even_after_a_restart() {
    let h = Harness::new().await;
    let cfg = h.cfg(Some(LEGACY));
    let first = h.fetch(&cfg, UPLOAD).await.expect("first");
    let second = h.fetch(&cfg, UPLOAD).await.expect("second");
    assert_eq!(first, second);
    assert_eq!(h.ls.hits(UPLOAD), 1);

    let restarted = Fetcher::with_options(FetcherOptions {
        cache_dir: Some(h.cache_dir.path().to_owned()),
        ..FetcherOptions::default()
    })
    .expect("fetcher");
    let third = restarted
        .fetch(&cfg, &FetchRequest::new(UPLOAD))
        .await
        .expect("third");
    assert_eq!(third, first);
    assert_eq!(h.ls.hits(UPLOAD), 1);
}

#[tokio::test]
async fn cached_files_are_not_served_to_another_key() {
    let h = Harness::new().await;
    h.fetch(&h.cfg(Some(LEGACY)), UPLOAD).await.expect("cached");
    let err = h
        .fetch(&h.cfg(None), UPLOAD)
        .await
        .expect_err("must ask Label Studio");
    assert!(matches!(err, FetchError::Status { code: 401, .. }), "{err}");
    assert_eq!(h.ls.hits(UPLOAD), 2);
}

#[tokio::test]
async fn cached_files_still_respect_a_smaller_limit() {
    let h = Harness::new().await;
    h.fetch(&h.cfg(Some(LEGACY)), UPLOAD).await.expect("cached");
    let small = FetchConfig {
        max_bytes: 8,
        ..h.cfg(Some(LEGACY))
    };
    let err = h.fetch(&small, UPLOAD).await.expect_err("too big");
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn corrupt_and_truncated_cache_entries_are_refetched() {
    let h = Harness::new().await;
    let cfg = h.cfg(Some(LEGACY));
    h.fetch(&cfg, UPLOAD).await.expect("first");
    let entry = h.cache_dir.path().join(cache::key(&h.upload_url()));
    let full = std::fs::read(&entry).expect("cache entry exists");

    std::fs::write(&entry, &full[..full.len() - 5]).expect("truncate");
    assert_eq!(h.fetch(&cfg, UPLOAD).await.expect("refetched").bytes, PNG);
    assert_eq!(h.ls.hits(UPLOAD), 2);

    let mut flipped = std::fs::read(&entry).expect("rewritten entry");
    let last = flipped.len() - 1;
    flipped[last] ^= 0xFF;
    std::fs::write(&entry, flipped).expect("corrupt");
    assert_eq!(h.fetch(&cfg, UPLOAD).await.expect("refetched").bytes, PNG);
    assert_eq!(h.ls.hits(UPLOAD), 3);

    // Repaired: served from the cache again.
    h.fetch(&cfg, UPLOAD).await.expect("cached");
    assert_eq!(h.ls.hits(UPLOAD), 3);
}

#[tokio::test]
async fn local_files_are_not_cached_and_typed_by_extension() {
    let h = Harness::new().await;
    let cfg = h.cfg(Some(LEGACY));
    for _ in 0..2 {
        let got = h
            .fetch(&cfg, "/data/local-files/?d=clips/a.wav")
            .await
            .expect("fetch");
        assert_eq!(got.content_type, "audio/wav");
    }
    assert_eq!(h.ls.hits("/data/local-files/"), 2);
}

#[tokio::test]
async fn missing_local_files_hint_at_local_file_serving() {
    let h = Harness::new().await;
    let err = h
        .fetch(&h.cfg(Some(LEGACY)), "/data/local-files?d=a.png")
        .await
        .expect_err("404");
    assert!(
        err.to_string()
            .contains("LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"),
        "{err}"
    );
}

#[tokio::test]
async fn concurrent_requests_for_one_file_share_one_download() {
    let h = Harness::new().await;
    let cfg = h.cfg(Some(LEGACY));
    // Local files are never cached, so only in-flight sharing saves a request.
    let value = "/data/local-files/?d=shared.png";
    let (a, b) = tokio::join!(h.fetch(&cfg, value), h.fetch(&cfg, value));
    assert_eq!(a.expect("a"), b.expect("b"));
    assert_eq!(h.ls.hits("/data/local-files/"), 1);
    // Once finished, a later request downloads again.
    h.fetch(&cfg, value).await.expect("later");
    assert_eq!(h.ls.hits("/data/local-files/"), 2);
}

#[tokio::test]
async fn an_allow_listed_setup_hostname_is_a_fallback_label_studio_url() {
    let h = Harness::new().await;
    let cfg = FetchConfig {
        label_studio_url: None,
        allowed_hosts: vec!["127.0.0.1".into()],
        ..h.cfg(Some(LEGACY))
    };
    let req = FetchRequest {
        fallback_label_studio_url: Some(h.ls_url.to_string()),
        ..FetchRequest::new(UPLOAD)
    };
    assert_eq!(h.fetcher.fetch(&cfg, &req).await.expect("fetch").bytes, PNG);

    let err = h.fetch(&cfg, UPLOAD).await.expect_err("no URL at all");
    assert_eq!(
        err.to_string(),
        format!(
            "relative URL {UPLOAD} but no Label Studio URL is configured (set LABEL_STUDIO_URL)"
        )
    );
}

#[test]
fn env_defaults_follow_the_sdk_names() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let cfg = FetchConfig::default()
        .with_defaults_from(env(&[
            ("LABEL_STUDIO_HOST", "localhost:8080"),
            ("LABEL_STUDIO_URL", ""),
            ("LABEL_STUDIO_ACCESS_TOKEN", "tok"),
        ]))
        .expect("valid");
    assert_eq!(
        cfg.label_studio_url.as_ref().map(Url::as_str),
        Some("http://localhost:8080/")
    );
    assert_eq!(cfg.api_key, Some(Secret::new("tok")));

    let cfg = FetchConfig::default()
        .with_defaults_from(env(&[
            ("LABEL_STUDIO_URL", "https://ls.example.com/sub"),
            ("LABEL_STUDIO_HOST", "http://ignored"),
            ("LABEL_STUDIO_API_KEY", "primary"),
            ("LABEL_STUDIO_ACCESS_TOKEN", "ignored"),
        ]))
        .expect("valid");
    assert_eq!(
        cfg.label_studio_url.as_ref().map(Url::as_str),
        Some("https://ls.example.com/sub")
    );
    assert_eq!(cfg.api_key, Some(Secret::new("primary")));

    let configured = FetchConfig {
        api_key: Some(Secret::new("mine")),
        ..FetchConfig::default()
    };
    let cfg = configured
        .with_defaults_from(env(&[("LABEL_STUDIO_API_KEY", "env")]))
        .expect("valid");
    assert_eq!(cfg.api_key, Some(Secret::new("mine")), "configuration wins");

    let err = FetchConfig::default()
        .with_defaults_from(env(&[("LABEL_STUDIO_URL", "ftp://ls")]))
        .expect_err("bad scheme");
    assert_eq!(
        err.to_string(),
        "invalid Label Studio URL \"ftp://ls\" in LABEL_STUDIO_URL: only http:// and https:// are supported"
    );
}

#[test]
fn label_studio_urls_with_passwords_are_refused_without_echoing_them() {
    let err = parse_label_studio_url("http://u:hunter2@ls:8080", "LABEL_STUDIO_URL")
        .expect_err("userinfo");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn settings_are_checked_and_defaulted() {
    let settings = super::FetchSettings {
        label_studio_url: Some("127.0.0.1:8089".into()),
        api_key: Some(Secret::new("abc")),
        allowed_hosts: vec!["images.example.com".into()],
        max_bytes: None,
        allow_private_networks: true,
    };
    let cfg = FetchConfig::from_settings(&settings).expect("valid settings");
    assert_eq!(
        cfg.label_studio_url.as_ref().map(Url::as_str),
        Some("http://127.0.0.1:8089/")
    );
    assert_eq!(cfg.api_key, Some(Secret::new("abc")));
    assert_eq!(cfg.allowed_hosts, ["images.example.com"]);
    assert_eq!(cfg.max_bytes, DEFAULT_MAX_BYTES);
    assert!(cfg.allow_private_networks);
    assert!(
        !FetchConfig::default().allow_private_networks,
        "opt-in only"
    );
    assert!(format!("{cfg:?}").contains("***"));
    assert!(!format!("{cfg:?}").contains("abc"));

    let bad = super::FetchSettings {
        label_studio_url: Some("ftp://ls".into()),
        ..super::FetchSettings::default()
    };
    let err = FetchConfig::from_settings(&bad).expect_err("bad scheme");
    assert!(
        err.to_string().contains("in fetch.label_studio_url"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bad_setup_hostname_is_reported_only_when_needed() {
    let fetcher = Fetcher::with_options(FetcherOptions::default()).expect("fetcher");
    let req = |value: &str| FetchRequest {
        fallback_label_studio_url: Some("ftp://nope".into()),
        ..FetchRequest::new(value)
    };
    let err = fetcher
        .fetch(&FetchConfig::default(), &req(UPLOAD))
        .await
        .expect_err("bad hostname");
    assert!(err.to_string().contains("in /setup hostname"), "{err}");
    fetcher
        .fetch(&FetchConfig::default(), &req("data:,ok"))
        .await
        .expect("data: URIs need no Label Studio");
}

/// A server that `/setup` was pointed at by someone else: it records every
/// request and whether it carried `Authorization`, and lures credentials by
/// answering 401 (and accepting any token refresh).
#[derive(Default)]
struct Attacker {
    requests: Mutex<Vec<(String, bool)>>,
}

impl Attacker {
    async fn start() -> (Arc<Self>, SocketAddr) {
        let attacker = Arc::new(Self::default());
        let addr = serve(
            Router::new()
                .fallback(attacker_routes)
                .with_state(Arc::clone(&attacker)),
        )
        .await;
        (attacker, addr)
    }

    fn requests(&self) -> Vec<(String, bool)> {
        self.requests.lock().expect("requests lock").clone()
    }
}

async fn attacker_routes(State(attacker): State<Arc<Attacker>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let authorised = req.headers().contains_key(header::AUTHORIZATION);
    attacker
        .requests
        .lock()
        .expect("requests lock")
        .push((path.clone(), authorised));
    if path == "/api/token/refresh/" {
        return axum::Json(serde_json::json!({"access": "stolen"})).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({"detail": "send your token"})),
    )
        .into_response()
}

const SETUP_HINT: &str = "set fetch.label_studio_url (or LABEL_STUDIO_URL) and fetch.api_key so the server can download /data/upload/... files";

#[tokio::test]
async fn setup_hostname_never_receives_credentials() {
    let h = Harness::new().await;
    let (attacker, attacker_addr) = Attacker::start().await;
    let hijacked = |value: &str| FetchRequest {
        task_id: Some(1),
        fallback_label_studio_url: Some(format!("http://{attacker_addr}")),
        ..FetchRequest::new(value)
    };
    for key in [LEGACY.to_owned(), pat()] {
        // The worst case: private networks opted in, so the request does
        // reach the attacker; no Label Studio URL configured.
        let cfg = FetchConfig {
            label_studio_url: None,
            allow_private_networks: true,
            ..h.cfg(Some(&key))
        };
        for value in [
            UPLOAD,
            "/data/local-files/?d=a.png",
            "s3://bucket/dir/cat.png",
        ] {
            let err = h
                .fetcher
                .fetch(&cfg, &hijacked(value))
                .await
                .expect_err("the attacker answers 401");
            let text = err.to_string();
            assert!(
                matches!(err, FetchError::Status { code: 401, .. }),
                "{text}"
            );
            assert!(text.contains(SETUP_HINT), "{text}");
            assert!(
                !text.contains(&key) && !text.contains("send your token"),
                "{text}"
            );
        }
    }
    let seen = attacker.requests();
    assert_eq!(seen.len(), 6, "every download went there: {seen:?}");
    assert!(
        seen.iter().all(|(_, auth)| !auth),
        "credentials leaked: {seen:?}"
    );
    assert!(
        seen.iter().all(|(path, _)| path != "/api/token/refresh/"),
        "a personal access token was offered: {seen:?}"
    );

    // By default the loopback attacker is not even contacted.
    let cfg = FetchConfig {
        label_studio_url: None,
        ..h.cfg(Some(LEGACY))
    };
    let err = h
        .fetcher
        .fetch(&cfg, &hijacked(UPLOAD))
        .await
        .expect_err("private");
    assert!(matches!(err, FetchError::PrivateAddress { .. }), "{err}");
    assert!(err.to_string().contains(SETUP_HINT), "{err}");
    assert_eq!(attacker.requests().len(), 6);

    // A configured Label Studio URL wins over any /setup hostname and
    // gets the key, personal access tokens included.
    for key in [LEGACY.to_owned(), pat()] {
        let got = h
            .fetcher
            .fetch(&h.cfg(Some(&key)), &hijacked("/data/local-files/?d=a.png"))
            .await
            .expect("the configured Label Studio serves it");
        assert_eq!(got.bytes, PNG);
    }
    assert_eq!(
        attacker.requests().len(),
        6,
        "the attacker saw nothing more"
    );
}

fn assert_private_refusal(err: &FetchError, url: &str) {
    let text = err.to_string();
    assert!(
        matches!(err, FetchError::PrivateAddress { .. }),
        "{url}: {text}"
    );
    assert!(text.starts_with(&format!("GET {url}")), "{text}");
    assert!(
        text.contains("resolves to a private/loopback address; add it to fetch.allowed_hosts or set allow_private_networks"),
        "{text}"
    );
}

#[tokio::test]
async fn private_and_loopback_destinations_are_refused_by_default() {
    let h = Harness::new().await;
    let cfg = h.cfg(Some(LEGACY));
    let port = h.storage_addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/plain/cat.png"),
        format!("http://localhost:{port}/plain/cat.png"),
        format!("http://[::1]:{port}/plain/cat.png"),
        format!("http://[::ffff:7f00:1]:{port}/plain/cat.png"),
        format!("http://0.0.0.0:{port}/plain/cat.png"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/a.png".to_owned(),
        "http://192.168.1.1/a.png".to_owned(),
        "http://100.64.0.1/a.png".to_owned(),
        "http://[fd00::1]/a.png".to_owned(),
    ] {
        let err = h.fetch(&cfg, &url).await.expect_err(&url);
        assert_private_refusal(&err, &url);
    }
    assert_eq!(h.storage.hits.load(Ordering::SeqCst), 0, "nothing was sent");

    // A public host (stood in for by a test DNS entry) is fetched, but its
    // redirects to loopback, by IP or by name, are refused.
    let fetcher = Fetcher::with_public_test_hosts(
        FetcherOptions::default(),
        &[("public.example", h.storage_addr)],
    )
    .expect("fetcher");
    let fetch = |url: String| {
        let fetcher = fetcher.clone();
        let cfg = cfg.clone();
        async move { fetcher.fetch(&cfg, &FetchRequest::new(url)).await }
    };
    let public = format!("http://public.example:{port}");
    let got = fetch(format!("{public}/plain/cat.png"))
        .await
        .expect("public hosts are fetched");
    assert_eq!(got.bytes, PNG);
    for (path, target) in [
        ("/bounce", format!("http://127.0.0.1:{port}/plain/cat.png")),
        (
            "/bounce-local",
            format!("http://localhost:{port}/plain/cat.png"),
        ),
    ] {
        let err = fetch(format!("{public}{path}")).await.expect_err(path);
        assert_private_refusal(&err, &format!("{public}{path}, redirected to {target}"));
    }
    assert_eq!(
        h.storage.hits.load(Ordering::SeqCst),
        3,
        "the file and the two redirects; never the private targets"
    );
    // Label Studio's configured origin needs no opt-in, on loopback too.
    assert_eq!(
        h.fetch(&cfg, UPLOAD).await.expect("Label Studio").bytes,
        PNG
    );
}

/// The refusal of `http://<host>:<port>/a.png`, with the port blanked out.
async fn refusal(h: &Harness, host: &str, port: u16) -> String {
    let url = format!("http://{host}:{port}/a.png");
    let err = h.fetch(&h.cfg(None), &url).await.expect_err("refused");
    assert_private_refusal(&err, &url);
    err.to_string().replace(&port.to_string(), "<port>")
}

#[tokio::test]
async fn the_refusal_is_the_same_whether_a_port_is_open_or_closed() {
    let h = Harness::new().await;
    let open = h.storage_addr.port();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        assert_eq!(
            refusal(&h, host, open).await,
            refusal(&h, host, closed).await,
            "{host}"
        );
    }
    assert_eq!(h.storage.hits.load(Ordering::SeqCst), 0, "no connection");
}

/// A forward proxy that answers every request itself with [`PNG`] and
/// records the request target it was asked for.
async fn proxy_routes(State(asked): State<Arc<Mutex<Vec<String>>>>, req: Request) -> Response {
    asked.lock().expect("lock").push(req.uri().to_string());
    ([(header::CONTENT_TYPE, "image/png")], PNG).into_response()
}

#[tokio::test]
async fn a_forward_proxy_never_carries_guarded_hops_to_private_addresses() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let proxy = serve(
        Router::new()
            .fallback(proxy_routes)
            .with_state(Arc::clone(&asked)),
    )
    .await;
    let h = Harness::with_options(FetcherOptions {
        proxy: ProxySettings {
            http: Some(format!("http://{proxy}")),
            ..ProxySettings::default()
        },
        ..FetcherOptions::default()
    })
    .await;
    let port = h.storage_addr.port();
    // The proxy resolves the names it is given, so without a check of our
    // own it would fetch these for whoever wrote the task.
    for url in [
        format!("http://localhost:{port}/plain/cat.png"),
        format!("http://127.0.0.1:{port}/plain/cat.png"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let err = h.fetch(&h.cfg(None), &url).await.expect_err(&url);
        assert_private_refusal(&err, &url);
    }
    assert!(
        asked.lock().expect("lock").is_empty(),
        "the proxy was never asked"
    );

    // The proxy is in use: an opted-in private destination goes through it.
    let opted_in = FetchConfig {
        allow_private_networks: true,
        ..h.cfg(None)
    };
    let url = format!("http://localhost:{port}/plain/cat.png");
    let got = h.fetch(&opted_in, &url).await.expect("through the proxy");
    assert_eq!(got.bytes, PNG);
    assert_eq!(*asked.lock().expect("lock"), [url]);
    assert_eq!(h.storage.hits.load(Ordering::SeqCst), 0, "never directly");
}

#[tokio::test]
async fn upstream_error_bodies_are_not_echoed() {
    let h = Harness::new().await;
    let cfg = FetchConfig {
        allow_private_networks: true,
        ..h.cfg(None)
    };
    for (path, status) in [
        ("/secret-403", "403 Forbidden"),
        ("/secret-500", "500 Internal Server Error"),
    ] {
        let url = format!("http://{}{path}", h.storage_addr);
        let err = h.fetch(&cfg, &url).await.expect_err(path);
        assert_eq!(
            err.to_string(),
            format!("GET {url}: {status} from {}", h.storage_addr)
        );
    }
    // Label Studio's own explanations are not quoted either (they only
    // pick the hint).
    let err = h
        .fetch(&h.cfg(Some("wrong-key")), UPLOAD)
        .await
        .expect_err("401");
    assert!(!err.to_string().contains("Invalid token"), "{err}");
    h.ls.legacy_disabled.store(true, Ordering::SeqCst);
    let err = h
        .fetch(&h.cfg(Some(LEGACY)), UPLOAD)
        .await
        .expect_err("401");
    assert!(
        err.to_string().contains("legacy tokens are disabled"),
        "{err}"
    );
    assert!(!err.to_string().contains("organization"), "{err}");
}

#[tokio::test]
async fn allowed_hosts_and_opt_in_allow_private_destinations() {
    let h = Harness::new().await;
    let port = h.storage_addr.port();
    let by_name = format!("http://localhost:{port}/plain/cat.png");
    let by_ip = format!("http://127.0.0.1:{port}/plain/cat.png");

    // A listed host may resolve to a private address: it was listed on purpose.
    let listed = FetchConfig {
        allowed_hosts: vec!["localhost".into()],
        ..h.cfg(None)
    };
    assert_eq!(h.fetch(&listed, &by_name).await.expect("listed").bytes, PNG);

    // The backend opts in.
    let backend = FetchConfig {
        allow_private_networks: true,
        ..h.cfg(None)
    };
    for url in [&by_name, &by_ip] {
        assert_eq!(h.fetch(&backend, url).await.expect("opted in").bytes, PNG);
    }

    // The server opts in for every backend.
    let server = Fetcher::with_options(FetcherOptions {
        allow_private_networks: true,
        ..FetcherOptions::default()
    })
    .expect("fetcher");
    for url in [&by_name, &by_ip] {
        let got = server
            .fetch(&h.cfg(None), &FetchRequest::new(url.as_str()))
            .await
            .expect("server opted in");
        assert_eq!(got.bytes, PNG);
    }
    assert_eq!(h.storage.hits.load(Ordering::SeqCst), 5);

    // Without either, the same URLs are refused.
    for url in [&by_name, &by_ip] {
        let err = h.fetch(&h.cfg(None), url).await.expect_err("default");
        assert_private_refusal(&err, url);
    }
}

/// Requests in progress at one origin, across origins, and the peaks. Each
/// request is held at `gate` until the test lets it go.
struct Held {
    now: AtomicUsize,
    peak: AtomicUsize,
    total_now: Arc<AtomicUsize>,
    total_peak: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

async fn held_routes(State(held): State<Arc<Held>>) -> Response {
    let now = held.now.fetch_add(1, Ordering::SeqCst) + 1;
    held.peak.fetch_max(now, Ordering::SeqCst);
    let total = held.total_now.fetch_add(1, Ordering::SeqCst) + 1;
    held.total_peak.fetch_max(total, Ordering::SeqCst);
    // Never closed: acquiring waits for the test's release.
    let _released = held.gate.acquire().await.ok();
    held.now.fetch_sub(1, Ordering::SeqCst);
    held.total_now.fetch_sub(1, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "image/png")], PNG).into_response()
}

#[tokio::test]
async fn downloads_per_origin_are_limited_like_a_browsers() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let total_now = Arc::new(AtomicUsize::new(0));
    let total_peak = Arc::new(AtomicUsize::new(0));
    let mut origins = Vec::new();
    for _ in 0..2 {
        let held = Arc::new(Held {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            total_now: Arc::clone(&total_now),
            total_peak: Arc::clone(&total_peak),
            gate: Arc::clone(&gate),
        });
        let addr = serve(
            Router::new()
                .fallback(held_routes)
                .with_state(Arc::clone(&held)),
        )
        .await;
        origins.push((addr, held));
    }
    let fetcher = Fetcher::with_options(FetcherOptions {
        max_per_origin: 3,
        ..FetcherOptions::default()
    })
    .expect("fetcher");
    let cfg = FetchConfig {
        allow_private_networks: true,
        ..FetchConfig::default()
    };
    let fetches = origins.iter().flat_map(|(addr, _)| {
        let cfg = &cfg;
        let fetcher = &fetcher;
        (0..12).map(move |i| async move {
            fetcher
                .fetch(cfg, &FetchRequest::new(format!("http://{addr}/{i}.png")))
                .await
        })
    });
    let all = futures::future::join_all(fetches);
    let release = async {
        // Every origin fills its slots while the gate is shut; without the
        // limit all 24 requests would be inside by now.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while total_now.load(Ordering::SeqCst) < 6 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slots never filled"
            );
            tokio::task::yield_now().await;
        }
        gate.add_permits(1 << 20);
    };
    let (results, ()) = tokio::join!(all, release);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for (addr, held) in &origins {
        assert_eq!(held.peak.load(Ordering::SeqCst), 3, "origin {addr}");
    }
    assert_eq!(
        total_peak.load(Ordering::SeqCst),
        6,
        "the limit is per origin, not global"
    );
}

/// A web origin serving one photo with the caching headers a test sets,
/// answering conditional requests as HTTP says, and counting full and
/// `304` answers.
#[derive(Default)]
struct Origin {
    etag: Mutex<Option<String>>,
    last_modified: Mutex<Option<String>>,
    cache_control: Mutex<Option<String>>,
    body: Mutex<Vec<u8>>,
    full: AtomicUsize,
    not_modified: AtomicUsize,
}

impl Origin {
    fn set(&self, etag: Option<&str>, last_modified: Option<&str>, cache_control: Option<&str>) {
        *self.etag.lock().unwrap() = etag.map(str::to_owned);
        *self.last_modified.lock().unwrap() = last_modified.map(str::to_owned);
        *self.cache_control.lock().unwrap() = cache_control.map(str::to_owned);
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.full.load(Ordering::SeqCst),
            self.not_modified.load(Ordering::SeqCst),
        )
    }
}

async fn origin_routes(State(origin): State<Arc<Origin>>, req: Request) -> Response {
    let etag = origin.etag.lock().unwrap().clone();
    let last_modified = origin.last_modified.lock().unwrap().clone();
    let asked = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let unchanged = match (
        asked(header::IF_NONE_MATCH),
        asked(header::IF_MODIFIED_SINCE),
    ) {
        (Some(tag), _) => etag.as_deref() == Some(tag),
        (None, Some(since)) => last_modified.as_deref() == Some(since),
        (None, None) => false,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::ETAG, etag),
        (header::LAST_MODIFIED, last_modified),
        (
            header::CACHE_CONTROL,
            origin.cache_control.lock().unwrap().clone(),
        ),
    ] {
        if let Some(value) = value.and_then(|v| v.parse().ok()) {
            headers.insert(name, value);
        }
    }
    if unchanged {
        origin.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    origin.full.fetch_add(1, Ordering::SeqCst);
    headers.insert(header::CONTENT_TYPE, "image/png".parse().unwrap());
    (headers, origin.body.lock().unwrap().clone()).into_response()
}

/// A fetcher with a cache, the origin, and the photo's URL on it.
async fn web_origin() -> (Fetcher, Arc<Origin>, String, tempfile::TempDir) {
    let origin = Arc::new(Origin::default());
    *origin.body.lock().unwrap() = PNG.to_vec();
    let addr = serve(
        Router::new()
            .fallback(origin_routes)
            .with_state(Arc::clone(&origin)),
    )
    .await;
    let dir = tempfile::tempdir().expect("cache dir");
    let fetcher = Fetcher::with_options(FetcherOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..FetcherOptions::default()
    })
    .expect("fetcher");
    (
        fetcher,
        origin,
        format!("http://{addr}/photos/cat.png"),
        dir,
    )
}

/// `url` fetched from the loopback origin.
async fn get(fetcher: &Fetcher, url: &str) -> Result<Fetched, FetchError> {
    let cfg = FetchConfig {
        allow_private_networks: true,
        ..FetchConfig::default()
    };
    fetcher.fetch(&cfg, &FetchRequest::new(url)).await
}

#[tokio::test]
async fn web_files_with_validators_are_revalidated_instead_of_downloaded_again() {
    let (fetcher, origin, url, _dir) = web_origin().await;
    for (etag, last_modified) in [
        (Some("\"v1\""), None),
        (None, Some("Wed, 02 Dec 2026 10:00:00 GMT")),
    ] {
        origin.set(etag, last_modified, None);
        let (full, not_modified) = origin.counts();
        let first = get(&fetcher, &url).await.expect("first");
        let second = get(&fetcher, &url).await.expect("second");
        let third = get(&fetcher, &url).await.expect("third");
        assert_eq!(first, second);
        assert_eq!(third, first);
        assert_eq!(second.bytes, PNG);
        assert_eq!(
            origin.counts(),
            (full + 1, not_modified + 2),
            "{etag:?} {last_modified:?}: one download, then a 304 each time \
             (a 304 without a lifetime does not make the copy fresh)"
        );
    }
    // Changed at the origin: the new bytes replace the cached ones.
    *origin.body.lock().unwrap() = b"new photo".to_vec();
    origin.set(Some("\"v2\""), None, None);
    assert_eq!(
        get(&fetcher, &url).await.expect("changed").bytes,
        &b"new photo"[..]
    );
    assert_eq!(
        get(&fetcher, &url).await.expect("again").bytes,
        &b"new photo"[..]
    );
}

#[tokio::test]
async fn fresh_web_files_are_served_without_asking_and_no_store_is_never_stored() {
    let (fetcher, origin, url, _dir) = web_origin().await;
    origin.set(None, None, Some("public, max-age=600"));
    get(&fetcher, &url).await.expect("first");
    get(&fetcher, &url).await.expect("fresh copy");
    assert_eq!(origin.counts(), (1, 0), "max-age: no second request");

    let (fetcher, origin, url, _dir) = web_origin().await;
    origin.set(Some("\"v1\""), None, Some("no-store"));
    get(&fetcher, &url).await.expect("first");
    get(&fetcher, &url).await.expect("second");
    assert_eq!(origin.counts(), (2, 0), "no-store: downloaded every time");

    origin.set(Some("\"v1\""), None, Some("no-cache"));
    get(&fetcher, &url).await.expect("stored");
    get(&fetcher, &url).await.expect("revalidated");
    assert_eq!(
        origin.counts(),
        (3, 1),
        "no-cache: stored, asked every time"
    );

    origin.set(None, None, None);
    get(&fetcher, &url).await.expect("nothing to reuse it by");
    get(&fetcher, &url).await.expect("downloaded again");
    assert_eq!(
        origin.counts(),
        (5, 1),
        "no validator, no lifetime: not reused"
    );
}

#[test]
fn freshness_follows_the_shared_cache_rules() {
    let headers = |pairs: &[(&str, &str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    };
    let fresh_until =
        |pairs: &[(&str, &str)]| http::validity(&headers(pairs), 1_000).and_then(|v| v.fresh_until);
    assert_eq!(fresh_until(&[("cache-control", "max-age=60")]), Some(1_060));
    assert_eq!(
        fresh_until(&[("cache-control", "max-age=60, s-maxage=5")]),
        Some(1_005),
        "s-maxage wins for a shared cache"
    );
    assert_eq!(
        fresh_until(&[("cache-control", "max-age=60"), ("age", "50")]),
        Some(1_010)
    );
    assert_eq!(
        fresh_until(&[
            ("date", "Wed, 02 Dec 2026 10:00:00 GMT"),
            ("expires", "Wed, 02 Dec 2026 10:02:00 GMT"),
            ("etag", "\"a\""),
        ]),
        Some(1_120)
    );
    assert_eq!(
        fresh_until(&[("cache-control", "no-cache, max-age=60"), ("etag", "\"a\"")]),
        Some(1_000)
    );
    assert!(http::validity(&headers(&[("cache-control", "private, max-age=60")]), 1_000).is_none());
    assert!(
        http::validity(
            &headers(&[("cache-control", "max-age=60"), ("age", "90")]),
            1_000
        )
        .is_none()
    );
}
