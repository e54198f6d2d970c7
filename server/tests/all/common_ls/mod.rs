//! A small client for the real Label Studio 1.23.2 that
//! `scripts/services.sh start` runs on loopback (its `services.env` exports
//! `CLS_LABEL_STUDIO_URL`, `_TOKEN`, `_FILES_ROOT`), for the end-to-end
//! tests: projects, tasks imported as uploads and through local-files
//! storage, registering an ML backend (with our `connect` command),
//! "Retrieve predictions", interactive pre-annotation, personal access
//! tokens, and the organisation-wide legacy-token switch.
//!
//! All tests share one Label Studio and one organisation, and switching
//! legacy tokens off breaks every client that authenticates with one. So a
//! [`LabelStudio`] holds a shared `flock` on a lock file for as long as it
//! lives, and [`LabelStudio::disable_legacy_tokens`] upgrades it to an
//! exclusive one: tests in other processes (nextest) or threads (`cargo
//! test`) wait until legacy tokens are back on before they start, and the
//! switch waits for the ones already running to finish.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{client, poll};
use reqwest::Method;
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

/// How long Label Studio may take to create the tasks of a local-files sync
/// (synchronous without Redis, but polled in case that changes).
pub const SYNC_DEADLINE: Duration = Duration::from_secs(60);

/// How a client authenticates to Label Studio's API.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Token <key>` (the services' admin user).
    Legacy(String),
    /// A personal access token: exchanged for short-lived access tokens,
    /// sent as `Authorization: Bearer <access>`.
    Pat(String),
}

impl Auth {
    /// What `connect --api-key` and our server's `LABEL_STUDIO_API_KEY` get.
    pub fn api_key(&self) -> &str {
        match self {
            Auth::Legacy(key) | Auth::Pat(key) => key,
        }
    }
}

/// Access tokens live 5 minutes; one is reused for at most this long.
const ACCESS_REUSE: Duration = Duration::from_secs(240);

/// A Label Studio client; while it lives it holds the shared lease on
/// legacy tokens (see the module docs).
pub struct LabelStudio {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub auth: Auth,
    /// Label Studio's `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`.
    pub files_root: PathBuf,
    http: Client,
    lease: File,
    /// The access token of [`Auth::Pat`] and when it was issued.
    access: Mutex<Option<(String, Instant)>>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A name no other test, and no earlier run against the same Label Studio,
/// has used: `<prefix>-<pid>-<nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Panics with the request, status and body when `response` is not 2xx;
/// otherwise returns its JSON body (`null` when empty).
fn json_body(what: &str, response: reqwest::Result<Response>) -> Value {
    let response = response.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status();
    let text = response.text().unwrap_or_default();
    assert!(status.is_success(), "{what}: {status}: {text}");
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
    }
}

/// `name=value` pairs of a response's `Set-Cookie` headers.
fn cookies(response: &Response) -> Vec<(String, String)> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn cookie<'a>(jar: &'a [(String, String)], name: &str) -> &'a str {
    jar.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("Label Studio set no {name} cookie"))
}

/// Takes the shared lease on legacy tokens of the Label Studio at `url`
/// (a shared `flock`, held until the file is closed): every test that
/// authenticates with a legacy token should hold one, so that
/// [`LabelStudio::disable_legacy_tokens`] never pulls them from under it.
/// Blocks while legacy tokens are switched off. The lock file lives in the
/// services' run dir when known (one Label Studio per run dir), else in the
/// temp dir, named after the URL.
pub fn legacy_token_lease(url: &str) -> File {
    let path = match env("CLS_RUN_DIR") {
        Some(dir) => PathBuf::from(dir).join("e2e-legacy-tokens.lock"),
        None => {
            let name: String = url
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            std::env::temp_dir().join(format!("cls-e2e-legacy-tokens-{name}.lock"))
        }
    };
    let lease = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("lock file {}: {e}", path.display()));
    lease
        .lock_shared()
        .unwrap_or_else(|e| panic!("shared lock on {}: {e}", path.display()));
    lease
}

