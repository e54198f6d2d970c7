//! The `MLmodel` file of an MLflow model folder: the ONNX flavor (which file
//! to load, execution providers, session options) and the signature.
//!
//! Owns parsing only: it reads YAML text and returns typed values. It does
//! not read files (see [`crate::model::ModelCache`]), check the signature
//! against the ONNX graph, or build ONNX Runtime sessions (both belong to the
//! session pool).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path};

use serde::Deserialize;
use serde_yaml::Value;

/// The file name MLflow gives the model description in every model folder.
pub const MLMODEL_FILE: &str = "MLmodel";

/// The execution providers MLflow uses when `flavors.onnx.providers` is
/// absent (`mlflow/onnx/__init__.py`).
pub const DEFAULT_PROVIDERS: [&str; 2] = ["CUDAExecutionProvider", "CPUExecutionProvider"];

/// A parsed `MLmodel` file that has an ONNX flavor.
#[derive(Debug, Clone, PartialEq)]
pub struct MlModel {
    /// The names of all flavors in the file (`onnx`, `python_function`, …).
    pub flavors: Vec<String>,
    /// The ONNX flavor.
    pub onnx: OnnxFlavor,
    /// The model signature, when one was logged.
    pub signature: Option<ModelSignature>,
    /// `model_id` (MLflow 3 logged models, `m-…`).
    pub model_id: Option<String>,
    /// `run_id` of the run that logged the model.
    pub run_id: Option<String>,
    /// `mlflow_version` that wrote the file.
    pub mlflow_version: Option<String>,
}

/// `flavors.onnx` of an `MLmodel` file.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxFlavor {
    /// The ONNX file, relative to the model folder (`flavors.onnx.data`).
    /// Validated to stay inside the folder.
    pub data: String,
    /// `onnx_version` the model was saved with.
    pub onnx_version: Option<String>,
    /// Execution providers in preference order; `DEFAULT_PROVIDERS` when
    /// the file names none.
    pub providers: Vec<ExecutionProvider>,
    /// `onnx_session_options`; every field `None` when absent.
    pub session_options: OnnxSessionOptions,
}

/// One execution provider entry: a name, or `[name, {options}]` in YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionProvider {
    /// The ONNX Runtime provider name, e.g. `CPUExecutionProvider`.
    pub name: String,
    /// Provider options, values rendered as strings (ONNX Runtime takes
    /// provider options as string pairs).
    pub options: BTreeMap<String, String>,
}

/// `flavors.onnx.onnx_session_options`, the keys MLflow applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnnxSessionOptions {
    /// `execution_mode`.
    pub execution_mode: Option<ExecutionMode>,
    /// `intra_op_num_threads` (0 = ONNX Runtime's default).
    pub intra_op_num_threads: Option<usize>,
    /// `inter_op_num_threads` (0 = ONNX Runtime's default).
    pub inter_op_num_threads: Option<usize>,
    /// `graph_optimization_level`.
    pub graph_optimization_level: Option<GraphOptimizationLevel>,
}

/// ONNX Runtime execution mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionMode {
    /// `sequential` (ORT_SEQUENTIAL).
    Sequential,
    /// `parallel` (ORT_PARALLEL).
    Parallel,
}

/// ONNX Runtime graph optimisation level, by its numeric value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphOptimizationLevel {
    /// 0: ORT_DISABLE_ALL.
    Disabled,
    /// 1: ORT_ENABLE_BASIC.
    Basic,
    /// 2: ORT_ENABLE_EXTENDED.
    Extended,
    /// 3: ORT_ENABLE_LAYOUT (newer ONNX Runtime releases).
    Layout,
    /// 99: ORT_ENABLE_ALL.
    All,
}

/// The signature of an MLflow model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelSignature {
    /// Input specs, in order.
    pub inputs: Vec<SignatureSpec>,
    /// Output specs, in order (empty when no output schema was logged).
    pub outputs: Vec<SignatureSpec>,
}

/// One input or output of a signature.
///
/// Tensor specs keep their numpy dtype name (`float32`, `int64`, `str`, …)
/// and shape (`-1` = dynamic). Column specs (models logged with a DataFrame
/// example) are mapped to the numpy name of their column type (`double` →
/// `float64`, `long` → `int64`, `string` → `str`, …) with shape `[-1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSpec {
    /// The input name; `None` when logged from a bare array (MLflow then
    /// feeds the first ONNX input).
    pub name: Option<String>,
    /// The numpy dtype name.
    pub dtype: String,
    /// The shape; `-1` marks a dynamic dimension.
    pub shape: Vec<i64>,
}

