//! The JSON bodies the server answers with, as types: the admin API's
//! backend descriptions (`/configure`, `/backends`), the protocol routes'
//! `/health`, `/setup`, `/versions`, `/predict` and `/webhook` bodies, and the
//! error body every route shares.
//!
//! The handlers build their responses from these types and the command line
//! reads the responses back into the same types, so a renamed or reshaped
//! field breaks the build instead of a client. Only wire types live here:
//! the conversions from the server's own types are beside them, and nothing
//! in this module knows about HTTP.
//!
//! Fields that a client can live without (activity counters, timings) are
//! `#[serde(default)]`, so a partial body still reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backend::{Activity, BackendConfig};
use crate::hooks::{Hook, HookKind, HookLimits};
use crate::tensor::TensorSpec;

/// `/health`'s `status` while the server serves requests.
pub const STATUS_UP: &str = "UP";

/// The body of every error answer: `{"status": 404, "error": "no backend
/// named 'x': …"}`. The message says what to fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The HTTP status code, repeated.
    pub status: u16,
    /// What went wrong and what to do about it.
    pub error: String,
}

/// `GET /health` (and `GET /`): whether the server is up and whether a
/// model is behind this URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Always [`STATUS_UP`] once the server answers.
    pub status: String,
    /// What Label Studio shows as the backend's class.
    #[serde(default)]
    pub model_class: String,
    /// The backend's name (`default` for the root URL).
    #[serde(default)]
    pub backend: String,
    /// Whether a model is configured at this URL.
    #[serde(default)]
    pub configured: bool,
    /// The configured backend's model version; `null` when none is.
    #[serde(default)]
    pub model_version: Option<String>,
}

/// `POST /setup`: the model version Label Studio stamps on predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupResponse {
    pub model_version: String,
}

/// `GET /versions`: the model versions this URL can serve (one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionsResponse {
    pub versions: Vec<String>,
}

/// `POST /webhook`: acknowledged, nothing else happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookResponse {
    /// Always `ok`.
    pub status: String,
}

/// `POST /predict`: one entry per task, in task order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictResponse {
    pub results: Vec<TaskOutcome>,
}

/// One `/predict` results entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskOutcome {
    /// The task failed; Label Studio skips an entry without `result` and
    /// keeps the other tasks' predictions.
    Failed(TaskFailure),
    /// The post-hook's prediction (an object) or predictions (an array),
    /// exactly as Label Studio stores them.
    Predicted(Value),
}

/// Why one task has no prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// What went wrong.
    pub error: String,
    /// Where it went wrong: `fetch`, `pre_hook`, `inference`, `post_hook`
    /// or `validation`.
    pub stage: String,
    /// The backend's model version, as on predictions.
    pub model_version: String,
}

/// `GET /backends`: every configured backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendList {
    pub backends: Vec<BackendDescription>,
}

/// `POST /configure`, `PUT /backends/{name}`: the new backend, and how long
/// building it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigureResponse {
    #[serde(flatten)]
    pub backend: BackendDescription,
    /// Milliseconds from the request to the swap (upload read, hooks
    /// compiled, model loaded, sample predicted).
    #[serde(default)]
    pub configure_ms: Option<f64>,
}

/// `GET /backends/{name}`: one backend as the admin API shows it. Secrets
/// in `config` come out as `***`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendDescription {
    /// The backend's name (`default` is the root backend).
    pub name: String,
    /// Its path on the server: `/` or `/backends/{name}`.
    pub url: String,
    /// The model version reported to Label Studio.
    pub model_version: String,
    pub model: ModelDescription,
    pub hooks: HooksDescription,
    /// The limits each hook call runs under.
    pub limits: LimitsDescription,
    /// The configuration as the user sent it, secrets redacted.
    pub config: BackendConfig,
    /// When this version of the backend was built (RFC 3339).
    pub created: String,
    #[serde(default)]
    pub activity: ActivityDescription,
    /// The store's generation of this version: one more with every write.
    #[serde(default)]
    pub generation: u64,
    /// The replica that answered.
    #[serde(default)]
    pub replica: String,
    /// What each live replica serves of this backend (admin responses
    /// that asked the store; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaDescription>,
}

