//! The admin API: `POST /configure` (the root backend, which Label Studio
//! reaches at `/`), `PUT /backends/{name}`, `GET /backends`, `GET /backends/{name}`,
//! `DELETE /backends/{name}`; and [`Loader`], which turns a configuration
//! into a live [`Backend`] (also used to restore persisted backends at
//! start-up).
//!
//! A configure request is validated completely before anything changes:
//! config JSON, hooks compiled, model loaded, the optional sample task
//! predicted and validated. Only then is the backend persisted and swapped
//! in, atomically; on any failure the previous version keeps serving.
//!
//! Admin routes require `Authorization: Bearer $ADMIN_TOKEN` when a token is
//! configured, and accept only loopback clients otherwise; a request relayed
//! by a proxy counts as loopback only when the proxy is trusted
//! (`--trusted-proxies`) and the client it names is (see [`crate::auth`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::{Multipart, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::{
    ActivityDescription, BackendDescription, BackendList, ConfigureResponse, HookDescription,
    HooksDescription, LimitsDescription, ModelDescription, TensorDescription,
};
use crate::app::{ApiError, AppState};
use crate::hooks::{HookKind, HookLoadError, HookRuntime};
use crate::labelconfig::LabelConfig;
use crate::model::{LoadedModel, ModelLoadError, ModelLoader};
use crate::pipeline::{self, PredictRequest, Services};
use crate::state::{Activity, Backend, BackendConfig, BackendName, PersistedBackend};
use crate::tensor::TensorSpec;

/// The admin routes, behind `admin_auth`.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/configure", post(configure_root))
        .route("/backends", get(list))
        .route(
            "/backends/{name}",
            get(show).put(configure_named).delete(delete),
        )
        .route_layer(middleware::from_fn_with_state(state, admin_auth))
}

/// Bearer token when `ADMIN_TOKEN` is set; loopback clients only otherwise,
/// judged by the client behind any trusted proxy ([`crate::auth::admin_check`]).
async fn admin_auth(state: State<AppState>, request: Request, next: Next) -> Response {
    crate::auth::admin_auth(state, request, next).await
}

async fn configure_root(
    State(state): State<AppState>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    configure(&state, BackendName::root(), multipart).await
}

async fn configure_named(
    State(state): State<AppState>,
    Path(name): Path<String>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let name = BackendName::new(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    configure(&state, name, multipart).await
}

async fn configure(
    state: &AppState,
    name: BackendName,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let upload = read_upload(multipart).await?;
    let persisted = PersistedBackend {
        name: name.clone(),
        config: upload.config,
        pre_hook: upload.pre_hook.map(|b| b.to_vec()),
        post_hook: upload.post_hook.to_vec(),
        model_upload: upload.model.map(|(n, b)| (n, b.to_vec())),
    };
    // One configure per backend at a time, so disk and memory agree.
    let lock = state.loader.lock_for(&name);
    let _guard = lock.lock().await;
    let backend = Arc::new(state.loader.build(&persisted).await?);
    if let Some(sample) = upload.sample {
        check_sample(&state.services, &backend, sample).await?;
    }
    state
        .state_dir
        .save(&persisted)
        .map_err(|e| ApiError::Internal(format!("cannot persist backend: {e}")))?;
    let replaced = state.backends.swap(backend.clone()).is_some();
    tracing::info!(
        backend = %name, model_version = %backend.model_version, replaced,
        "backend configured in {:.0} ms", started.elapsed().as_secs_f64() * 1e3
    );
    let body = ConfigureResponse {
        backend: describe(&backend),
        configure_ms: Some(started.elapsed().as_secs_f64() * 1e3),
    };
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(body)).into_response())
}

