//! From a model URI to the folder holding its files: the registry's
//! version, alias, latest and stage lookups, runs and the models they
//! logged, and the mapping of an artifact URI onto the artifact proxy.

use url::Url;

use super::wire::{
    DownloadUriResponse, LatestVersionsResponse, LoggedModelResponse, ModelVersion,
    ModelVersionResponse, RunResponse, SearchLoggedModelsResponse,
};
use super::{ArtifactLocation, MAX_SEARCH_PAGES, RegistryClient, ResolvedModel};
use crate::model::source::{ModelSourceError, ModelUri};

impl RegistryClient {
    /// Resolves a registry, run, logged-model or `mlflow-artifacts:` URI to
    /// the folder holding the model's files.
    pub async fn resolve(&self, uri: &ModelUri) -> Result<ResolvedModel, ModelSourceError> {
        let server = self.server();
        match uri {
            ModelUri::ModelVersion { name, version } => {
                let version = version.to_string();
                let mv: ModelVersionResponse = self
                    .get_json(
                        &["mlflow", "model-versions", "get"],
                        &[("name", name), ("version", &version)],
                    )
                    .await
                    .map_err(not_found(|m| {
                        format!(
                            "model '{name}' has no version {version} in the registry at {server}{m}"
                        )
                    }))?;
                self.registered(uri, name, mv.model_version).await
            }
            ModelUri::ModelAlias { name, alias } => {
                let mv: ModelVersionResponse = self
                    .get_json(
                        &["mlflow", "registered-models", "alias"],
                        &[("name", name), ("alias", alias)],
                    )
                    .await
                    .map_err(not_found(|m| {
                        format!(
                            "model '{name}' has no alias '{alias}' in the registry at {server}{m}"
                        )
                    }))?;
                self.registered(uri, name, mv.model_version).await
            }
            ModelUri::LatestVersion { name } => self.latest(uri, name, None).await,
            ModelUri::Stage { name, stage } => self.latest(uri, name, Some(stage)).await,
            ModelUri::LoggedModel { model_id } => {
                let model: LoggedModelResponse = self
                    .get_json(&["mlflow", "logged-models", model_id], &[])
                    .await
                    .map_err(not_found(|m| {
                        format!("logged model '{model_id}' does not exist at the MLflow tracking server at {server}{m}")
                    }))?;
                let info = model.model.info;
                let artifact_uri =
                    required(info.artifact_uri, &server, "logged-models", "artifact_uri")?;
                Ok(ResolvedModel {
                    description: describe(uri, None, info.source_run_id.as_deref()),
                    name: None,
                    version: None,
                    location: self.location(&artifact_uri, uri)?,
                    run_id: info.source_run_id,
                    artifact_uri,
                })
            }
            ModelUri::RunArtifact { run_id, path } => self.run_artifact(uri, run_id, path).await,
            ModelUri::MlflowArtifacts { .. } => {
                let artifact_uri = uri.to_string();
                Ok(ResolvedModel {
                    description: artifact_uri.clone(),
                    name: None,
                    version: None,
                    run_id: None,
                    location: self.location(&artifact_uri, uri)?,
                    artifact_uri,
                })
            }
            ModelUri::LocalDir(_) | ModelUri::OnnxFile(_) | ModelUri::Upload { .. } => {
                Err(ModelSourceError::InvalidUri {
                    uri: uri.to_string(),
                    reason: "not an MLflow URI; local models and uploads are read from disk"
                        .to_owned(),
                })
            }
        }
    }

    pub(super) async fn latest(
        &self,
        uri: &ModelUri,
        name: &str,
        stage: Option<&str>,
    ) -> Result<ResolvedModel, ModelSourceError> {
        let server = self.server();
        let mut body = serde_json::json!({ "name": name });
        if let Some(stage) = stage {
            body["stages"] = serde_json::json!([stage]);
        }
        let latest: LatestVersionsResponse = self
            .call_json(
                reqwest::Method::POST,
                &["mlflow", "registered-models", "get-latest-versions"],
                &[],
                Some(&body),
            )
            .await
            .map_err(not_found(|m| {
                format!("model '{name}' is not in the registry at {server}{m}")
            }))?;
        // mlflow `_get_latest_model_version`: the highest version number.
        let newest = latest
            .model_versions
            .into_iter()
            .filter_map(|mv| Some((mv.version.as_deref()?.parse::<u64>().ok()?, mv)))
            .max_by_key(|(number, _)| *number)
            .map(|(_, mv)| mv);
        match newest {
            Some(mv) => self.registered(uri, name, mv).await,
            None => Err(ModelSourceError::NotFound {
                detail: match stage {
                    Some(stage) => format!(
                        "model '{name}' has no version in stage '{stage}' in the registry at {server}"
                    ),
                    None => format!("model '{name}' has no versions in the registry at {server}"),
                },
            }),
        }
    }