/// Why an `MLmodel` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MlModelError {
    /// The text is not YAML, or not shaped like an `MLmodel` file.
    #[error("not a valid MLmodel file: {0}")]
    Yaml(String),
    /// The model has flavors, but no `onnx` one.
    #[error(
        "the MLflow model has no ONNX flavor (it has: {}); this server runs ONNX models only: \
         convert the model to ONNX (skl2onnx, torch.onnx.export, tf2onnx, …) and log it with \
         mlflow.onnx.log_model(onnx_model, name=\"model\")",
        display_list(.flavors)
    )]
    NoOnnxFlavor {
        /// The flavors the file has.
        flavors: Vec<String>,
    },
    /// A field has a value MLflow would not write.
    #[error("invalid `{field}` in MLmodel: {reason}")]
    InvalidField {
        /// The YAML path of the field, e.g. `flavors.onnx.data`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn display_list(items: &[String]) -> String {
    if items.is_empty() {
        "no flavors".to_owned()
    } else {
        items.join(", ")
    }
}

impl MlModel {
    /// Parses the text of an `MLmodel` file.
    pub fn parse(yaml: &str) -> Result<Self, MlModelError> {
        let raw: RawMlModel =
            serde_yaml::from_str(yaml).map_err(|e| MlModelError::Yaml(e.to_string()))?;
        let flavors: Vec<String> = raw.flavors.keys().cloned().collect();
        let onnx = match raw.flavors.get("onnx") {
            Some(value) => parse_onnx_flavor(value)?,
            None => return Err(MlModelError::NoOnnxFlavor { flavors }),
        };
        let signature = raw.signature.map(parse_signature).transpose()?;
        Ok(Self {
            flavors,
            onnx,
            signature,
            model_id: raw.model_id,
            run_id: raw.run_id,
            mlflow_version: raw.mlflow_version,
        })
    }
}

#[derive(Deserialize)]
struct RawMlModel {
    #[serde(default)]
    flavors: BTreeMap<String, Value>,
    #[serde(default)]
    signature: Option<RawSignature>,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    mlflow_version: Option<String>,
}

#[derive(Deserialize)]
struct RawSignature {
    #[serde(default)]
    inputs: Option<String>,
    #[serde(default)]
    outputs: Option<String>,
}

#[derive(Deserialize)]
struct RawOnnxFlavor {
    data: Option<String>,
    #[serde(default)]
    onnx_version: Option<Value>,
    #[serde(default)]
    providers: Option<Vec<Value>>,
    #[serde(default)]
    onnx_session_options: Option<BTreeMap<String, Value>>,
}

fn parse_onnx_flavor(value: &Value) -> Result<OnnxFlavor, MlModelError> {
    let raw: RawOnnxFlavor =
        serde_yaml::from_value(value.clone()).map_err(|e| MlModelError::InvalidField {
            field: "flavors.onnx",
            reason: e.to_string(),
        })?;
    let data = raw.data.ok_or(MlModelError::InvalidField {
        field: "flavors.onnx.data",
        reason: "missing (it names the ONNX file)".to_owned(),
    })?;
    if !is_safe_relative(&data) {
        return Err(MlModelError::InvalidField {
            field: "flavors.onnx.data",
            reason: format!("{data:?} is not a relative path inside the model folder"),
        });
    }
    let providers = match raw.providers {
        None => DEFAULT_PROVIDERS
            .iter()
            .map(|name| ExecutionProvider {
                name: (*name).to_owned(),
                options: BTreeMap::new(),
            })
            .collect(),
        Some(list) => list.iter().map(parse_provider).collect::<Result<_, _>>()?,
    };
    let session_options = match raw.onnx_session_options {
        None => OnnxSessionOptions::default(),
        Some(map) => parse_session_options(&map)?,
    };
    Ok(OnnxFlavor {
        data,
        onnx_version: raw.onnx_version.as_ref().and_then(scalar_to_string),
        providers,
        session_options,
    })
}