impl LabelStudio {
    /// The admin client of the Label Studio in `CLS_LABEL_STUDIO_*`, or
    /// `None` when those are unset (no `scripts/services.sh start`). Blocks
    /// while another test has legacy tokens switched off.
    pub fn from_env() -> Option<LabelStudio> {
        let url = env("CLS_LABEL_STUDIO_URL")?
            .trim_end_matches('/')
            .to_owned();
        let token = env("CLS_LABEL_STUDIO_TOKEN")?;
        let files_root = PathBuf::from(env("CLS_LABEL_STUDIO_FILES_ROOT")?);
        let lease = legacy_token_lease(&url);
        Some(LabelStudio {
            url,
            auth: Auth::Legacy(token),
            files_root,
            http: client(),
            lease,
            access: Mutex::new(None),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(&self.auth, method, path)
    }

    fn request_as(&self, auth: &Auth, method: Method, path: &str) -> RequestBuilder {
        let header = match auth {
            Auth::Legacy(key) => format!("Token {key}"),
            Auth::Pat(pat) => format!("Bearer {}", self.access(pat)),
        };
        self.http
            .request(method, format!("{}{path}", self.url))
            .header(reqwest::header::AUTHORIZATION, header)
    }

    /// A current access token for `pat`, exchanged again when the cached
    /// one is near its end.
    fn access(&self, pat: &str) -> String {
        let mut cached = self.access.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some((access, issued)) if issued.elapsed() < ACCESS_REUSE => access.clone(),
            _ => {
                let access = self.access_token(pat);
                *cached = Some((access.clone(), Instant::now()));
                access
            }
        }
    }

    fn get(&self, path: &str) -> Value {
        json_body(
            &format!("GET {path}"),
            self.request(Method::GET, path).send(),
        )
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        json_body(
            &format!("POST {path}"),
            self.request(Method::POST, path).json(body).send(),
        )
    }

    /// `POST /api/projects`; returns the project id.
    pub fn create_project(&self, title: &str, label_config: &str) -> u64 {
        let project = self.post(
            "/api/projects",
            &json!({"title": title, "label_config": label_config}),
        );
        project["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("project without id: {project}"))
    }

    /// Imports each image as an uploaded file (`POST /api/projects/{id}/import`,
    /// multipart): one task each, `data.image = /data/upload/<id>/<hex>-<name>`.
    pub fn upload(&self, project: u64, images: &[PathBuf]) {
        let mut form = reqwest::blocking::multipart::Form::new();
        for image in images {
            // Label Studio reads request.FILES as a dict: one field per file.
            let name = image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            form = form
                .file(name, image)
                .unwrap_or_else(|e| panic!("{}: {e}", image.display()));
        }
        let path = format!("/api/projects/{project}/import");
        let body = json_body(
            &format!("POST {path}"),
            self.request(Method::POST, &path).multipart(form).send(),
        );
        assert_eq!(body["task_count"], json!(images.len()), "{body}");
    }

    /// Imports tasks given as JSON (`POST /api/projects/{id}/import`), e.g.
    /// `[{"data": {"text": "…"}}]`: one task each.
    pub fn import_tasks(&self, project: u64, tasks: &[Value]) {
        let body = self.post(
            &format!("/api/projects/{project}/import"),
            &Value::Array(tasks.to_vec()),
        );
        assert_eq!(body["task_count"], json!(tasks.len()), "{body}");
    }

    /// Copies the images into a fresh directory under the local-files root,
    /// adds it as the project's local-files storage and syncs it: one task
    /// each, `data.image = /data/local-files/?d=<dir>/<name>`. The directory
    /// is removed when the returned guard drops.
    pub fn add_local_files(&self, project: u64, images: &[PathBuf]) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("e2e-")
            .tempdir_in(&self.files_root)
            .unwrap_or_else(|e| panic!("tempdir in {}: {e}", self.files_root.display()));
        for image in images {
            let name = image.file_name().unwrap_or_default();
            std::fs::copy(image, dir.path().join(name))
                .unwrap_or_else(|e| panic!("copy {}: {e}", image.display()));
        }
        let before = self.tasks(project).len();
        let storage = self.post(
            "/api/storages/localfiles",
            &json!({
                "project": project,
                "path": dir.path(),
                "regex_filter": ".*",
                "use_blob_urls": true,
                "title": dir.path().file_name().map(|n| n.to_string_lossy()),
            }),
        );
        let id = storage["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("storage without id: {storage}"));
        self.post(&format!("/api/storages/localfiles/{id}/sync"), &json!({}));
        let want = before + images.len();
        poll(SYNC_DEADLINE, || {
            (self.tasks(project).len() >= want).then_some(())
        })
        .unwrap_or_else(|| panic!("local-files sync made no {want} tasks in {SYNC_DEADLINE:?}"));
        dir
    }

    /// The project's tasks, oldest first.
    pub fn tasks(&self, project: u64) -> Vec<Value> {
        let page = self.get(&format!("/api/tasks?project={project}&page_size=1000"));
        page["tasks"].as_array().cloned().unwrap_or_default()
    }

    /// The predictions Label Studio stored for the project.
    pub fn predictions(&self, project: u64) -> Vec<Value> {
        let list = self.get(&format!("/api/predictions?project={project}"));
        list.as_array()
            .cloned()
            .unwrap_or_else(|| panic!("predictions: not a list: {list}"))
    }

    /// The Data Manager's "Retrieve predictions" on all tasks (synchronous).
    pub fn retrieve_predictions(&self, project: u64) -> Value {
        self.post(
            &format!("/api/dm/actions?id=retrieve_tasks_predictions&project={project}"),
            &json!({"selectedItems": {"all": true, "excluded": []}}),
        )
    }

    /// The project's ML backend registered at `url`, as `GET /api/ml`
    /// reports it (that call also makes Label Studio check its health).
    pub fn ml_backend(&self, project: u64, url: &str) -> Option<Value> {
        let list = self.get(&format!("/api/ml?project={project}"));
        list.as_array()?
            .iter()
            .find(|b| b["url"].as_str().map(|u| u.trim_end_matches('/')) == Some(url))
            .cloned()
    }

    /// `POST /api/ml/{id}/interactive-annotating`: what an annotator's
    /// drawing fetches. Label Studio answers 200 with `{"data": <first
    /// result>}` or `{"errors": […]}`.
    pub fn interactive(&self, ml_backend: u64, task: u64, context: &Value) -> Value {
        self.post(
            &format!("/api/ml/{ml_backend}/interactive-annotating"),
            &json!({"task": task, "context": context}),
        )
    }

    /// Registers a backend in a project: with our `connect` command when the
    /// binary has it, else with `POST /api/ml` (and says so). Returns the
    /// backend as Label Studio reports it, or the failure's message.
    pub fn register(&self, registration: &Registration) -> Result<Value, String> {
        if connect_available() {
            self.register_with_connect(registration)?;
        } else {
            eprintln!(
                "NOTE: `configurable-ls-backend connect` is not available in this build; \
                 registering through POST /api/ml instead"
            );
            self.register_with_api(registration)?;
        }
        self.ml_backend(registration.project, registration.backend_url)
            .ok_or_else(|| {
                format!(
                    "registration succeeded but project {} has no backend at {}",
                    registration.project, registration.backend_url
                )
            })
    }

    fn register_with_connect(&self, r: &Registration) -> Result<(), String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_configurable-ls-backend"));
        command
            .arg("connect")
            .args(["--label-studio", &self.url])
            .args(["--api-key", self.auth.api_key()])
            .args(["--project", &r.project.to_string()])
            .args(["--backend-url", r.backend_url])
            .args(["--title", r.title]);
        if r.interactive {
            command.arg("--interactive");
        }
        if let Some((user, pass)) = r.basic_auth {
            command
                .args(["--basic-auth-user", user])
                .args(["--basic-auth-pass", pass]);
        }
        // Only the flags count: no credentials from the test's environment.
        for name in [
            "LABEL_STUDIO_URL",
            "LABEL_STUDIO_API_KEY",
            "LABEL_STUDIO_ACCESS_TOKEN",
            "BASIC_AUTH_USER",
            "BASIC_AUTH_PASS",
        ] {
            command.env_remove(name);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run connect: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        for secret in [Some(self.auth.api_key()), r.basic_auth.map(|(_, p)| p)]
            .into_iter()
            .flatten()
        {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "connect printed a secret"
            );
        }
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "connect exited with {}:\n{stderr}\n{stdout}",
                output.status
            ))
        }
    }

    fn register_with_api(&self, r: &Registration) -> Result<(), String> {
        let mut body = json!({
            "project": r.project,
            "url": r.backend_url,
            "title": r.title,
            "is_interactive": r.interactive,
            "auth_method": "NONE",
        });
        if let Some((user, pass)) = r.basic_auth {
            body["auth_method"] = json!("BASIC_AUTH");
            body["basic_auth_user"] = json!(user);
            body["basic_auth_pass"] = json!(pass);
        }
        let response = self
            .request(Method::POST, "/api/ml")
            .json(&body)
            .send()
            .map_err(|e| format!("POST /api/ml: {e}"))?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        if status == StatusCode::CREATED {
            Ok(())
        } else {
            Err(format!("POST /api/ml: {status}: {text}"))
        }
    }

    /// Signs a new user up (they join the one organisation), creates their
    /// personal access token with their session (`POST /api/token/`, one per
    /// user), and returns a client that authenticates with it. A fresh user
    /// each time: a second token for the same user is refused (409).
    pub fn new_user_with_pat(&self) -> LabelStudio {
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|e| panic!("http client: {e}"));
        let signup = format!("{}/user/signup/", self.url);
        let page = http
            .get(&signup)
            .send()
            .unwrap_or_else(|e| panic!("GET {signup}: {e}"));
        let mut jar = cookies(&page);
        let email = format!("{}@example.com", unique("pat"));
        let password = unique("Pw-e2e-long-enough");
        let response = http
            .post(&signup)
            .header(reqwest::header::COOKIE, cookie_header(&jar))
            .form(&[
                ("csrfmiddlewaretoken", cookie(&jar, "csrftoken")),
                ("email", &email),
                ("password", &password),
            ])
            .send()
            .unwrap_or_else(|e| panic!("POST {signup}: {e}"));
        assert_eq!(
            response.status(),
            StatusCode::FOUND,
            "signup of {email} was not accepted: {}",
            response.text().unwrap_or_default()
        );
        // Logging in rotates the CSRF token and starts the session.
        for (name, value) in cookies(&response) {
            jar.retain(|(n, _)| *n != name);
            jar.push((name, value));
        }
        let token = json_body(
            "POST /api/token/ (session)",
            http.post(format!("{}/api/token/", self.url))
                .header(reqwest::header::COOKIE, cookie_header(&jar))
                .header("X-CSRFToken", cookie(&jar, "csrftoken"))
                .send(),
        );
        let pat = token["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {token}"))
            .to_owned();
        LabelStudio {
            url: self.url.clone(),
            auth: Auth::Pat(pat),
            files_root: self.files_root.clone(),
            http: client(),
            // The same open file, so this test still holds one lease.
            lease: self
                .lease
                .try_clone()
                .unwrap_or_else(|e| panic!("lock file: {e}")),
            access: Mutex::new(None),
        }
    }

    /// Exchanges a personal access token for an access token.
    pub fn access_token(&self, pat: &str) -> String {
        let body = json_body(
            "POST /api/token/refresh/",
            self.http
                .post(format!("{}/api/token/refresh/", self.url))
                .json(&json!({"refresh": pat}))
                .send(),
        );
        body["access"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token in {body}"))
            .to_owned()
    }

    /// The status of `GET /api/projects/{id}` with the services' legacy token.
    pub fn legacy_token_status(&self, project: u64, token: &str) -> StatusCode {
        self.request_as(
            &Auth::Legacy(token.to_owned()),
            Method::GET,
            &format!("/api/projects/{project}"),
        )
        .send()
        .map(|r| r.status())
        .unwrap_or_else(|e| panic!("GET /api/projects/{project}: {e}"))
    }

    /// Switches legacy tokens off for the organisation (`POST
    /// /api/jwt/settings`) once no other test holds the shared lease, and on
    /// again when the guard drops (also when the test panics). `self` must
    /// authenticate with a personal access token: a legacy token could not
    /// switch them back on.
    pub fn disable_legacy_tokens(&self) -> LegacyTokensOff<'_> {
        assert!(
            matches!(self.auth, Auth::Pat(_)),
            "switch legacy tokens with a personal access token"
        );
        // Upgrades this process's shared lease (flock converts it): waits
        // for every other holder to go.
        self.lease
            .lock()
            .unwrap_or_else(|e| panic!("exclusive legacy-token lock: {e}"));
        let guard = LegacyTokensOff { ls: self };
        guard.set(false);
        guard
    }
}