    /// Finishes resolving a registered version: asks where its files are.
    pub(super) async fn registered(
        &self,
        uri: &ModelUri,
        name: &str,
        mv: ModelVersion,
    ) -> Result<ResolvedModel, ModelSourceError> {
        let server = self.server();
        let version = required(mv.version, &server, "model-versions", "version")?;
        let download: DownloadUriResponse = self
            .get_json(
                &["mlflow", "model-versions", "get-download-uri"],
                &[("name", name), ("version", &version)],
            )
            .await
            .map_err(not_found(|m| {
                format!("model '{name}' has no version {version} in the registry at {server}{m}")
            }))?;
        let artifact_uri = required(
            download.artifact_uri,
            &server,
            "model-versions/get-download-uri",
            "artifact_uri",
        )?;
        let shown_version = match uri {
            ModelUri::ModelVersion { .. } => None,
            _ => Some(version.as_str()),
        };
        Ok(ResolvedModel {
            description: describe(uri, shown_version, mv.run_id.as_deref()),
            location: self.location(&artifact_uri, uri)?,
            name: Some(name.to_owned()),
            version: Some(version),
            run_id: mv.run_id.filter(|r| !r.is_empty()),
            artifact_uri,
        })
    }

    /// `runs:/<run>/<path>`: the run's artifacts under `path`, or (MLflow 3)
    /// the model that run logged under the name `path`.
    pub(super) async fn run_artifact(
        &self,
        uri: &ModelUri,
        run_id: &str,
        path: &str,
    ) -> Result<ResolvedModel, ModelSourceError> {
        let server = self.server();
        let run: RunResponse = self
            .get_json(&["mlflow", "runs", "get"], &[("run_id", run_id)])
            .await
            .map_err(not_found(|m| {
                format!(
                    "run '{run_id}' does not exist at the MLflow tracking server at {server}{m}"
                )
            }))?;
        let root = required(
            run.run.info.artifact_uri,
            &server,
            "runs/get",
            "artifact_uri",
        )?;
        let artifact_uri = if path.is_empty() {
            root
        } else {
            format!("{}/{path}", root.trim_end_matches('/'))
        };
        let run_location = self.location(&artifact_uri, uri);
        if let Ok(location) = &run_location
            && !self.list_level(location, "").await?.is_empty()
        {
            return Ok(ResolvedModel {
                description: uri.to_string(),
                name: None,
                version: None,
                run_id: Some(run_id.to_owned()),
                location: location.clone(),
                artifact_uri,
            });
        }
        if let Some(experiment_id) = run.run.info.experiment_id.filter(|_| !path.is_empty()) {
            let (model_name, rest) = path.split_once('/').unwrap_or((path, ""));
            if let Some(model_uri) = self
                .find_logged_model(&experiment_id, run_id, model_name)
                .await?
            {
                let artifact_uri = if rest.is_empty() {
                    model_uri
                } else {
                    format!("{}/{rest}", model_uri.trim_end_matches('/'))
                };
                return Ok(ResolvedModel {
                    description: uri.to_string(),
                    name: None,
                    version: None,
                    run_id: Some(run_id.to_owned()),
                    location: self.location(&artifact_uri, uri)?,
                    artifact_uri,
                });
            }
        }
        match run_location {
            Err(not_proxied) => Err(not_proxied),
            Ok(_) => Err(ModelSourceError::NotFound {
                detail: format!(
                    "run '{run_id}' has no artifacts at '{path}' and logged no model named '{path}' \
                     at the MLflow tracking server at {server}"
                ),
            }),
        }
    }

