//! Where a model comes from: the model URI grammar ([`ModelUri`]), the
//! MLflow connection settings ([`MlflowConfig`]) and the error type shared by
//! every step of getting a model onto local disk ([`ModelSourceError`]).
//!
//! Owns parsing and configuration only. Talking to MLflow is
//! [`crate::model::RegistryClient`]'s job, unpacking uploads is
//! `archive`'s, and the on-disk cache is [`crate::model::ModelCache`]'s.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use super::archive::{ArchiveError, UploadedModel};
use super::mlmodel::MlModelError;
use crate::secret::Secret;

/// A reference to a model, as a user writes it in a backend config.
///
/// Parsing checks the syntax only; whether the model exists is found out
/// when it is materialized. [`fmt::Display`] writes the canonical form, which
/// parses back to the same value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelUri {
    /// `models:/<name>/<version>`.
    ModelVersion {
        /// Registered model name.
        name: String,
        /// Version number.
        version: u64,
    },
    /// `models:/<name>@<alias>`.
    ModelAlias {
        /// Registered model name.
        name: String,
        /// Alias, e.g. `champion`.
        alias: String,
    },
    /// `models:/<name>/latest` (any case): the highest version number.
    LatestVersion {
        /// Registered model name.
        name: String,
    },
    /// `models:/<name>/<stage>`: the latest version in a (legacy) stage.
    Stage {
        /// Registered model name.
        name: String,
        /// Stage, e.g. `Production`.
        stage: String,
    },
    /// `models:/m-<id>`: an MLflow 3 logged model by id.
    LoggedModel {
        /// The model id, `m-…`.
        model_id: String,
    },
    /// `runs:/<run_id>/<path>`: a model folder among a run's artifacts (or an
    /// MLflow 3 model logged by that run under the name `<path>`).
    RunArtifact {
        /// Run id.
        run_id: String,
        /// Path relative to the run's artifact root; empty for the root.
        path: String,
    },
    /// `mlflow-artifacts:/<path>` or `mlflow-artifacts://<host:port>/<path>`.
    MlflowArtifacts {
        /// `host:port` when given; the tracking server's otherwise.
        authority: Option<String>,
        /// Path under the artifact proxy, without leading `/`.
        path: String,
    },
    /// A local MLflow model folder (it holds an `MLmodel` file), or a folder
    /// holding exactly one `.onnx` file. Also written `file:///…`.
    LocalDir(PathBuf),
    /// A local `.onnx` file.
    OnnxFile(PathBuf),
    /// `upload:<sha256>`: a model uploaded earlier and kept in the cache.
    Upload {
        /// Lower-case hex sha256 of the uploaded file.
        sha256: String,
    },
}

const URI_FORMS: &str = "expected models:/<name>/<version>, models:/<name>@<alias>, \
     models:/<name>/latest, models:/<name>/<stage>, models:/m-<id>, runs:/<run_id>/<path>, \
     mlflow-artifacts:/<path>, upload:<sha256>, a local MLflow model folder or a .onnx file";

impl ModelUri {
    /// Parses a model reference; see the variants for the accepted forms.
    pub fn parse(text: &str) -> Result<Self, ModelSourceError> {
        let invalid = |reason: String| ModelSourceError::InvalidUri {
            uri: text.to_owned(),
            reason,
        };
        if text.trim().is_empty() {
            return Err(invalid("empty".to_owned()));
        }
        if text.trim() != text {
            return Err(invalid("leading or trailing whitespace".to_owned()));
        }
        let Some((scheme, rest)) = split_scheme(text) else {
            return Ok(Self::local(PathBuf::from(text)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "models" => parse_models(rest).map_err(invalid),
            "runs" => parse_runs(rest).map_err(invalid),
            "mlflow-artifacts" => parse_mlflow_artifacts(rest).map_err(invalid),
            "file" => parse_file(rest).map_err(invalid),
            "upload" => {
                let sha = rest.to_ascii_lowercase();
                if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(Self::Upload { sha256: sha })
                } else {
                    Err(invalid("upload:<sha256> needs 64 hex digits".to_owned()))
                }
            }
            "s3" | "gs" | "wasbs" | "abfss" | "hdfs" | "dbfs" | "oss" | "http" | "https" => {
                Err(invalid(format!(
                    "{scheme}: URIs are not read directly; register the model in MLflow and use \
                     models:/<name>/<version> (with artifacts served by the tracking server), \
                     or download it and give the local path"
                )))
            }
            _ => Err(invalid(format!("unknown scheme `{scheme}:`; {URI_FORMS}"))),
        }
    }

    fn local(path: PathBuf) -> Self {
        let is_onnx = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
        if is_onnx {
            return Self::OnnxFile(path);
        }
        if path.file_name().is_some_and(|n| n == "MLmodel") {
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let parent = if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent
            };
            return Self::LocalDir(parent);
        }
        Self::LocalDir(path)
    }