fn cookie_header(jar: &[(String, String)]) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Legacy tokens are off for the organisation while this lives.
pub struct LegacyTokensOff<'a> {
    ls: &'a LabelStudio,
}

impl LegacyTokensOff<'_> {
    fn set(&self, enabled: bool) {
        let body = self.ls.post(
            "/api/jwt/settings",
            &json!({"legacy_api_tokens_enabled": enabled}),
        );
        assert_eq!(body["legacy_api_tokens_enabled"], json!(enabled), "{body}");
    }
}

impl Drop for LegacyTokensOff<'_> {
    fn drop(&mut self) {
        // Back on before anyone else may start; a failure here must not
        // hide the test's own panic, so report it and release the lock.
        let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.set(true)));
        if restored.is_err() {
            eprintln!(
                "ERROR: could not switch legacy tokens back on in {}: later tests will fail",
                self.ls.url
            );
        }
        let _ = self.ls.lease.lock_shared();
    }
}

/// What to register in a Label Studio project.
pub struct Registration<'a> {
    pub project: u64,
    /// Our server's URL for the backend, e.g. `http://127.0.0.1:4321/backends/x`.
    pub backend_url: &'a str,
    pub title: &'a str,
    pub interactive: bool,
    /// HTTP basic auth Label Studio sends to the backend.
    pub basic_auth: Option<(&'a str, &'a str)>,
}

/// Whether the server binary has the `connect` subcommand (it is being
/// written alongside these tests).
fn connect_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new(env!("CARGO_BIN_EXE_configurable-ls-backend"))
            .args(["connect", "--help"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}
