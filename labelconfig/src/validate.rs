//! Checks a post-hook's output against the labeling config before it reaches
//! Label Studio, which stores whatever it gets (it never checks predictions
//! against the config) and then fails to display it.

use serde_json::{Map, Value};

use crate::config::LabelConfig;
use crate::error::ValidationError;
use crate::tags::{self, invalid, json_type};

/// Validates hook output: one prediction object or a list of them.
///
/// Each prediction needs a `result` list; `score`, if present, must be a
/// number and `model_version` a string. Each region needs a `from_name` that
/// names a control, a `to_name` among that control's targets, the control's
/// `type`, a `value` with the type's key, labels from the control's set and
/// coordinates in 0–100; `score` must be numeric and `original_width`/
/// `original_height` positive integers when present. Relations (`"type":
/// "relation"`) need `from_id` and `to_id`.
///
/// Returns the predictions as a list, with an `id` from `next_id` added to
/// every region that lacks one. The first problem found is reported, with
/// its location in the output.
///
/// ```
/// use labelconfig::{validate_predictions, LabelConfig};
/// use serde_json::json;
///
/// let config = LabelConfig::parse(r#"<View><Image name="image" value="$image"/>
///   <RectangleLabels name="label" toName="image">
///     <Label value="Dog"/><Label value="Person"/>
///   </RectangleLabels></View>"#)?;
/// let mut n = 0;
/// let mut next_id = || { n += 1; format!("r{n}") };
/// let region = |label: &str| json!({"from_name": "label", "to_name": "image", "type": "rectanglelabels",
///     "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": [label]}});
///
/// let ok = validate_predictions(&config, json!({"result": [region("Dog")]}), &mut next_id)?;
/// assert_eq!(ok[0]["result"][0]["id"], "r1");
///
/// let err = validate_predictions(&config, json!({"result": [region("Dog"), region("Cat")]}), &mut next_id)
///     .unwrap_err();
/// assert_eq!(err.to_string(), "result[1].value.rectanglelabels[0]: label 'Cat' is not in \
///     RectangleLabels 'label' (expected one of: Dog, Person)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate_predictions(
    config: &LabelConfig,
    output: Value,
    next_id: &mut impl FnMut() -> String,
) -> Result<Vec<Value>, ValidationError> {
    match output {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, p)| validate_prediction(config, p, &format!("[{i}]."), next_id))
            .collect(),
        prediction @ Value::Object(_) => {
            Ok(vec![validate_prediction(config, prediction, "", next_id)?])
        }
        other => Err(invalid(
            "(top level)",
            format!(
                "expected a prediction object or a list of them, got {}",
                json_type(&other)
            ),
        )),
    }
}

fn validate_prediction(
    config: &LabelConfig,
    prediction: Value,
    prefix: &str,
    next_id: &mut impl FnMut() -> String,
) -> Result<Value, ValidationError> {
    let here = if prefix.is_empty() {
        "(prediction)".to_owned()
    } else {
        prefix.trim_end_matches('.').to_owned()
    };
    let Value::Object(mut prediction) = prediction else {
        return Err(invalid(
            here,
            format!(
                "expected a prediction object, got {}",
                json_type(&prediction)
            ),
        ));
    };
    if let Some(score) = prediction.get("score")
        && !score.is_number()
        && !score.is_null()
    {
        return Err(invalid(
            format!("{prefix}score"),
            format!("expected a number, got {}", json_type(score)),
        ));
    }
    if let Some(version) = prediction.get("model_version")
        && !version.is_string()
    {
        return Err(invalid(
            format!("{prefix}model_version"),
            format!(
                "expected a string (or leave it out for the backend's version), got {}",
                json_type(version)
            ),
        ));
    }
    let Some(Value::Array(regions)) = prediction.get_mut("result") else {
        let got = prediction.get("result").map_or("nothing", json_type);
        return Err(invalid(
            format!("{prefix}result"),
            format!("expected a list of regions, got {got}"),
        ));
    };
    for (i, region) in regions.iter_mut().enumerate() {
        let location = format!("{prefix}result[{i}]");
        let Value::Object(region) = region else {
            return Err(invalid(
                location,
                format!("expected a region object, got {}", json_type(region)),
            ));
        };
        validate_region(config, region, &location)?;
        match region.get("id") {
            None | Some(Value::Null) => {
                region.insert("id".to_owned(), Value::String(next_id()));
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(invalid(
                    format!("{location}.id"),
                    format!("expected a string, got {}", json_type(other)),
                ));
            }
        }
    }
    Ok(Value::Object(prediction))
}

fn validate_region(
    config: &LabelConfig,
    region: &Map<String, Value>,
    location: &str,
) -> Result<(), ValidationError> {
    let kind = str_field(region, "type", location)?;
    if kind == "relation" {
        str_field(region, "from_id", location)?;
        str_field(region, "to_id", location)?;
        return Ok(());
    }

    let from_name = str_field(region, "from_name", location)?;
    let Some(control) = config.control(from_name) else {
        let names: Vec<&str> = config.controls().iter().map(|c| c.name.as_str()).collect();
        return Err(invalid(
            format!("{location}.from_name"),
            format!(
                "'{from_name}' is not a control in the labeling config (expected one of: {})",
                names.join(", ")
            ),
        ));
    };
    let to_name = str_field(region, "to_name", location)?;
    if !control.targets(to_name) {
        return Err(invalid(
            format!("{location}.to_name"),
            format!(
                "'{to_name}' is not a target of {} '{}' (expected one of: {})",
                control.kind,
                control.name,
                control.to_names.join(", ")
            ),
        ));
    }
    let expected_type = control.kind.result_type();
    if kind != expected_type {
        return Err(invalid(
            format!("{location}.type"),
            format!(
                "'{kind}' does not match {} '{}' (expected '{expected_type}')",
                control.kind, control.name
            ),
        ));
    }

    for key in ["score", "image_rotation"] {
        if let Some(v) = region.get(key)
            && !v.is_number()
            && !v.is_null()
        {
            return Err(invalid(
                format!("{location}.{key}"),
                format!("expected a number, got {}", json_type(v)),
            ));
        }
    }
    for key in ["original_width", "original_height"] {
        if let Some(v) = region.get(key) {
            if v.as_u64().is_none_or(|n| n == 0) {
                return Err(invalid(
                    format!("{location}.{key}"),
                    format!("expected a positive integer (pixels of the original image), got {v}"),
                ));
            }
        } else if control
            .kind
            .geometry()
            .is_some_and(|g| g.needs_original_size())
        {
            return Err(invalid(
                format!("{location}.{key}"),
                format!(
                    "missing; a {expected_type} result needs the original image size to decode its mask"
                ),
            ));
        }
    }

    let value_location = format!("{location}.value");
    let Some(Value::Object(value)) = region.get("value") else {
        let got = region.get("value").map_or("nothing", json_type);
        return Err(invalid(
            value_location,
            format!("expected an object, got {got}"),
        ));
    };
    tags::validate_value(control, value, &value_location)
}

fn str_field<'r>(
    region: &'r Map<String, Value>,
    key: &str,
    location: &str,
) -> Result<&'r str, ValidationError> {
    match region.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(invalid(
            format!("{location}.{key}"),
            format!("expected a string, got {}", json_type(other)),
        )),
        None => Err(invalid(format!("{location}.{key}"), "missing")),
    }
}