/// One live replica's copy of a backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaDescription {
    pub replica: String,
    /// The generation it serves (`serving`), or failed to build (`failed`);
    /// 0 when it has none (`missing`).
    pub generation: u64,
    /// `serving`, `failed` or `missing`.
    pub state: String,
    /// Why the build failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds since the replica last reported.
    pub heartbeat_age_s: f64,
}

/// The loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDescription {
    /// Where the model came from, resolved (e.g. `models:/orientation/2`).
    pub source: String,
    pub inputs: Vec<TensorDescription>,
    pub outputs: Vec<TensorDescription>,
    /// The execution providers actually registered, in order.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Whether tasks are stacked into one run (every input's first
    /// dimension is dynamic).
    #[serde(default)]
    pub batches: bool,
}

/// A model input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorDescription {
    pub name: String,
    /// `f32`, `i64`, `string`, …; `null` for a type hooks cannot carry.
    pub element_type: Option<String>,
    /// -1 marks a dynamic dimension.
    pub shape: Vec<i64>,
}

impl From<&TensorSpec> for TensorDescription {
    fn from(spec: &TensorSpec) -> Self {
        Self {
            name: spec.name.clone(),
            element_type: spec.element_type.map(|t| t.to_string()),
            shape: spec.shape.clone(),
        }
    }
}

/// The backend's hooks; no `pre_hook` means the built-in one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HooksDescription {
    pub pre_hook: Option<HookDescription>,
    pub post_hook: HookDescription,
}

/// One compiled hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookDescription {
    pub kind: HookKind,
    /// SHA-256 of the uploaded component, hex.
    pub sha256: String,
    /// SHA-256 of the sources it was built from, as `hook build` records it
    /// (Python hooks): it names the hook in `model_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
    /// Size of the uploaded component in bytes.
    pub size: u64,
    /// Milliseconds spent compiling it (or loading the cached artefact).
    #[serde(default)]
    pub load_ms: f64,
    /// Whether the compiled artefact came from the on-disk cache.
    #[serde(default)]
    pub from_cache: bool,
    /// Whether calls run Cranelift's optimised code: false while a new hook
    /// serves on Winch's (`--hook-compilers`), true once Cranelift's has
    /// taken over (and cached it for restarts).
    #[serde(default = "optimized_unless_said")]
    pub optimized: bool,
}

/// Servers that do not say ran only Cranelift's code.
fn optimized_unless_said() -> bool {
    true
}

impl From<&Hook> for HookDescription {
    fn from(hook: &Hook) -> Self {
        let info = hook.info();
        Self {
            kind: info.kind,
            sha256: info.sha256.clone(),
            source_sha256: info.source_sha256.clone(),
            size: info.size as u64,
            load_ms: info.load_ms,
            from_cache: info.from_cache,
            optimized: hook.is_optimized(),
        }
    }
}

/// Per-call hook limits in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsDescription {
    pub hook_timeout_ms: u64,
    pub hook_memory_mb: u64,
    pub max_output_mb: u64,
}

impl From<&HookLimits> for LimitsDescription {
    fn from(limits: &HookLimits) -> Self {
        Self {
            hook_timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            hook_memory_mb: (limits.memory_bytes >> 20) as u64,
            max_output_mb: (limits.max_output_bytes >> 20) as u64,
        }
    }
}

/// What a backend has done since it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityDescription {
    /// `/predict` requests answered.
    pub requests: u64,
    /// Tasks in those requests.
    pub tasks: u64,
    /// Tasks that failed.
    pub task_errors: u64,
    /// The most recent task failure's message.
    pub last_error: Option<String>,
}

