//! `connect`: registers a backend URL as an ML backend of a Label Studio
//! project through Label Studio's REST API, as the Python client's
//! `add_annotation_model` does:
//!
//! 1. authenticate: a legacy token goes as `Authorization: Token <key>`; a
//!    personal access token (a JWT refresh token) is exchanged at
//!    `POST /api/token/refresh/` for an access token sent as `Bearer`;
//! 2. find the project (`--project ID`), or find or create it by title
//!    (`--project-title`, with `--label-config` for a new one);
//! 3. `POST /api/ml` with the fields of ls-protocol.md §7, or `PATCH
//!    /api/ml/{id}` when the project already has a backend at that URL (so
//!    running it twice does not register two);
//! 4. `GET /api/ml/{id}`, which makes Label Studio call `/health` and
//!    `/setup` again, and report its state.
//!
//! Exits non-zero unless Label Studio reports the backend Connected.

use super::say;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::admin_api::{connection_error, join, reply_json, typed};
use super::{non_empty, print_json};

pub const EXAMPLES: &str = "\
Examples:
  configurable-ls-backend connect --label-studio http://localhost:8080 --api-key $KEY \\
      --project 3 --backend-url http://192.168.1.20:9090
  export LABEL_STUDIO_URL=http://localhost:8080 LABEL_STUDIO_API_KEY=…
  configurable-ls-backend connect \\
      --project-title \"Page layout\" --label-config layout.xml \\
      --backend-url http://cls:9090/backends/layout --title layout --interactive
  configurable-ls-backend connect --project 3 --backend-url https://cls.example.com \\
      --basic-auth-user ls --basic-auth-pass … --json

The API key is a legacy token or a personal access token (Account & Settings in Label Studio).
Label Studio must be able to reach --backend-url; Label Studio 1.23.1+ refuses loopback and
private addresses unless started with ML_BLOCK_LOCAL_IP=false.";

/// The title a backend gets without `--title`.
pub const DEFAULT_TITLE: &str = "configurable-ls-backend";
/// Label Studio answers within its own ML timeouts (seconds), plus ours.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Projects read per page when finding one by title.
const PAGE_SIZE: usize = 100;

/// `connect` flags.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which_project").required(true).args(["project", "project_title"])))]
pub struct ConnectArgs {
    /// Label Studio's URL [env: LABEL_STUDIO_URL, or LABEL_STUDIO_HOST].
    #[arg(long, value_name = "URL")]
    label_studio: Option<Url>,
    /// A Label Studio legacy token or personal access token
    /// [env: LABEL_STUDIO_API_KEY, or LABEL_STUDIO_ACCESS_TOKEN].
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// The project's id.
    #[arg(long, value_name = "ID")]
    project: Option<u64>,
    /// The project's title; created when no project has it.
    #[arg(long, value_name = "TITLE")]
    project_title: Option<String>,
    /// The labeling config (XML file) of a project created by --project-title.
    #[arg(long, value_name = "FILE", requires = "project_title")]
    label_config: Option<std::path::PathBuf>,
    /// The backend's URL as Label Studio must call it, e.g.
    /// http://cls:9090/backends/layout (what `configure` printed).
    #[arg(long, value_name = "URL")]
    backend_url: Url,
    /// The backend's title in Label Studio.
    #[arg(long, default_value = DEFAULT_TITLE)]
    title: String,
    /// Let Label Studio ask for predictions while annotators draw
    /// (interactive pre-annotation).
    #[arg(long)]
    interactive: bool,
    /// HTTP basic auth user Label Studio sends to the backend (the server's BASIC_AUTH_USER).
    #[arg(long, env = "BASIC_AUTH_USER", requires = "basic_auth_pass")]
    basic_auth_user: Option<String>,
    /// HTTP basic auth password Label Studio sends to the backend.
    #[arg(
        long,
        env = "BASIC_AUTH_PASS",
        hide_env_values = true,
        requires = "basic_auth_user"
    )]
    basic_auth_pass: Option<String>,
    /// Print JSON: {"project", "ml_backend", "action"}.
    #[arg(long)]
    json: bool,
}