/// `true` for a non-empty relative path whose components are all plain names.
pub(crate) fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn parse_provider(value: &Value) -> Result<ExecutionProvider, MlModelError> {
    let invalid = || MlModelError::InvalidField {
        field: "flavors.onnx.providers",
        reason: format!(
            "expected a provider name or [name, {{options}}], found {}",
            short_yaml(value)
        ),
    };
    match value {
        Value::String(name) => Ok(ExecutionProvider {
            name: name.clone(),
            options: BTreeMap::new(),
        }),
        Value::Sequence(items) => {
            let (name, options) = match items.as_slice() {
                [Value::String(name)] => (name, None),
                [Value::String(name), options] => (name, Some(options)),
                _ => return Err(invalid()),
            };
            let options = match options {
                None | Some(Value::Null) => BTreeMap::new(),
                Some(Value::Mapping(map)) => map
                    .iter()
                    .map(|(k, v)| match (scalar_to_string(k), scalar_to_string(v)) {
                        (Some(k), Some(v)) => Ok((k, v)),
                        _ => Err(invalid()),
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(invalid()),
            };
            Ok(ExecutionProvider {
                name: name.clone(),
                options,
            })
        }
        _ => Err(invalid()),
    }
}

fn parse_session_options(
    map: &BTreeMap<String, Value>,
) -> Result<OnnxSessionOptions, MlModelError> {
    let mut options = OnnxSessionOptions::default();
    if let Some(value) = map.get("execution_mode").filter(|v| !v.is_null()) {
        let mode = value.as_str().map(str::to_ascii_lowercase);
        options.execution_mode = Some(match mode.as_deref() {
            Some("sequential") => ExecutionMode::Sequential,
            Some("parallel") => ExecutionMode::Parallel,
            _ => {
                return Err(MlModelError::InvalidField {
                    field: "flavors.onnx.onnx_session_options.execution_mode",
                    reason: format!(
                        "expected `sequential` or `parallel`, found {}",
                        short_yaml(value)
                    ),
                });
            }
        });
    }
    options.intra_op_num_threads = thread_count(
        map,
        "intra_op_num_threads",
        "flavors.onnx.onnx_session_options.intra_op_num_threads",
    )?;
    options.inter_op_num_threads = thread_count(
        map,
        "inter_op_num_threads",
        "flavors.onnx.onnx_session_options.inter_op_num_threads",
    )?;
    if let Some(value) = map.get("graph_optimization_level").filter(|v| !v.is_null()) {
        options.graph_optimization_level = Some(match value.as_i64() {
            Some(0) => GraphOptimizationLevel::Disabled,
            Some(1) => GraphOptimizationLevel::Basic,
            Some(2) => GraphOptimizationLevel::Extended,
            Some(3) => GraphOptimizationLevel::Layout,
            Some(99) => GraphOptimizationLevel::All,
            _ => {
                return Err(MlModelError::InvalidField {
                    field: "flavors.onnx.onnx_session_options.graph_optimization_level",
                    reason: format!("expected 0, 1, 2, 3 or 99, found {}", short_yaml(value)),
                });
            }
        });
    }
    Ok(options)
}

fn thread_count(
    map: &BTreeMap<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<usize>, MlModelError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| MlModelError::InvalidField {
                field,
                reason: format!(
                    "expected a non-negative integer, found {}",
                    short_yaml(value)
                ),
            }),
    }
}

fn scalar_to_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn short_yaml(value: &Value) -> String {
    let text = serde_yaml::to_string(value).unwrap_or_default();
    let text = text.trim();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text.to_owned()
    }
}

fn parse_signature(raw: RawSignature) -> Result<ModelSignature, MlModelError> {
    Ok(ModelSignature {
        inputs: parse_schema(raw.inputs.as_deref(), "signature.inputs")?,
        outputs: parse_schema(raw.outputs.as_deref(), "signature.outputs")?,
    })
}

/// One entry of a signature schema, the JSON inside the YAML string.
#[derive(Deserialize)]
struct RawSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "tensor-spec", default)]
    tensor_spec: Option<RawTensorSpec>,
}

#[derive(Deserialize)]
struct RawTensorSpec {
    dtype: String,
    #[serde(default)]
    shape: Vec<i64>,
}

