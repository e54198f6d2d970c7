//! The model flags `try` and `configure` share: the model reference and
//! the MLflow connection, with MLflow's own environment variable names.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::non_empty;
use cls::model::ModelConfig;
use cls::secret::Secret;

/// Which model, and how to reach its MLflow server.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// The model: `models:/<name>/<version>`, `models:/<name>@<alias>`,
    /// `runs:/<run_id>/<path>`, an MLflow model folder or a `.onnx` file.
    #[arg(long, value_name = "URI_OR_PATH")]
    pub model: String,
    /// MLflow tracking server, for `models:/` and `runs:/` URIs.
    #[arg(long, env = "MLFLOW_TRACKING_URI", value_name = "URL")]
    pub tracking_uri: Option<String>,
    /// MLflow basic-auth user.
    #[arg(long, env = "MLFLOW_TRACKING_USERNAME", value_name = "USER")]
    pub mlflow_username: Option<String>,
    /// MLflow basic-auth password.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub mlflow_password: Option<String>,
    /// MLflow bearer token (e.g. a DagsHub token).
    #[arg(
        long,
        env = "MLFLOW_TRACKING_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub mlflow_token: Option<String>,
}

impl ModelArgs {
    /// The model as a local path, when it names an existing file or folder.
    pub fn local_path(&self) -> Option<PathBuf> {
        let path = Path::new(&self.model);
        path.exists()
            .then(|| std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))
    }

    /// The model configuration for an in-process backend (`try`); local
    /// paths are made absolute.
    pub fn model_config(&self) -> ModelConfig {
        let uri = match self.local_path() {
            Some(path) => path.display().to_string(),
            None => self.model.clone(),
        };
        ModelConfig {
            uri: Some(uri),
            tracking_uri: non_empty(&self.tracking_uri).map(str::to_owned),
            username: non_empty(&self.mlflow_username).map(str::to_owned),
            password: non_empty(&self.mlflow_password).map(Secret::new),
            token: non_empty(&self.mlflow_token).map(Secret::new),
            // One session is plenty for a handful of files.
            sessions: Some(1),
            resolved_from: None,
        }
    }

    /// The `model` object of a configure request. `uri` is left out when
    /// the model is uploaded as a file instead. Written by hand because a
    /// [`Secret`] serializes as `***`.
    pub fn config_json(&self, uri: Option<&str>) -> Map<String, Value> {
        let mut model = Map::new();
        let mut put = |key: &str, value: Option<&str>| {
            if let Some(value) = value {
                model.insert(key.to_owned(), Value::String(value.to_owned()));
            }
        };
        put("uri", uri);
        put("tracking_uri", non_empty(&self.tracking_uri));
        put("username", non_empty(&self.mlflow_username));
        put("password", non_empty(&self.mlflow_password));
        put("token", non_empty(&self.mlflow_token));
        model
    }
}