/// The parts of a configure request.
struct Upload {
    config: BackendConfig,
    pre_hook: Option<Bytes>,
    post_hook: Bytes,
    model: Option<(String, Bytes)>,
    sample: Option<Bytes>,
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, ApiError> {
    // Read every part before judging any, so an error is answered after the
    // client finished sending (otherwise it sees a reset, not our message).
    let mut parts: Vec<(String, Option<String>, Bytes)> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(multipart_error)?;
        parts.push((name, file_name, bytes));
    }
    let mut config = None;
    let mut pre_hook = None;
    let mut post_hook = None;
    let mut model = None;
    let mut sample = None;
    for (name, file_name, bytes) in parts {
        match name.as_str() {
            "config" => config = Some(parse_config(&bytes)?),
            "pre_hook" => pre_hook = Some(bytes),
            "post_hook" => post_hook = Some(bytes),
            "model" => model = Some((file_name.unwrap_or_else(|| "model.onnx".into()), bytes)),
            "sample" => sample = Some(bytes),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown multipart part '{other}' (expected config, pre_hook, post_hook, model, sample)"
                )));
            }
        }
    }
    let config = config.unwrap_or_else(BackendConfig::empty);
    let post_hook = post_hook.ok_or_else(|| {
        ApiError::BadRequest(
            "missing the post_hook part (a .wasm component exporting the post-hook world)".into(),
        )
    })?;
    match (&config.model.uri, &model) {
        (None, None) => {
            return Err(ApiError::BadRequest(
                "no model: set config.model.uri (e.g. models:/name/1) or upload a model part"
                    .into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "both config.model.uri and a model part were given; use one".into(),
            ));
        }
        _ => {}
    }
    Ok(Upload {
        config,
        pre_hook,
        post_hook,
        model,
        sample,
    })
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(e.body_text())
    } else {
        ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}

fn parse_config(bytes: &[u8]) -> Result<BackendConfig, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("config: {e}")))
}

/// Runs the sample task(s) through the new backend; any failure refuses
/// the configuration.
async fn check_sample(
    services: &Services,
    backend: &Arc<Backend>,
    sample: Bytes,
) -> Result<(), ApiError> {
    let value: Value = serde_json::from_slice(&sample)
        .map_err(|e| ApiError::BadRequest(format!("sample is not JSON: {e}")))?;
    let tasks = match value {
        Value::Array(tasks) => tasks,
        task @ Value::Object(_) => vec![task],
        _ => {
            return Err(ApiError::BadRequest(
                "sample must be a task object or a list of tasks".into(),
            ));
        }
    };
    let request = PredictRequest {
        tasks,
        ..PredictRequest::default()
    };
    let (results, _) = pipeline::predict(services, backend, request).await?;
    for (i, result) in results.into_iter().enumerate() {
        if let Err(e) = result {
            return Err(ApiError::Unprocessable(format!(
                "sample task {i} failed at {}: {}",
                e.stage.as_str(),
                e.message
            )));
        }
    }
    Ok(())
}

async fn list(State(state): State<AppState>) -> Json<BackendList> {
    Json(BackendList {
        backends: state.backends.list().iter().map(|b| describe(b)).collect(),
    })
}

async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BackendDescription>, ApiError> {
    let name = BackendName::new(&name).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let backend = state
        .backends
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no backend named '{name}'")))?;
    Ok(Json(describe(&backend)))
}