fn parse_schema(
    json: Option<&str>,
    field: &'static str,
) -> Result<Vec<SignatureSpec>, MlModelError> {
    let Some(json) = json.filter(|s| !s.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let specs: Vec<RawSpec> =
        serde_json::from_str(json).map_err(|e| MlModelError::InvalidField {
            field,
            reason: format!("not a JSON list of column or tensor specs: {e}"),
        })?;
    specs
        .into_iter()
        .map(|spec| match (spec.kind.as_str(), spec.tensor_spec) {
            ("tensor", Some(tensor)) => Ok(SignatureSpec {
                name: spec.name,
                dtype: tensor.dtype,
                shape: tensor.shape,
            }),
            ("tensor", None) => Err(MlModelError::InvalidField {
                field,
                reason: "a tensor spec has no `tensor-spec`".to_owned(),
            }),
            (column, _) => Ok(SignatureSpec {
                name: spec.name,
                dtype: column_dtype(column).to_owned(),
                shape: vec![-1],
            }),
        })
        .collect()
}

/// The numpy dtype name of an MLflow column type (`mlflow/types/schema.py`
/// `DataType.to_numpy`); other types (`object`, `array`, …) keep their name.
fn column_dtype(column: &str) -> &str {
    match column {
        "boolean" => "bool",
        "integer" => "int32",
        "long" => "int64",
        "float" => "float32",
        "double" => "float64",
        "string" => "str",
        "binary" => "bytes",
        "datetime" => "datetime64[ns]",
        other => other,
    }
}

impl fmt::Display for SignatureSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| {
                if *d < 0 {
                    "?".to_owned()
                } else {
                    d.to_string()
                }
            })
            .collect();
        match &self.name {
            Some(name) => write!(f, "{name}: {}[{}]", self.dtype, dims.join(", ")),
            None => write!(f, "(unnamed): {}[{}]", self.dtype, dims.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The `MLmodel` MLflow 3.17.2 writes for an skl2onnx iris classifier.
    const IRIS: &str = r#"artifact_path: mlflow-artifacts:/1/models/m-3aa6f0/artifacts
flavors:
  onnx:
    code: null
    data: model.onnx
    onnx_session_options:
      execution_mode: sequential
      graph_optimization_level: 99
      inter_op_num_threads: 1
      intra_op_num_threads: 1
    onnx_version: 1.23.2
    providers:
    - CPUExecutionProvider
  python_function:
    data: model.onnx
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.onnx
    python_version: 3.11.9
is_signature_from_type_hint: false
mlflow_version: 3.17.2
model_id: m-3aa6f0
model_size_bytes: 1043
model_uuid: m-3aa6f0
prompts: null
run_id: 4b1c0f
signature:
  inputs: '[{"name": "input", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]'
  outputs: '[{"name": "label", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}, {"name": "probabilities", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]'
  params: null
utc_time_created: '2025-11-27 10:00:00.000000'
"#;

    #[test]
    fn parses_the_onnx_flavor_mlflow_writes() {
        let m = MlModel::parse(IRIS).unwrap();
        assert_eq!(m.flavors, ["onnx", "python_function"]);
        assert_eq!(m.onnx.data, "model.onnx");
        assert_eq!(m.onnx.onnx_version.as_deref(), Some("1.23.2"));
        assert_eq!(m.onnx.providers.len(), 1);
        assert_eq!(m.onnx.providers[0].name, "CPUExecutionProvider");
        assert_eq!(
            m.onnx.session_options,
            OnnxSessionOptions {
                execution_mode: Some(ExecutionMode::Sequential),
                intra_op_num_threads: Some(1),
                inter_op_num_threads: Some(1),
                graph_optimization_level: Some(GraphOptimizationLevel::All),
            }
        );
        assert_eq!(m.model_id.as_deref(), Some("m-3aa6f0"));
        assert_eq!(m.run_id.as_deref(), Some("4b1c0f"));
        assert_eq!(m.mlflow_version.as_deref(), Some("3.17.2"));
    }

    #[test]
    fn parses_the_signature_json_inside_the_yaml() {
        let sig = MlModel::parse(IRIS).unwrap().signature.unwrap();
        assert_eq!(
            sig.inputs,
            [SignatureSpec {
                name: Some("input".into()),
                dtype: "float32".into(),
                shape: vec![-1, 4]
            }]
        );
        assert_eq!(sig.outputs.len(), 2);
        assert_eq!(sig.outputs[0].name.as_deref(), Some("label"));
        assert_eq!(sig.outputs[0].dtype, "int64");
        assert_eq!(sig.outputs[1].shape, [-1, 3]);
        assert_eq!(sig.outputs[1].to_string(), "probabilities: float32[?, 3]");
    }

    #[test]
    fn unnamed_inputs_and_column_specs_are_kept() {
        let yaml = r#"
flavors:
  onnx: {data: m.onnx}
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "str", "shape": [-1, 1]}}, {"type": "double", "name": "x", "required": true}]'
"#;
        let sig = MlModel::parse(yaml).unwrap().signature.unwrap();
        assert_eq!(sig.inputs[0].name, None);
        assert_eq!(sig.inputs[0].dtype, "str");
        assert_eq!(
            sig.inputs[1],
            SignatureSpec {
                name: Some("x".into()),
                dtype: "float64".into(),
                shape: vec![-1]
            }
        );
        assert!(sig.outputs.is_empty());
    }

    #[test]
    fn absent_providers_and_options_get_mlflow_defaults() {
        let m = MlModel::parse("flavors:\n  onnx:\n    data: model.onnx\n").unwrap();
        let names: Vec<_> = m.onnx.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, DEFAULT_PROVIDERS);
        assert_eq!(m.onnx.session_options, OnnxSessionOptions::default());
        assert!(m.signature.is_none());
    }

    #[test]
    fn providers_may_carry_options() {
        let yaml = r#"
flavors:
  onnx:
    data: model.onnx
    providers:
    - [CUDAExecutionProvider, {device_id: 0, cudnn_conv_algo_search: DEFAULT}]
    - CPUExecutionProvider
    onnx_session_options: {execution_mode: PARALLEL, graph_optimization_level: 1}
"#;
        let m = MlModel::parse(yaml).unwrap();
        assert_eq!(m.onnx.providers[0].name, "CUDAExecutionProvider");
        assert_eq!(m.onnx.providers[0].options["device_id"], "0");
        assert_eq!(
            m.onnx.providers[0].options["cudnn_conv_algo_search"],
            "DEFAULT"
        );
        assert!(m.onnx.providers[1].options.is_empty());
        assert_eq!(
            m.onnx.session_options.execution_mode,
            Some(ExecutionMode::Parallel)
        );
        assert_eq!(
            m.onnx.session_options.graph_optimization_level,
            Some(GraphOptimizationLevel::Basic)
        );
    }

    #[test]
    fn a_model_without_onnx_flavor_says_which_flavors_it_has_and_how_to_export() {
        let yaml = "flavors:\n  python_function: {loader_module: mlflow.sklearn}\n  sklearn: {pickled_model: model.pkl}\n";
        let err = MlModel::parse(yaml).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, MlModelError::NoOnnxFlavor { .. }));
        assert!(msg.contains("it has: python_function, sklearn"), "{msg}");
        assert!(
            msg.contains("mlflow.onnx.log_model(onnx_model, name="),
            "{msg}"
        );
    }

    #[test]
    fn rejects_values_mlflow_would_not_write() {
        for (yaml, field) in [
            ("flavors: {onnx: {data: ../x.onnx}}", "flavors.onnx.data"),
            ("flavors: {onnx: {data: /etc/x.onnx}}", "flavors.onnx.data"),
            ("flavors: {onnx: {}}", "flavors.onnx.data"),
            (
                "flavors: {onnx: {data: m.onnx, onnx_session_options: {graph_optimization_level: 7}}}",
                "flavors.onnx.onnx_session_options.graph_optimization_level",
            ),
            (
                "flavors: {onnx: {data: m.onnx, onnx_session_options: {intra_op_num_threads: -2}}}",
                "flavors.onnx.onnx_session_options.intra_op_num_threads",
            ),
            (
                "flavors: {onnx: {data: m.onnx, onnx_session_options: {execution_mode: fast}}}",
                "flavors.onnx.onnx_session_options.execution_mode",
            ),
            (
                "flavors: {onnx: {data: m.onnx, providers: [[1, 2, 3]]}}",
                "flavors.onnx.providers",
            ),
            (
                "flavors: {onnx: {data: m.onnx}}\nsignature: {inputs: 'not json'}",
                "signature.inputs",
            ),
        ] {
            match MlModel::parse(yaml) {
                Err(MlModelError::InvalidField { field: f, .. }) => assert_eq!(f, field, "{yaml}"),
                other => panic!("{yaml}: expected InvalidField({field}), got {other:?}"),
            }
        }
        assert!(matches!(
            MlModel::parse(": : :"),
            Err(MlModelError::Yaml(_))
        ));
    }
}