    /// The artifact URI of the model `run_id` logged as `name` (MLflow 3
    /// `RunsArtifactRepository._get_logged_model_artifact_repo`), if any.
    pub(super) async fn find_logged_model(
        &self,
        experiment_id: &str,
        run_id: &str,
        name: &str,
    ) -> Result<Option<String>, ModelSourceError> {
        if name.contains('\'') {
            return Ok(None);
        }
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_SEARCH_PAGES {
            let mut body = serde_json::json!({
                "experiment_ids": [experiment_id],
                "filter": format!("name = '{name}'"),
                "max_results": 100,
            });
            if let Some(token) = &page_token {
                body["page_token"] = serde_json::json!(token);
            }
            let page: SearchLoggedModelsResponse = match self
                .call_json(
                    reqwest::Method::POST,
                    &["mlflow", "logged-models", "search"],
                    &[],
                    Some(&body),
                )
                .await
            {
                Ok(page) => page,
                // Servers before MLflow 3 have no logged models.
                Err(ModelSourceError::NotFound { .. }) => return Ok(None),
                Err(ModelSourceError::Http { status: 404, .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            if let Some(found) = page
                .models
                .into_iter()
                .find(|m| m.info.source_run_id.as_deref() == Some(run_id))
            {
                return Ok(found.info.artifact_uri);
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Maps an artifact URI to the proxy location serving it, or explains
    /// why the artifacts cannot be reached through the tracking server.
    pub(super) fn location(
        &self,
        artifact_uri: &str,
        model: &ModelUri,
    ) -> Result<ArtifactLocation, ModelSourceError> {
        let not_proxied = || ModelSourceError::ArtifactsNotProxied {
            tracking_uri: self.server(),
            model: model.to_string(),
            artifact_uri: artifact_uri.to_owned(),
        };
        let is_proxied = artifact_uri
            .get(..17)
            .is_some_and(|s| s.eq_ignore_ascii_case("mlflow-artifacts:"));
        if !is_proxied {
            return Err(not_proxied());
        }
        let Ok(ModelUri::MlflowArtifacts { authority, path }) = ModelUri::parse(artifact_uri)
        else {
            return Err(ModelSourceError::BadResponse {
                tracking_uri: self.server(),
                request: "model resolution".to_owned(),
                detail: format!("unusable artifact URI {artifact_uri:?}"),
            });
        };
        let mut server = self.config.tracking_uri.clone();
        if let Some(authority) = authority {
            // mlflow `MlflowArtifactsRepository.resolve_uri`: the tracking
            // URI's scheme and path with the artifact URI's host and port.
            let with_host =
                Url::parse(&format!("{}://{authority}", server.scheme())).map_err(|_| {
                    ModelSourceError::BadResponse {
                        tracking_uri: self.server(),
                        request: "model resolution".to_owned(),
                        detail: format!("unusable host in artifact URI {artifact_uri:?}"),
                    }
                })?;
            let _ = server.set_host(with_host.host_str());
            let _ = server.set_port(with_host.port());
        }
        Ok(ArtifactLocation { server, path })
    }
}

/// Rewrites a `NotFound` carrying MLflow's message into one naming the
/// missing thing; `message` gets ` (MLflow: …)` or an empty string.
pub(super) fn not_found(
    message: impl FnOnce(String) -> String,
) -> impl FnOnce(ModelSourceError) -> ModelSourceError {
    move |error| match error {
        ModelSourceError::NotFound { detail } => ModelSourceError::NotFound {
            detail: message(server_says(&detail)),
        },
        other => other,
    }
}

pub(super) fn server_says(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" (MLflow: {detail})")
    }
}

pub(super) fn required(
    value: Option<String>,
    server: &str,
    call: &str,
    field: &str,
) -> Result<String, ModelSourceError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ModelSourceError::BadResponse {
            tracking_uri: server.to_owned(),
            request: call.to_owned(),
            detail: format!("no `{field}` in the answer"),
        })
}

pub(super) fn describe(uri: &ModelUri, version: Option<&str>, run_id: Option<&str>) -> String {
    let run_id = run_id.filter(|r| !r.is_empty());
    match (version, run_id) {
        (Some(v), Some(r)) => format!("{uri} (version {v}, run {r})"),
        (Some(v), None) => format!("{uri} (version {v})"),
        (None, Some(r)) => format!("{uri} (run {r})"),
        (None, None) => uri.to_string(),
    }
}