async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = BackendName::new(&name).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let lock = state.loader.lock_for(&name);
    let _guard = lock.lock().await;
    if state.backends.get(&name).is_none() {
        return Err(ApiError::NotFound(format!("no backend named '{name}'")));
    }
    state
        .state_dir
        .delete(&name)
        .map_err(|e| ApiError::Internal(format!("cannot delete backend files: {e}")))?;
    state.backends.remove(&name);
    tracing::info!(backend = %name, "backend deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A backend as the admin API shows it; secrets come out as `***`.
pub fn describe(backend: &Backend) -> BackendDescription {
    BackendDescription {
        name: backend.name.to_string(),
        url: backend.name.url_path(),
        model_version: backend.model_version.clone(),
        model: ModelDescription {
            source: backend.model_description.clone(),
            inputs: tensors(backend.model.inputs()),
            outputs: tensors(backend.model.outputs()),
            providers: backend.model.providers().to_vec(),
            batches: backend.model.batches_on_dim0(),
        },
        hooks: HooksDescription {
            pre_hook: backend.pre_hook.as_deref().map(HookDescription::from),
            post_hook: HookDescription::from(&*backend.post_hook),
        },
        limits: LimitsDescription::from(&backend.limits),
        config: backend.config.clone(),
        created: rfc3339(backend.created),
        activity: ActivityDescription::from(&backend.activity),
    }
}

fn tensors(specs: &[TensorSpec]) -> Vec<TensorDescription> {
    specs.iter().map(TensorDescription::from).collect()
}

/// A time as RFC 3339 (`2026-01-02T03:04:05.123Z`); empty if out of range.
fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Hook(#[from] HookLoadError),
    #[error(transparent)]
    Model(#[from] ModelLoadError),
}

impl From<ConfigureError> for ApiError {
    fn from(e: ConfigureError) -> Self {
        match e {
            ConfigureError::Config(m) => ApiError::BadRequest(m),
            ConfigureError::Hook(e @ HookLoadError::TooLarge { .. }) => {
                ApiError::PayloadTooLarge(e.to_string())
            }
            ConfigureError::Hook(e @ HookLoadError::Internal { .. }) => {
                ApiError::Internal(e.to_string())
            }
            ConfigureError::Hook(e) => ApiError::Unprocessable(e.to_string()),
            ConfigureError::Model(e) if e.is_upstream() => ApiError::BadGateway(e.to_string()),
            ConfigureError::Model(e) => ApiError::Unprocessable(e.to_string()),
        }
    }
}

/// Builds backends from configurations: compiles hooks and loads models.
pub struct Loader {
    hooks: Arc<HookRuntime>,
    models: Arc<ModelLoader>,
    locks: Mutex<HashMap<BackendName, Arc<tokio::sync::Mutex<()>>>>,
}

impl Loader {
    pub fn new(hooks: Arc<HookRuntime>, models: Arc<ModelLoader>) -> Self {
        Self {
            hooks,
            models,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock_for(&self, name: &BackendName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.clone()).or_default().clone()
    }

    /// Compiles the hooks and loads the model (concurrently), checking every
    /// part of the configuration.
    pub async fn build(&self, p: &PersistedBackend) -> Result<Backend, ConfigureError> {
        let config = &p.config;
        let limits = config
            .limits
            .to_hook_limits()
            .map_err(|e| ConfigureError::Config(e.to_string()))?;
        if config.batch_size == 0 {
            return Err(ConfigureError::Config(
                "batch_size must be at least 1".into(),
            ));
        }
        let label_config = config
            .label_config
            .as_deref()
            .map(|xml| {
                LabelConfig::parse(xml)
                    .map(Arc::new)
                    .map_err(|e| ConfigureError::Config(format!("label_config: {e}")))
            })
            .transpose()?;
        let fetch = crate::fetch::FetchConfig::from_settings(&config.fetch)
            .map_err(|e| ConfigureError::Config(format!("fetch: {e}")))?;
        let pre = async {
            match &p.pre_hook {
                Some(bytes) => self
                    .hooks
                    .load(HookKind::Pre, Bytes::from(bytes.clone()))
                    .await
                    .map(|h| Some(Arc::new(h))),
                None => Ok(None),
            }
        };
        let post = self
            .hooks
            .load(HookKind::Post, Bytes::from(p.post_hook.clone()));
        let model = self.models.load(&config.model, p.model_upload.as_ref());
        let (pre, post, model) = tokio::join!(pre, post, model);
        let (pre, post, loaded) = (pre?, post?, model?);
        let LoadedModel {
            model,
            description,
            label,
            identity,
            lease,
        } = loaded;
        let model_version = config
            .model_version
            .clone()
            .unwrap_or_else(|| derived_version(&label, &identity, pre.as_deref(), &post));
        Ok(Backend {
            name: p.name.clone(),
            config: config.clone(),
            model_version,
            model_description: description,
            model,
            pre_hook: pre,
            post_hook: Arc::new(post),
            limits,
            label_config,
            fetch,
            created: SystemTime::now(),
            activity: Activity::default(),
            model_lease: Some(lease),
        })
    }
}

/// `<model>-<8 hex>`: changes whenever the model or a hook changes, so Label
/// Studio re-predicts tasks after a reconfiguration and dedups otherwise.
fn derived_version(
    label: &str,
    identity: &str,
    pre: Option<&crate::hooks::Hook>,
    post: &crate::hooks::Hook,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(identity.as_bytes());
    if let Some(pre) = pre {
        hasher.update(pre.info().sha256.as_bytes());
    }
    hasher.update(post.info().sha256.as_bytes());
    format!("{label}-{}", &hex::encode(hasher.finalize())[..8])
}