/// Label Studio's REST API with one kind of credential.
struct LabelStudio {
    http: reqwest::Client,
    base: Url,
    authorization: String,
}

impl LabelStudio {
    /// Connects with `key`, exchanging a personal access token for an
    /// access token first.
    async fn connect(base: Url, key: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "configurable-ls-backend-cli/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .context("cannot build the HTTP client")?;
        let authorization = match token_type(key).as_deref() {
            Some("refresh") => {
                let url = join(&base, "/api/token/refresh/");
                let response = http
                    .post(&url)
                    .json(&json!({ "refresh": key }))
                    .send()
                    .await
                    .map_err(|e| connection_error(e, &base))?;
                let (_, body) = reply_json(
                    response,
                    "exchanging the personal access token for an access token",
                )
                .await
                .context("is the token revoked, or from another Label Studio?")?;
                let refreshed: TokenRefresh = typed(&body, "POST /api/token/refresh/")?;
                format!("Bearer {}", refreshed.access)
            }
            // An access token already (short-lived, but usable).
            Some(_) => format!("Bearer {key}"),
            None => format!("Token {key}"),
        };
        Ok(Self {
            http,
            base,
            authorization,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, join(&self.base, path))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
    }

    async fn send(&self, request: RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .map_err(|e| connection_error(e, &self.base))?;
        let status = response.status();
        match reply_json(response, what).await {
            Ok((_, body)) => Ok(body),
            Err(e) if status == reqwest::StatusCode::UNAUTHORIZED => Err(e.context(
                "Label Studio refused the API key: use a personal access token, or a legacy token where \
                 the organization allows them (Organization → API Tokens Settings)",
            )),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, path: &str, what: &str) -> anyhow::Result<Value> {
        self.send(self.request(Method::GET, path), what).await
    }
}

/// `token_type` of a JWT's payload (`refresh` for a personal access
/// token); `None` for anything that is not a JWT (a legacy token).
fn token_type(key: &str) -> Option<String> {
    let mut parts = key.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: TokenClaims = serde_json::from_slice(&bytes).ok()?;
    Some(claims.token_type.unwrap_or_else(|| "access".to_owned()))
}

/// A value from a flag, else the first environment variable set.
fn flag_or_env(flag: Option<String>, names: &[&str]) -> Option<String> {
    non_empty(&flag).map(str::to_owned).or_else(|| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
            .map(|v| v.trim().to_owned())
    })
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let base = label_studio_url(&args)?;
    let key = flag_or_env(args.api_key.clone(), &["LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"])
        .context("no API key: pass --api-key or set LABEL_STUDIO_API_KEY (Account & Settings in Label Studio)")?;
    let ls = LabelStudio::connect(base.clone(), &key).await?;
    let (project, created) = project(&ls, &args).await?;
    let (id, action) = register_backend(&ls, &args, project.id).await?;
    // Reading it runs Label Studio's health check (/health, /setup) again.
    let mut state = ls
        .get(&format!("/api/ml/{id}"), "reading the ML backend's state")
        .await?;
    if let Some(map) = state.as_object_mut() {
        map.retain(|k, _| !k.contains("pass") && !k.contains("token"));
    }
    let backend: MlBackendState = typed(&state, "reading the ML backend's state")?;
    let project_url = join(&base, &format!("/projects/{}/", project.id));
    if args.json {
        print_json(&json!({
            "project": {
                "id": project.id,
                "title": project.title,
                "created": created,
                "url": project_url,
            },
            "ml_backend": state,
            "action": action,
        }))?;
    } else {
        let made = if created { " (created)" } else { "" };
        let project_title = project.title.as_deref().unwrap_or("?");
        say!(
            "project {} “{project_title}”{made}: {project_url}",
            project.id
        );
        say!(
            "ML backend {id} “{}” {action}: {}",
            args.title,
            args.backend_url
        );
        print_state(&backend);
        if args.interactive {
            say!("interactive pre-annotation: on");
        }
    }
    if backend.state.as_deref() != Some(CONNECTED) {
        bail!(
            "Label Studio cannot use the backend ({}): {}",
            backend.readable_state.as_deref().unwrap_or("not connected"),
            non_blank(backend.error_message.as_deref()).unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// `--label-studio`, else `LABEL_STUDIO_URL` (or `LABEL_STUDIO_HOST`).
fn label_studio_url(args: &ConnectArgs) -> anyhow::Result<Url> {
    if let Some(url) = &args.label_studio {
        return Ok(url.clone());
    }
    let value = flag_or_env(None, &["LABEL_STUDIO_URL", "LABEL_STUDIO_HOST"])
        .context("no Label Studio URL: pass --label-studio or set LABEL_STUDIO_URL")?;
    Url::parse(&value).with_context(|| format!("LABEL_STUDIO_URL={value} is not a URL"))
}

/// The project `--project` names, or the one `--project-title` finds or
/// creates; and whether it was created.
async fn project(ls: &LabelStudio, args: &ConnectArgs) -> anyhow::Result<(Project, bool)> {
    match (&args.project, &args.project_title) {
        (Some(id), _) => {
            let what = format!("reading project {id}");
            let body = ls.get(&format!("/api/projects/{id}"), &what).await?;
            Ok((typed(&body, &what)?, false))
        }
        (None, Some(title)) => {
            find_or_create_project(ls, title, args.label_config.as_deref()).await
        }
        (None, None) => bail!("pass --project or --project-title"),
    }
}

/// Registers the backend URL in the project, or updates the project's
/// backend that already has this URL (so running twice does not register
/// two); returns its id and which of the two happened.
async fn register_backend(
    ls: &LabelStudio,
    args: &ConnectArgs,
    project: u64,
) -> anyhow::Result<(u64, &'static str)> {
    let basic_auth = non_empty(&args.basic_auth_user).zip(non_empty(&args.basic_auth_pass));
    let fields = MlBackendFields {
        project,
        url: args.backend_url.as_str(),
        title: &args.title,
        is_interactive: args.interactive,
        auth_method: if basic_auth.is_some() {
            "BASIC_AUTH"
        } else {
            "NONE"
        },
        basic_auth_user: basic_auth.map(|(user, _)| user),
        basic_auth_pass: basic_auth.map(|(_, pass)| pass),
    };
    let what = "listing the project's ML backends";
    let existing: Vec<MlBackend> = typed(
        &ls.get(&format!("/api/ml/?project={project}"), what).await?,
        what,
    )?;
    let wanted = args.backend_url.as_str().trim_end_matches('/');
    let same_url =
        |b: &&MlBackend| b.url.as_deref().map(|u| u.trim_end_matches('/')) == Some(wanted);
    let (what, request, action) = match existing.iter().find(same_url) {
        Some(found) => (
            format!("updating ML backend {}", found.id),
            ls.request(Method::PATCH, &format!("/api/ml/{}", found.id)),
            "updated",
        ),
        None => (
            "registering the ML backend".to_owned(),
            ls.request(Method::POST, "/api/ml/"),
            "created",
        ),
    };
    let body = ls.send(request.json(&fields), &what).await?;
    let backend: MlBackend = typed(&body, &what)?;
    Ok((backend.id, action))
}

/// Label Studio's verdict on the backend.
fn print_state(backend: &MlBackendState) {
    say!(
        "state: {} ({}), model version {}",
        backend.readable_state.as_deref().unwrap_or("?"),
        backend.state.as_deref().unwrap_or("?"),
        non_blank(backend.model_version.as_deref()).unwrap_or("-")
    );
}

fn non_blank(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// The project with exactly this title, else a new one.
async fn find_or_create_project(
    ls: &LabelStudio,
    title: &str,
    label_config: Option<&std::path::Path>,
) -> anyhow::Result<(Project, bool)> {
    if let Some(found) = find_project(ls, title).await? {
        if label_config.is_some() {
            eprintln!(
                "note: project “{title}” exists (id {}); its labeling config was left as it is",
                found.id
            );
        }
        return Ok((found, false));
    }
    let label_config = label_config.map(read_label_config).transpose()?;
    let fields = NewProject {
        title,
        label_config,
    };
    let request = ls.request(Method::POST, "/api/projects/").json(&fields);
    let what = format!("creating project “{title}”");
    let project = ls.send(request, &what).await?;
    Ok((typed(&project, &what)?, true))
}

/// The project with exactly this title, reading every page of Label
/// Studio's title filter (which matches substrings, case-insensitively).
async fn find_project(ls: &LabelStudio, title: &str) -> anyhow::Result<Option<Project>> {
    let encoded: String = url::form_urlencoded::byte_serialize(title.as_bytes()).collect();
    let what = "looking for the project";
    for page in 1.. {
        let path = format!("/api/projects/?title={encoded}&page={page}&page_size={PAGE_SIZE}");
        let listing: ProjectPage = typed(&ls.get(&path, what).await?, what)?;
        let last = listing.next.is_none() || listing.results.is_empty();
        let found = listing
            .results
            .into_iter()
            .find(|p| p.title.as_deref() == Some(title));
        if found.is_some() || last {
            return Ok(found);
        }
    }
    Ok(None)
}

/// A labeling config file's XML, refused here when it does not parse.
fn read_label_config(path: &std::path::Path) -> anyhow::Result<String> {
    let xml =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    cls::labelconfig::LabelConfig::parse(&xml)
        .with_context(|| format!("{} is not a usable labeling config", path.display()))?;
    Ok(xml)
}

/// Label Studio's `state` of a backend it can use (Connected).
const CONNECTED: &str = "CO";

/// The claims of a Label Studio JWT this command reads.
#[derive(Debug, Deserialize)]
struct TokenClaims {
    #[serde(default)]
    token_type: Option<String>,
}

/// `POST /api/token/refresh/`'s reply.
#[derive(Debug, Deserialize)]
struct TokenRefresh {
    access: String,
}

/// A Label Studio project, as far as this command reads it.
#[derive(Debug, Deserialize)]
struct Project {
    id: u64,
    #[serde(default)]
    title: Option<String>,
}

/// One page of `GET /api/projects/`.
#[derive(Debug, Deserialize)]
struct ProjectPage {
    #[serde(default)]
    results: Vec<Project>,
    /// The next page's URL; `null` on the last page.
    #[serde(default)]
    next: Option<Value>,
}

/// `POST /api/projects/`'s body.
#[derive(Debug, Serialize)]
struct NewProject<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    label_config: Option<String>,
}

/// An ML backend in `GET /api/ml/` and the replies to creating or updating one.
#[derive(Debug, Deserialize)]
struct MlBackend {
    id: u64,
    #[serde(default)]
    url: Option<String>,
}

/// What `GET /api/ml/{id}` says about the connection.
#[derive(Debug, Deserialize)]
struct MlBackendState {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    readable_state: Option<String>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
}

/// The fields of `POST /api/ml` (ls-protocol.md §7) and `PATCH /api/ml/{id}`.
#[derive(Debug, Serialize)]
struct MlBackendFields<'a> {
    project: u64,
    url: &'a str,
    title: &'a str,
    is_interactive: bool,
    auth_method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    basic_auth_user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    basic_auth_pass: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(claims))
    }

    #[test]
    fn a_personal_access_token_is_told_from_a_legacy_token() {
        assert_eq!(
            token_type(&jwt(r#"{"token_type":"refresh","exp":1}"#)).as_deref(),
            Some("refresh")
        );
        assert_eq!(
            token_type(&jwt(r#"{"token_type":"access"}"#)).as_deref(),
            Some("access")
        );
        assert_eq!(token_type("0123456789abcdef0123456789abcdef01234567"), None);
        assert_eq!(token_type("a.b.c"), None);
    }
}
