//! The JSON bodies of MLflow's REST answers, as far as this client reads
//! them (unknown fields are ignored; versions may come as strings or
//! numbers).

use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct MlflowErrorBody {
    pub(super) error_code: Option<String>,
    pub(super) message: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ModelVersionResponse {
    pub(super) model_version: ModelVersion,
}

#[derive(Deserialize)]
pub(super) struct ModelVersion {
    #[serde(default, deserialize_with = "string_or_number")]
    pub(super) version: Option<String>,
    #[serde(default)]
    pub(super) run_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LatestVersionsResponse {
    #[serde(default)]
    pub(super) model_versions: Vec<ModelVersion>,
}

#[derive(Deserialize)]
pub(super) struct DownloadUriResponse {
    pub(super) artifact_uri: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RunResponse {
    pub(super) run: Run,
}

#[derive(Deserialize)]
pub(super) struct Run {
    pub(super) info: RunInfo,
}

#[derive(Deserialize)]
pub(super) struct RunInfo {
    pub(super) artifact_uri: Option<String>,
    #[serde(default)]
    pub(super) experiment_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LoggedModelResponse {
    pub(super) model: LoggedModel,
}

#[derive(Deserialize)]
pub(super) struct LoggedModel {
    pub(super) info: LoggedModelInfo,
}

#[derive(Deserialize)]
pub(super) struct LoggedModelInfo {
    pub(super) artifact_uri: Option<String>,
    #[serde(default)]
    pub(super) source_run_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SearchLoggedModelsResponse {
    #[serde(default)]
    pub(super) models: Vec<LoggedModel>,
    #[serde(default)]
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ListArtifactsResponse {
    #[serde(default)]
    pub(super) files: Vec<ListedFile>,
}

#[derive(Deserialize)]
pub(super) struct ListedFile {
    pub(super) path: String,
    #[serde(default)]
    pub(super) is_dir: bool,
    #[serde(default)]
    pub(super) file_size: Option<serde_json::Value>,
}

pub(super) fn string_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}
