//! Local models, used in place: a folder (with `MLmodel`, or one `.onnx`
//! file) or a bare `.onnx` file; and finding the model inside any folder,
//! cached or not.

use std::fs;
use std::path::{Path, PathBuf};

use super::{CachedModel, ModelLease, blocking};
use crate::model::mlmodel::{MLMODEL_FILE, MlModel};
use crate::model::source::{ModelSourceError, ModelUri};

/// A local folder or `.onnx` file, used in place.
pub(super) async fn local(uri: ModelUri) -> Result<CachedModel, ModelSourceError> {
    let description = uri.to_string();
    let path = match &uri {
        ModelUri::LocalDir(p) | ModelUri::OnnxFile(p) => p.clone(),
        _ => PathBuf::new(),
    };
    blocking(&path.clone(), move || {
        let missing = |what: &str| ModelSourceError::NoModel {
            model: path.display().to_string(),
            detail: format!("no such {what}"),
        };
        match uri {
            ModelUri::OnnxFile(_) => {
                if !path.is_file() {
                    return Err(missing("file"));
                }
                let file = fs::canonicalize(&path)
                    .map_err(|e| ModelSourceError::io("resolve", &path, e))?;
                let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
                Ok(CachedModel {
                    dir,
                    onnx_path: file,
                    mlmodel: None,
                    description,
                    pinned: None,
                    lease: ModelLease::none(),
                })
            }
            _ => {
                if !path.is_dir() {
                    return Err(missing("folder"));
                }
                let dir = fs::canonicalize(&path)
                    .map_err(|e| ModelSourceError::io("resolve", &path, e))?;
                let (mlmodel, onnx) = locate_model(&dir, &description)?;
                Ok(CachedModel {
                    onnx_path: dir.join(onnx),
                    dir,
                    mlmodel,
                    description,
                    pinned: None,
                    lease: ModelLease::none(),
                })
            }
        }
    })
    .await
}

/// Parses `dir/MLmodel` when there is one; errors name the model `label`.
pub(super) fn parse_mlmodel(dir: &Path, label: &str) -> Result<Option<MlModel>, ModelSourceError> {
    let path = dir.join(MLMODEL_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).map_err(|e| ModelSourceError::io("read", &path, e))?;
    MlModel::parse(&text)
        .map(Some)
        .map_err(|source| ModelSourceError::MlModel {
            model: label.to_owned(),
            source,
        })
}

/// Finds the model in a folder: the `MLmodel` file and the ONNX file it
/// names, or else the folder's only `.onnx` file. Returns the parsed
/// `MLmodel` and the ONNX file's path relative to `dir`.
pub(super) fn locate_model(
    dir: &Path,
    label: &str,
) -> Result<(Option<MlModel>, String), ModelSourceError> {
    let mlmodel = parse_mlmodel(dir, label)?;
    if let Some(mlmodel) = mlmodel {
        let data = mlmodel.onnx.data.clone();
        if !dir.join(&data).is_file() {
            return Err(ModelSourceError::NoModel {
                model: label.to_owned(),
                detail: format!("MLmodel names {data} (flavors.onnx.data), which is missing"),
            });
        }
        return Ok((Some(mlmodel), data));
    }
    let mut onnx: Vec<String> = fs::read_dir(dir)
        .map_err(|e| ModelSourceError::io("read", dir, e))?
        .filter_map(Result::ok)
        .filter(|item| item.file_type().is_ok_and(|t| t.is_file()))
        .map(|item| item.file_name().to_string_lossy().into_owned())
        .filter(|name| name.to_ascii_lowercase().ends_with(".onnx"))
        .collect();
    onnx.sort();
    match onnx.as_slice() {
        [only] => Ok((None, only.clone())),
        [] => Err(ModelSourceError::NoModel {
            model: label.to_owned(),
            detail: "no MLmodel file and no .onnx file".to_owned(),
        }),
        several => Err(ModelSourceError::NoModel {
            model: label.to_owned(),
            detail: format!(
                "no MLmodel file and several .onnx files ({}): add an MLmodel or name one .onnx file",
                several.join(", ")
            ),
        }),
    }
}