    /// `true` when materializing this model needs an MLflow tracking server.
    pub fn needs_tracking_server(&self) -> bool {
        !matches!(
            self,
            Self::LocalDir(_) | Self::OnnxFile(_) | Self::Upload { .. }
        )
    }
}

/// Splits `scheme:rest` when `text` starts with a URI scheme of two or more
/// characters (one letter is a Windows drive, not a scheme).
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = scheme.len() > 1
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

fn parse_models(rest: &str) -> Result<ModelUri, String> {
    if rest.starts_with("//") {
        return Err(
            "models:// with a profile or host is not supported; write models:/<name>/<version>"
                .to_owned(),
        );
    }
    let Some(path) = rest.strip_prefix('/').filter(|p| !p.is_empty()) else {
        return Err(URI_FORMS.to_owned());
    };
    // Mirrors mlflow/store/artifact/utils/models.py `_parse_model_uri`.
    match path.split_once('/') {
        Some((name, suffix)) => {
            let name = registered_name(name)?;
            if suffix.trim().is_empty() {
                return Err("missing version, `latest` or stage after the model name".to_owned());
            }
            if suffix.contains('/') {
                return Err(format!(
                    "`{suffix}` is not a version, `latest` or a stage name"
                ));
            }
            if suffix.bytes().all(|b| b.is_ascii_digit()) {
                let version = suffix
                    .parse()
                    .map_err(|_| format!("version {suffix} is too large"))?;
                Ok(ModelUri::ModelVersion { name, version })
            } else if suffix.eq_ignore_ascii_case("latest") {
                Ok(ModelUri::LatestVersion { name })
            } else {
                Ok(ModelUri::Stage {
                    name,
                    stage: suffix.to_owned(),
                })
            }
        }
        None => match path.rsplit_once('@') {
            Some((name, alias)) => {
                let name = registered_name(name)?;
                if alias.trim().is_empty() {
                    return Err("empty alias after `@`".to_owned());
                }
                Ok(ModelUri::ModelAlias {
                    name,
                    alias: alias.to_owned(),
                })
            }
            None if path.starts_with("m-") && path.len() > 2 => Ok(ModelUri::LoggedModel {
                model_id: path.to_owned(),
            }),
            None => Err(format!(
                "models:/{path} needs a version, alias, `latest` or stage, e.g. \
                 models:/{path}/1, models:/{path}@champion or models:/{path}/latest"
            )),
        },
    }
}

fn registered_name(name: &str) -> Result<String, String> {
    if name.trim().is_empty() {
        Err("empty model name".to_owned())
    } else {
        Ok(name.to_owned())
    }
}

fn parse_runs(rest: &str) -> Result<ModelUri, String> {
    const FORM: &str = "runs URIs look like runs:/<run_id>/<path>";
    let Some(path) = rest.strip_prefix('/').filter(|p| !p.starts_with('/')) else {
        return Err(FORM.to_owned());
    };
    let (run_id, path) = path.split_once('/').unwrap_or((path, ""));
    if run_id.is_empty() {
        return Err(FORM.to_owned());
    }
    Ok(ModelUri::RunArtifact {
        run_id: run_id.to_owned(),
        path: artifact_subpath(path)?,
    })
}

fn parse_mlflow_artifacts(rest: &str) -> Result<ModelUri, String> {
    let (authority, path) = if let Some(after) = rest.strip_prefix("//") {
        let (authority, path) = after.split_once('/').unwrap_or((after, ""));
        let authority = (!authority.is_empty()).then(|| authority.to_owned());
        (authority, path)
    } else if let Some(path) = rest.strip_prefix('/') {
        (None, path)
    } else {
        return Err("mlflow-artifacts URIs look like mlflow-artifacts:/<path>".to_owned());
    };
    if authority.as_ref().is_some_and(|a| a.contains('@')) {
        return Err(
            "credentials in the URI are not supported; configure them separately".to_owned(),
        );
    }
    let path = artifact_subpath(path)?;
    if path.is_empty() {
        return Err("mlflow-artifacts URI without a path".to_owned());
    }
    Ok(ModelUri::MlflowArtifacts { authority, path })
}

