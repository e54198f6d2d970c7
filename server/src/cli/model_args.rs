//! The flags `try` and `configure` share: the model reference and the
//! MLflow connection (with MLflow's own environment variable names), and
//! the hook params (`--param key=value`).

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
    /// Where the tokenizer is, when the model folder does not hold its
    /// `tokenizer.json` where exports put it: a path inside the model
    /// folder, an MLflow URI (`runs:/<run_id>/<path>/tokenizer.json`,
    /// `models:/<name>/<version>`) or an http(s) URL of the file.
    #[arg(long, value_name = "PATH_OR_URI")]
    pub tokenizer: Option<String>,
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
            tokenizer: non_empty(&self.tokenizer).map(str::to_owned),
            // One session is plenty for a handful of files, and loads in
            // half the time of two.
            sessions: Some(1),
            lone_threads: Some(1),
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
        put("tokenizer", non_empty(&self.tokenizer));
        put("tracking_uri", non_empty(&self.tracking_uri));
        put("username", non_empty(&self.mlflow_username));
        put("password", non_empty(&self.mlflow_password));
        put("token", non_empty(&self.mlflow_token));
        model
    }
}

/// One `--param KEY=VALUE`: the value is JSON when it parses as JSON
/// (`0.5`, `true`, `["cat","dog"]`, `"0.5"` for a string that looks like a
/// number), else the text as a string.
pub fn parse_param(arg: &str) -> Result<(String, Value), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}` is not KEY=VALUE (e.g. --param threshold=0.5)"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{arg}` has no key before `=`"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

/// `--param` flags over a config's own `params` object (the flags win).
pub fn merge_params(params: Option<Value>, flags: &[(String, Value)]) -> Option<Value> {
    if flags.is_empty() {
        return params;
    }
    let mut merged = match params {
        Some(Value::Object(map)) => map,
        // Anything else is left for the server to refuse with its message.
        Some(other) => return Some(other),
        None => Map::new(),
    };
    merged.extend(flags.iter().cloned());
    Some(Value::Object(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_param_value_is_json_when_it_parses_else_a_string() {
        assert_eq!(parse_param("t=0.5").unwrap(), ("t".into(), json!(0.5)));
        assert_eq!(
            parse_param("names=[\"a\",\"b\"]").unwrap().1,
            json!(["a", "b"])
        );
        assert_eq!(parse_param("mode=fast").unwrap().1, json!("fast"));
        assert_eq!(parse_param("v=\"0.5\"").unwrap().1, json!("0.5"));
        assert_eq!(parse_param("eq=a=b").unwrap().1, json!("a=b"));
        assert!(parse_param("threshold").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_param("=1").unwrap_err().contains("no key"));
    }

    #[test]
    fn param_flags_override_the_config_params() {
        let flags = [("t".to_owned(), json!(0.3))];
        assert_eq!(
            merge_params(Some(json!({"t": 0.5, "k": 1})), &flags),
            Some(json!({"t": 0.3, "k": 1}))
        );
        assert_eq!(merge_params(None, &flags), Some(json!({"t": 0.3})));
        assert_eq!(merge_params(None, &[]), None);
    }
}