impl From<&Activity> for ActivityDescription {
    fn from(activity: &Activity) -> Self {
        use std::sync::atomic::Ordering;
        Self {
            requests: activity.requests.load(Ordering::Relaxed),
            tasks: activity.tasks.load(Ordering::Relaxed),
            task_errors: activity.task_errors.load(Ordering::Relaxed),
            last_error: activity.last_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description() -> BackendDescription {
        BackendDescription {
            name: "layout".into(),
            url: "/backends/layout".into(),
            model_version: "layout-0123abcd".into(),
            model: ModelDescription {
                source: "models:/layout/1".into(),
                inputs: vec![TensorDescription {
                    name: "images".into(),
                    element_type: Some("f32".into()),
                    shape: vec![-1, 3, 640, 640],
                }],
                outputs: vec![TensorDescription {
                    name: "boxes".into(),
                    element_type: None,
                    shape: vec![-1, 6],
                }],
                providers: vec!["CPUExecutionProvider".into()],
                batches: true,
            },
            hooks: HooksDescription {
                pre_hook: None,
                post_hook: HookDescription {
                    kind: HookKind::Post,
                    sha256: "ab".repeat(32),
                    source_sha256: None,
                    size: 1234,
                    load_ms: 12.5,
                    from_cache: false,
                    optimized: false,
                },
            },
            limits: LimitsDescription {
                hook_timeout_ms: 5000,
                hook_memory_mb: 256,
                max_output_mb: 16,
            },
            config: serde_json::from_value(serde_json::json!({
                "model": {"uri": "models:/layout/1", "password": "hunter2"},
                "batch_size": 4,
            }))
            .expect("a valid config"),
            created: "2026-01-02T03:04:05Z".into(),
            activity: ActivityDescription {
                requests: 2,
                tasks: 3,
                task_errors: 1,
                last_error: Some("bad image".into()),
            },
            generation: 3,
            replica: "r1".into(),
            replicas: vec![],
        }
    }

    #[test]
    fn a_backend_description_has_the_admin_api_field_names_and_shapes() {
        let json = serde_json::to_value(description()).expect("serializes");
        assert_eq!(json["url"], "/backends/layout");
        assert_eq!(json["model"]["source"], "models:/layout/1");
        assert_eq!(json["model"]["inputs"][0]["element_type"], "f32");
        assert_eq!(json["model"]["outputs"][0]["element_type"], Value::Null);
        assert_eq!(json["model"]["batches"], true);
        assert_eq!(json["hooks"]["pre_hook"], Value::Null);
        assert_eq!(json["hooks"]["post_hook"]["kind"], "post");
        assert_eq!(json["limits"]["hook_memory_mb"], 256);
        assert_eq!(json["activity"]["last_error"], "bad image");
        assert_eq!(json["config"]["batch_size"], 4);
    }

    #[test]
    fn secrets_in_a_description_come_out_redacted() {
        let text = serde_json::to_string(&description()).expect("serializes");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains(r#""password":"***""#), "{text}");
    }

    #[test]
    fn a_configure_response_reads_back_into_the_same_types() {
        let response = ConfigureResponse {
            backend: description(),
            configure_ms: Some(812.0),
        };
        let json = serde_json::to_value(&response).expect("serializes");
        assert_eq!(json["configure_ms"], 812.0);
        assert_eq!(json["name"], "layout");
        let back: ConfigureResponse = serde_json::from_value(json.clone()).expect("deserializes");
        assert_eq!(back.backend.hooks, response.backend.hooks);
        assert_eq!(serde_json::to_value(&back).expect("serializes"), json);
    }

    #[test]
    fn a_description_without_activity_still_reads() {
        let mut json = serde_json::to_value(description()).expect("serializes");
        json.as_object_mut().expect("an object").remove("activity");
        let back: BackendDescription = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back.activity, ActivityDescription::default());
    }

    #[test]
    fn predict_results_tell_failures_from_predictions() {
        let body = serde_json::json!({"results": [
            {"result": [], "score": 0.5, "model_version": "v"},
            {"error": "no image", "stage": "fetch", "model_version": "v"},
        ]});
        let response: PredictResponse = serde_json::from_value(body.clone()).expect("reads");
        assert!(matches!(response.results[0], TaskOutcome::Predicted(_)));
        assert!(matches!(response.results[1], TaskOutcome::Failed(_)));
        assert_eq!(serde_json::to_value(&response).expect("writes"), body);
    }
}
