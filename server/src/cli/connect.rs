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
use serde_json::{Value, json};
use url::Url;

use super::admin_api::{connection_error, join, reply_json};
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
                let access = body["access"]
                    .as_str()
                    .context("POST /api/token/refresh/ returned no access token")?;
                format!("Bearer {access}")
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
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    Some(claims["token_type"].as_str().unwrap_or("access").to_owned())
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
    let base = match args.label_studio.clone() {
        Some(url) => url,
        None => {
            let value = flag_or_env(None, &["LABEL_STUDIO_URL", "LABEL_STUDIO_HOST"])
                .context("no Label Studio URL: pass --label-studio or set LABEL_STUDIO_URL")?;
            Url::parse(&value).with_context(|| format!("LABEL_STUDIO_URL={value} is not a URL"))?
        }
    };
    let key = flag_or_env(args.api_key.clone(), &["LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"])
        .context("no API key: pass --api-key or set LABEL_STUDIO_API_KEY (Account & Settings in Label Studio)")?;
    let ls = LabelStudio::connect(base.clone(), &key).await?;

    let (project, created) = match (&args.project, &args.project_title) {
        (Some(id), _) => (
            ls.get(
                &format!("/api/projects/{id}"),
                &format!("reading project {id}"),
            )
            .await?,
            false,
        ),
        (None, Some(title)) => {
            find_or_create_project(&ls, title, args.label_config.as_deref()).await?
        }
        (None, None) => bail!("pass --project or --project-title"),
    };
    let project_id = project["id"]
        .as_u64()
        .context("Label Studio returned a project without an id")?;

    let mut body = json!({
        "project": project_id,
        "url": args.backend_url.as_str(),
        "title": args.title,
        "is_interactive": args.interactive,
        "auth_method": "NONE",
    });
    if let (Some(user), Some(pass)) = (
        non_empty(&args.basic_auth_user),
        non_empty(&args.basic_auth_pass),
    ) {
        body["auth_method"] = json!("BASIC_AUTH");
        body["basic_auth_user"] = json!(user);
        body["basic_auth_pass"] = json!(pass);
    }
    let existing = ls
        .get(
            &format!("/api/ml/?project={project_id}"),
            "listing the project's ML backends",
        )
        .await?;
    let same_url = |b: &&Value| {
        b["url"].as_str().map(|u| u.trim_end_matches('/'))
            == Some(args.backend_url.as_str().trim_end_matches('/'))
    };
    let (backend, action) = match existing
        .as_array()
        .and_then(|list| list.iter().find(same_url))
    {
        Some(found) => {
            let id = found["id"]
                .as_u64()
                .context("an ML backend without an id")?;
            let request = ls
                .request(Method::PATCH, &format!("/api/ml/{id}"))
                .json(&body);
            (
                ls.send(request, &format!("updating ML backend {id}"))
                    .await?,
                "updated",
            )
        }
        None => {
            let request = ls.request(Method::POST, "/api/ml/").json(&body);
            (
                ls.send(request, "registering the ML backend").await?,
                "created",
            )
        }
    };
    let id = backend["id"]
        .as_u64()
        .context("Label Studio returned an ML backend without an id")?;
    // Reading it runs Label Studio's health check (/health, /setup) again.
    let mut state = ls
        .get(&format!("/api/ml/{id}"), "reading the ML backend's state")
        .await?;
    if let Some(map) = state.as_object_mut() {
        map.retain(|k, _| !k.contains("pass") && !k.contains("token"));
    }
    let connected = state["state"] == "CO";
    let project_url = join(&base, &format!("/projects/{project_id}/"));

    if args.json {
        print_json(&json!({
            "project": {
                "id": project_id,
                "title": project["title"],
                "created": created,
                "url": project_url,
            },
            "ml_backend": state,
            "action": action,
        }))?;
    } else {
        let project_title = project["title"].as_str().unwrap_or("?");
        let made = if created { " (created)" } else { "" };
        say!("project {project_id} “{project_title}”{made}: {project_url}");
        say!(
            "ML backend {id} “{}” {action}: {}",
            args.title,
            args.backend_url
        );
        say!(
            "state: {} ({}), model version {}",
            state["readable_state"].as_str().unwrap_or("?"),
            state["state"].as_str().unwrap_or("?"),
            state["model_version"]
                .as_str()
                .filter(|v| !v.is_empty())
                .unwrap_or("-")
        );
        if args.interactive {
            say!("interactive pre-annotation: on");
        }
    }
    if !connected {
        let reason = state["error_message"]
            .as_str()
            .filter(|m| !m.is_empty())
            .unwrap_or("no reason given");
        bail!(
            "Label Studio cannot use the backend ({}): {reason}",
            state["readable_state"].as_str().unwrap_or("not connected")
        );
    }
    Ok(())
}

/// The project with exactly this title, else a new one.
async fn find_or_create_project(
    ls: &LabelStudio,
    title: &str,
    label_config: Option<&std::path::Path>,
) -> anyhow::Result<(Value, bool)> {
    let encoded: String = url::form_urlencoded::byte_serialize(title.as_bytes()).collect();
    let mut page = 1;
    loop {
        let listing = ls
            .get(
                &format!("/api/projects/?title={encoded}&page={page}&page_size={PAGE_SIZE}"),
                "looking for the project",
            )
            .await?;
        let results = listing["results"].as_array().cloned().unwrap_or_default();
        // The filter matches substrings, case-insensitively.
        if let Some(found) = results.iter().find(|p| p["title"] == title) {
            if label_config.is_some() {
                eprintln!(
                    "note: project “{title}” exists (id {}); its labeling config was left as it is",
                    found["id"]
                );
            }
            return Ok((found.clone(), false));
        }
        if listing["next"].is_null() || results.is_empty() {
            break;
        }
        page += 1;
    }
    let mut body = json!({ "title": title });
    if let Some(path) = label_config {
        let xml = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        crate::labelconfig::LabelConfig::parse(&xml)
            .with_context(|| format!("{} is not a usable labeling config", path.display()))?;
        body["label_config"] = json!(xml);
    }
    let request = ls.request(Method::POST, "/api/projects/").json(&body);
    let project = ls
        .send(request, &format!("creating project “{title}”"))
        .await?;
    Ok((project, true))
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