/// Normalizes an artifact path: no empty, `.` or `..` segments, no leading or
/// trailing `/`.
fn artifact_subpath(path: &str) -> Result<String, String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments
        .iter()
        .any(|s| *s == "." || *s == ".." || s.contains('\\'))
    {
        return Err(format!(
            "artifact path `{path}` must not contain `.`, `..` or `\\`"
        ));
    }
    Ok(segments.join("/"))
}

fn parse_file(rest: &str) -> Result<ModelUri, String> {
    let path = if let Some(after) = rest.strip_prefix("//") {
        let (host, path) = after.split_once('/').unwrap_or((after, ""));
        if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
            return Err(format!(
                "file URI on another host ({host}) is not supported"
            ));
        }
        format!("/{path}")
    } else if rest.starts_with('/') {
        rest.to_owned()
    } else {
        return Err("file URIs look like file:///absolute/path".to_owned());
    };
    let decoded = percent_encoding::percent_decode_str(&path)
        .decode_utf8()
        .map_err(|_| "file URI is not valid UTF-8 after percent-decoding".to_owned())?;
    Ok(ModelUri::local(PathBuf::from(decoded.as_ref())))
}

impl ModelUri {
    /// For a URI that names a moving target (an alias, `latest`, a stage),
    /// the same model at the concrete `version` it resolved to; `None` for
    /// every other form, which already names one model.
    pub fn pinned_to(&self, version: &str) -> Option<ModelUri> {
        match self {
            Self::ModelAlias { name, .. }
            | Self::LatestVersion { name }
            | Self::Stage { name, .. } => Some(Self::ModelVersion {
                name: name.clone(),
                version: version.parse().ok()?,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ModelVersion { name, version } => write!(f, "models:/{name}/{version}"),
            Self::ModelAlias { name, alias } => write!(f, "models:/{name}@{alias}"),
            Self::LatestVersion { name } => write!(f, "models:/{name}/latest"),
            Self::Stage { name, stage } => write!(f, "models:/{name}/{stage}"),
            Self::LoggedModel { model_id } => write!(f, "models:/{model_id}"),
            Self::RunArtifact { run_id, path } if path.is_empty() => write!(f, "runs:/{run_id}"),
            Self::RunArtifact { run_id, path } => write!(f, "runs:/{run_id}/{path}"),
            Self::MlflowArtifacts {
                authority: Some(a),
                path,
            } => write!(f, "mlflow-artifacts://{a}/{path}"),
            Self::MlflowArtifacts {
                authority: None,
                path,
            } => write!(f, "mlflow-artifacts:/{path}"),
            Self::LocalDir(p) | Self::OnnxFile(p) => write!(f, "{}", p.display()),
            Self::Upload { sha256 } => write!(f, "upload:{sha256}"),
        }
    }
}

impl FromStr for ModelUri {
    type Err = ModelSourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ModelUri {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelUri {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What to materialize: a model reference, or a model uploaded in a request.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A model URI or local path.
    Uri(ModelUri),
    /// An uploaded `.onnx` file or `.zip`/`.tar.gz` of an MLflow model folder.
    Upload(UploadedModel),
}

impl From<ModelUri> for ModelSource {
    fn from(uri: ModelUri) -> Self {
        Self::Uri(uri)
    }
}

impl From<UploadedModel> for ModelSource {
    fn from(upload: UploadedModel) -> Self {
        Self::Upload(upload)
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uri(uri) => uri.fmt(f),
            Self::Upload(upload) => write!(f, "upload {}", upload.file_name()),
        }
    }
}

/// Per-backend MLflow settings, as written in the backend config JSON. Each
/// absent value falls back to the MLflow environment variable of the same
/// meaning when resolved by [`MlflowConfig::from_settings`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MlflowSettings {
    /// Tracking server URL (`MLFLOW_TRACKING_URI`), e.g.
    /// `http://mlflow:5000` or `https://dagshub.com/<owner>/<repo>.mlflow`.
    #[serde(default)]
    pub tracking_uri: Option<String>,
    /// Basic-auth user (`MLFLOW_TRACKING_USERNAME`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password (`MLFLOW_TRACKING_PASSWORD`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Bearer token (`MLFLOW_TRACKING_TOKEN`). On DagsHub, a token with a
    /// username and no password is sent as the basic-auth password.
    #[serde(default)]
    pub token: Option<Secret>,
}

/// The environment variable naming the tracking server.
pub const ENV_TRACKING_URI: &str = "MLFLOW_TRACKING_URI";
/// The environment variable naming the basic-auth user.
pub const ENV_TRACKING_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// The environment variable holding the basic-auth password.
pub const ENV_TRACKING_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
/// The environment variable holding a bearer token.
pub const ENV_TRACKING_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";

/// How to reach one MLflow tracking server.
#[derive(Clone, PartialEq, Eq)]
pub struct MlflowConfig {
    /// The tracking server's base URL (http or https, without credentials).
    pub tracking_uri: Url,
    /// The credentials sent with every request.
    pub auth: MlflowAuth,
}

/// Credentials for an MLflow tracking server, chosen as the MLflow client
/// does (`mlflow/utils/rest_utils.py`): basic auth when a username and
/// password are both set, otherwise a bearer token when one is set.
#[derive(Clone, PartialEq, Eq)]
pub enum MlflowAuth {
    /// No `Authorization` header.
    None,
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The user; shown in error messages.
        username: String,
        /// The password (or, on DagsHub, the access token).
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

impl MlflowConfig {
    /// A config for `tracking_uri` with `auth`. Credentials embedded in the
    /// URL (`https://user:pass@host`) are moved into basic auth when `auth`
    /// is [`MlflowAuth::None`], and removed from the URL in any case.
    pub fn new(tracking_uri: &str, auth: MlflowAuth) -> Result<Self, ModelSourceError> {
        let invalid = |reason: &str| ModelSourceError::InvalidTrackingUri {
            uri: redact_url_text(tracking_uri),
            reason: reason.to_owned(),
        };
        let mut url = Url::parse(tracking_uri.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "only http(s) tracking servers are supported (not databricks, file or database URIs)",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a tracking URI has no query or fragment"));
        }
        let mut auth = auth;
        if !url.username().is_empty() || url.password().is_some() {
            let username = percent_decode(url.username());
            let password = url.password().map(percent_decode);
            if let (MlflowAuth::None, Some(password)) = (&auth, password) {
                auth = MlflowAuth::Basic {
                    username,
                    password: Secret::new(password),
                };
            }
            // Both setters only fail for URLs that cannot carry credentials,
            // which http(s) URLs with a host always can.
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        Ok(Self {
            tracking_uri: url,
            auth,
        })
    }

    /// Resolves per-backend settings against the MLflow environment
    /// variables (`ENV_TRACKING_URI`, `ENV_TRACKING_USERNAME`,
    /// `ENV_TRACKING_PASSWORD`, `ENV_TRACKING_TOKEN`); `None` when no
    /// tracking server is named anywhere.
    ///
    /// Each absent setting falls back to its variable, except that the
    /// environment's credentials are not sent to a backend's own
    /// `tracking_uri` when it names a different server than
    /// `MLFLOW_TRACKING_URI`.
    pub fn from_settings(settings: &MlflowSettings) -> Result<Option<Self>, ModelSourceError> {
        Self::from_settings_with_env(settings, |name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })
    }

    /// [`MlflowConfig::from_settings`] with an explicit environment lookup.
    pub fn from_settings_with_env(
        settings: &MlflowSettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ModelSourceError> {
        let non_empty = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
        let env_uri = env(ENV_TRACKING_URI);
        let Some(uri) = non_empty(&settings.tracking_uri).or_else(|| env_uri.clone()) else {
            return Ok(None);
        };
        let explicit = Self::new(&uri, MlflowAuth::None)?;
        let env_credentials_apply = match (&settings.tracking_uri, &env_uri) {
            (Some(own), Some(env_uri)) if !own.trim().is_empty() => {
                same_server(&explicit.tracking_uri, env_uri)
            }
            _ => true,
        };
        let from_env = |name: &str| {
            if env_credentials_apply {
                env(name)
            } else {
                None
            }
        };
        let username = non_empty(&settings.username).or_else(|| from_env(ENV_TRACKING_USERNAME));
        let password = settings
            .password
            .clone()
            .filter(|p| !p.expose().is_empty())
            .or_else(|| from_env(ENV_TRACKING_PASSWORD).map(Secret::new));
        let token = settings
            .token
            .clone()
            .filter(|t| !t.expose().is_empty())
            .or_else(|| from_env(ENV_TRACKING_TOKEN).map(Secret::new));
        let is_dagshub = explicit
            .tracking_uri
            .host_str()
            .is_some_and(|h| h == "dagshub.com" || h.ends_with(".dagshub.com"));
        let auth = match (username, password, token) {
            (Some(username), Some(password), _) => MlflowAuth::Basic { username, password },
            // DagsHub's documented setup is basic auth with the token as the
            // password (`dagshub.init()`); bearer acceptance is undocumented.
            (Some(username), None, Some(token)) if is_dagshub => MlflowAuth::Basic {
                username,
                password: token,
            },
            (_, _, Some(token)) => MlflowAuth::Bearer(token),
            _ => MlflowAuth::None,
        };
        // Credentials in the URL itself still count when nothing else is set.
        Ok(Some(if auth == MlflowAuth::None {
            explicit
        } else {
            Self::new(&uri, auth)?
        }))
    }

    /// The tracking URI for messages: no credentials, no trailing `/`.
    pub fn display_uri(&self) -> String {
        display_url(&self.tracking_uri)
    }
}

fn same_server(a: &Url, b: &str) -> bool {
    match Url::parse(b.trim()) {
        Ok(b) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        }
        Err(_) => false,
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A URL for messages and logs: credentials removed, no trailing `/`.
pub(crate) fn display_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.as_str().trim_end_matches('/').to_owned()
}

pub(crate) fn redact_url_text(text: &str) -> String {
    match Url::parse(text.trim()) {
        Ok(url) if url.has_host() => display_url(&url),
        // Not a URL with a host: drop anything that could be userinfo.
        _ => match text.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => text.to_owned(),
        },
    }
}

impl fmt::Debug for MlflowConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowConfig")
            .field("tracking_uri", &self.display_uri())
            .field("auth", &self.auth)
            .finish()
    }
}

impl fmt::Debug for MlflowAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { username, password } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", password)
                .finish(),
            Self::Bearer(token) => f.debug_tuple("Bearer").field(token).finish(),
        }
    }
}

impl fmt::Display for MlflowAuth {
    /// How the credentials are described in messages, e.g.
    /// `basic auth as user 'alice'`; never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("no credentials"),
            Self::Basic { username, .. } => write!(f, "basic auth as user '{username}'"),
            Self::Bearer(_) => f.write_str("a bearer token"),
        }
    }
}

/// Why a model could not be made available on local disk.
///
/// Messages name the tracking server and the model, never credentials.
#[derive(Debug, thiserror::Error)]
pub enum ModelSourceError {
    /// The model reference does not parse.
    #[error("invalid model URI {uri:?}: {reason}")]
    InvalidUri {
        /// The text as given.
        uri: String,
        /// What is wrong and which forms are accepted.
        reason: String,
    },
    /// The tracking URI does not parse or is not http(s).
    #[error("invalid MLflow tracking URI {uri:?}: {reason}")]
    InvalidTrackingUri {
        /// The URI, credentials removed.
        uri: String,
        /// What is wrong.
        reason: String,
    },
    /// A registry or run URI was given but no tracking server is configured.
    #[error(
        "{uri} needs an MLflow tracking server: set `tracking_uri` in the backend config \
         or the MLFLOW_TRACKING_URI environment variable"
    )]
    NoTrackingServer {
        /// The model URI.
        uri: String,
    },
    /// Connecting failed (after retries).
    #[error("cannot reach MLflow tracking server at {tracking_uri}: {detail}")]
    Unreachable {
        /// The server (or artifact proxy) contacted.
        tracking_uri: String,
        /// The cause, e.g. `connection refused`.
        detail: String,
    },
    /// HTTP 401 or 403.
    #[error(
        "MLflow at {tracking_uri} {} with HTTP {status}{hint}",
        if *.credentials_sent { format!("rejected the credentials ({auth})") }
        else { "wants credentials and none are configured: it answered".to_owned() }
    )]
    Unauthorized {
        /// The server contacted.
        tracking_uri: String,
        /// How we authenticated, e.g. `basic auth as user 'alice'`.
        auth: String,
        /// Whether any credentials were sent.
        credentials_sent: bool,
        /// 401 or 403.
        status: u16,
        /// What to check, starting with `; ` (or empty).
        hint: String,
    },
    /// The model, version, alias, run or artifact does not exist.
    #[error("{detail}")]
    NotFound {
        /// E.g. `model 'orientation' has no version 7 in the registry at http://…`.
        detail: String,
    },
    /// Another HTTP error status (after retries for 5xx).
    #[error("MLflow at {tracking_uri} answered HTTP {status} to {request}{detail}")]
    Http {
        /// The server contacted.
        tracking_uri: String,
        /// The status code.
        status: u16,
        /// `GET /api/2.0/…` (no query string).
        request: String,
        /// The server's message, starting with `: ` (or empty).
        detail: String,
    },
    /// A response body is not what MLflow sends.
    #[error("MLflow at {tracking_uri} sent an unexpected answer to {request}: {detail}")]
    BadResponse {
        /// The server contacted.
        tracking_uri: String,
        /// `GET /api/2.0/…`.
        request: String,
        /// What was wrong.
        detail: String,
    },
    /// The model's artifacts are not served by the tracking server.
    #[error(
        "MLflow at {tracking_uri} stores {model} at {artifact_uri}, which this server cannot \
         download: only artifacts proxied by the tracking server (mlflow-artifacts:/…) are \
         supported. Run `mlflow server` with --serve-artifacts (the default since MLflow 2.0; \
         --no-serve-artifacts or a --default-artifact-root such as s3://… turns it off for new \
         experiments) and log the model again, or download it yourself and configure the \
         local folder"
    )]
    ArtifactsNotProxied {
        /// The server contacted.
        tracking_uri: String,
        /// The model URI.
        model: String,
        /// Where MLflow says the artifacts are (`s3://…`, `/local/path`, …).
        artifact_uri: String,
    },
    /// A file download kept failing or arrived with the wrong size.
    #[error("downloading {file} from MLflow at {tracking_uri} failed: {detail}")]
    Download {
        /// The server contacted.
        tracking_uri: String,
        /// The file, relative to the model folder.
        file: String,
        /// What went wrong.
        detail: String,
    },
    /// A folder holds neither an `MLmodel` file nor exactly one `.onnx` file.
    #[error("{model} is not a usable model: {detail}")]
    NoModel {
        /// The model: a local path, or the URI and version it resolved to.
        model: String,
        /// What was looked for and found.
        detail: String,
    },
    /// The `MLmodel` file cannot be used.
    #[error("{model}: {source}")]
    MlModel {
        /// The model: a local path, or the URI and version it resolved to.
        model: String,
        /// Why.
        #[source]
        source: MlModelError,
    },
    /// An upload cannot be unpacked safely.
    #[error("uploaded model: {0}")]
    Archive(#[from] ArchiveError),
    /// `upload:<sha256>` names an upload the cache no longer holds.
    #[error("uploaded model {sha256} is no longer in the model cache; upload it again")]
    UploadNotCached {
        /// The upload's sha256.
        sha256: String,
    },
    /// A tokenizer kept outside the model folder could not be fetched.
    #[error("cannot get the tokenizer {from}: {detail}")]
    Tokenizer {
        /// Where it was asked from, without credentials.
        from: String,
        /// What went wrong.
        detail: String,
        /// Whether trying again later may work (network, HTTP 5xx/429).
        transient: bool,
    },
    /// The HTTP client cannot be created (TLS initialisation failed).
    #[error("cannot create the HTTP client for MLflow: {0}")]
    HttpClient(String),
    /// A local file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `read`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ModelSourceError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// `true` for failures on the MLflow side that may pass by themselves
    /// (unreachable server, 5xx, interrupted downloads).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Download { .. } => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429,
            Self::Tokenizer { transient, .. } => *transient,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> ModelUri {
        ModelUri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn registry_uris_parse_like_mlflow() {
        assert_eq!(
            parse("models:/orientation/7"),
            ModelUri::ModelVersion {
                name: "orientation".into(),
                version: 7
            }
        );
        assert_eq!(
            parse("models:/orientation@champion"),
            ModelUri::ModelAlias {
                name: "orientation".into(),
                alias: "champion".into()
            }
        );
        for latest in ["models:/orientation/latest", "models:/orientation/LATEST"] {
            assert_eq!(
                parse(latest),
                ModelUri::LatestVersion {
                    name: "orientation".into()
                }
            );
        }
        assert_eq!(
            parse("models:/orientation/Production"),
            ModelUri::Stage {
                name: "orientation".into(),
                stage: "Production".into()
            }
        );
        assert_eq!(
            parse("models:/m-3aa6f0"),
            ModelUri::LoggedModel {
                model_id: "m-3aa6f0".into()
            }
        );
        // A name may hold '@' when a version follows, as in MLflow.
        assert_eq!(
            parse("models:/team@x/2"),
            ModelUri::ModelVersion {
                name: "team@x".into(),
                version: 2
            }
        );
    }

    #[test]
    fn run_and_artifact_uris_parse() {
        assert_eq!(
            parse("runs:/abc123/model"),
            ModelUri::RunArtifact {
                run_id: "abc123".into(),
                path: "model".into()
            }
        );
        assert_eq!(
            parse("runs:/abc123/nested/model/"),
            ModelUri::RunArtifact {
                run_id: "abc123".into(),
                path: "nested/model".into()
            }
        );
        assert_eq!(
            parse("mlflow-artifacts:/1/models/m-1/artifacts"),
            ModelUri::MlflowArtifacts {
                authority: None,
                path: "1/models/m-1/artifacts".into()
            }
        );
        assert_eq!(
            parse("mlflow-artifacts://mlflow:5000/1/abc/artifacts/model"),
            ModelUri::MlflowArtifacts {
                authority: Some("mlflow:5000".into()),
                path: "1/abc/artifacts/model".into()
            }
        );
    }

    #[test]
    fn local_paths_are_folders_or_onnx_files() {
        assert_eq!(
            parse("/models/iris"),
            ModelUri::LocalDir("/models/iris".into())
        );
        assert_eq!(parse("./m/MLmodel"), ModelUri::LocalDir("./m".into()));
        assert_eq!(parse("model.ONNX"), ModelUri::OnnxFile("model.ONNX".into()));
        assert_eq!(
            parse("file:///srv/m%20x/model.onnx"),
            ModelUri::OnnxFile("/srv/m x/model.onnx".into())
        );
        assert_eq!(
            parse("C:/models/x"),
            ModelUri::LocalDir("C:/models/x".into())
        );
        let sha = "AB".repeat(32);
        assert_eq!(
            parse(&format!("upload:{sha}")),
            ModelUri::Upload {
                sha256: sha.to_ascii_lowercase()
            }
        );
    }

    #[test]
    fn malformed_uris_are_rejected_with_the_accepted_forms() {
        for (text, needle) in [
            ("", "empty"),
            ("models:/orientation", "models:/orientation/1"),
            ("models:/orientation/", "missing version"),
            ("models:/orientation@", "empty alias"),
            ("models:/@champion", "empty model name"),
            ("models:/a/b/c", "not a version"),
            ("models:orientation/1", "expected models:/"),
            ("models://profile@databricks/x/1", "not supported"),
            ("runs:/", "runs:/<run_id>"),
            ("runs:/abc/../etc", "must not contain"),
            ("mlflow-artifacts:/", "without a path"),
            ("s3://bucket/model", "not read directly"),
            ("ftp://x", "unknown scheme"),
            ("upload:1234", "64 hex"),
            (" models:/a/1", "whitespace"),
        ] {
            let err = ModelUri::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "models:/orientation/7",
            "models:/orientation@champion",
            "models:/orientation/latest",
            "models:/orientation/Staging",
            "models:/m-abc",
            "runs:/abc/model",
            "runs:/abc",
            "mlflow-artifacts:/1/x",
            "mlflow-artifacts://h:1/1/x",
            "/srv/model",
            "/srv/model.onnx",
        ] {
            let uri = parse(text);
            assert_eq!(uri.to_string(), text);
            assert_eq!(parse(&uri.to_string()), uri);
        }
        assert_eq!(parse("models:/o/Latest").to_string(), "models:/o/latest");
        let json = serde_json::to_string(&parse("models:/o@c")).unwrap();
        assert_eq!(json, "\"models:/o@c\"");
        assert_eq!(
            serde_json::from_str::<ModelUri>(&json).unwrap(),
            parse("models:/o@c")
        );
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_fall_back_to_the_mlflow_environment() {
        let vars = [
            (ENV_TRACKING_URI, "http://mlflow:5000"),
            (ENV_TRACKING_USERNAME, "alice"),
            (ENV_TRACKING_PASSWORD, "pw"),
            (ENV_TRACKING_TOKEN, "tok"),
        ];
        let cfg = MlflowConfig::from_settings_with_env(&MlflowSettings::default(), env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.display_uri(), "http://mlflow:5000");
        // Basic wins over the token, as in the MLflow client.
        assert_eq!(
            cfg.auth,
            MlflowAuth::Basic {
                username: "alice".into(),
                password: Secret::new("pw")
            }
        );

        let own = MlflowSettings {
            token: Some(Secret::new("mine")),
            username: Some(String::new()),
            ..Default::default()
        };
        let cfg = MlflowConfig::from_settings_with_env(&own, env(&vars[..1]))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.auth, MlflowAuth::Bearer(Secret::new("mine")));

        assert!(
            MlflowConfig::from_settings_with_env(&MlflowSettings::default(), env(&[]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn environment_credentials_are_not_sent_to_another_server() {
        let vars = [
            (ENV_TRACKING_URI, "http://mlflow:5000/"),
            (ENV_TRACKING_USERNAME, "alice"),
            (ENV_TRACKING_PASSWORD, "pw"),
        ];
        let elsewhere = MlflowSettings {
            tracking_uri: Some("http://other:5000".into()),
            ..Default::default()
        };
        let cfg = MlflowConfig::from_settings_with_env(&elsewhere, env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.auth, MlflowAuth::None);
        let same = MlflowSettings {
            tracking_uri: Some("http://mlflow:5000".into()),
            ..Default::default()
        };
        let cfg = MlflowConfig::from_settings_with_env(&same, env(&vars))
            .unwrap()
            .unwrap();
        assert!(matches!(cfg.auth, MlflowAuth::Basic { .. }));
    }

    #[test]
    fn dagshub_works_with_username_and_token() {
        let settings = MlflowSettings {
            tracking_uri: Some("https://dagshub.com/alice/orientation.mlflow".into()),
            username: Some("alice".into()),
            token: Some(Secret::new("dh-token")),
            ..Default::default()
        };
        let cfg = MlflowConfig::from_settings_with_env(&settings, env(&[]))
            .unwrap()
            .unwrap();
        assert_eq!(
            cfg.auth,
            MlflowAuth::Basic {
                username: "alice".into(),
                password: Secret::new("dh-token")
            }
        );
        assert_eq!(
            cfg.display_uri(),
            "https://dagshub.com/alice/orientation.mlflow"
        );
    }

    #[test]
    fn credentials_never_show_in_debug_display_or_errors() {
        let cfg =
            MlflowConfig::new("https://bob:s3cret@mlflow.example/", MlflowAuth::None).unwrap();
        assert_eq!(
            cfg.auth,
            MlflowAuth::Basic {
                username: "bob".into(),
                password: Secret::new("s3cret")
            }
        );
        let shown = format!("{cfg:?} {} {}", cfg.auth, cfg.display_uri());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!cfg.tracking_uri.as_str().contains("s3cret"));
        let token = MlflowAuth::Bearer(Secret::new("tok-123"));
        assert!(!format!("{token:?} {token}").contains("tok-123"));
        let err = MlflowConfig::new("ftp://u:s3cret@host", MlflowAuth::None).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = MlflowConfig::new("u:s3cret@host", MlflowAuth::None).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn settings_deserialize_from_backend_config_json() {
        let s: MlflowSettings = serde_json::from_str(
            r#"{"tracking_uri": "http://m:5000", "username": "u", "password": "p"}"#,
        )
        .unwrap();
        assert_eq!(s.password, Some(Secret::new("p")));
        assert!(!format!("{s:?}").contains("\"p\""));
    }

    #[test]
    fn moving_registry_uris_pin_to_a_version_and_others_do_not() {
        let pin = |uri: &str| parse(uri).pinned_to("7").map(|u| u.to_string());
        assert_eq!(pin("models:/o@champion").as_deref(), Some("models:/o/7"));
        assert_eq!(pin("models:/o/latest").as_deref(), Some("models:/o/7"));
        assert_eq!(pin("models:/o/Production").as_deref(), Some("models:/o/7"));
        assert_eq!(pin("models:/o/3"), None);
        assert_eq!(pin("runs:/abc/model"), None);
        assert_eq!(parse("models:/o@champion").pinned_to("x"), None);
    }
}
