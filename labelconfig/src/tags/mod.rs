//! One module per family of control tags with the same shape. Each knows
//! how its options are written in the config and how its part of a result
//! `value` must look:
//!
//! - [`labels`]: `<Labels>`, `<RectangleLabels>`, `<PolygonLabels>`, … (`<Label>` children)
//! - [`choices`]: `<Choices>`, `<Taxonomy>` (`<Choice>` children)
//! - [`geometry`]: coordinates of rectangles, polygons, keypoints, ellipses,
//!   brush masks and spans, for the labeled and the plain tools alike
//! - [`textarea`]: the `<TextArea>` tag
//! - [`scalar`]: `<Rating>`, `<Number>`, `<DateTime>`

pub mod choices;
pub mod geometry;
pub mod labels;
pub mod scalar;
pub mod textarea;

use serde_json::{Map, Value};

use crate::control::{Control, ControlKind, LabelDef};
use crate::error::ValidationError;

pub use geometry::Geometry;

/// The options (`<Label>`/`<Choice>`) of a control tag.
pub(crate) fn parse_options(kind: &ControlKind, node: roxmltree::Node<'_, '_>) -> Vec<LabelDef> {
    if kind.has_labels() {
        labels::parse(node)
    } else if kind == &ControlKind::Taxonomy {
        choices::parse_tree(node)
    } else if kind == &ControlKind::Choices {
        choices::parse(node)
    } else {
        Vec::new()
    }
}

/// Checks a result's `value` object against its control; `location` is the
/// JSON path of `value` for error messages.
pub(crate) fn validate_value(
    control: &Control,
    value: &Map<String, Value>,
    location: &str,
) -> Result<(), ValidationError> {
    let key = control.kind.value_key();
    if !value.contains_key(&key) {
        let mut keys: Vec<&str> = value.keys().map(String::as_str).collect();
        keys.sort_unstable();
        return Err(invalid(
            location,
            format!(
                "missing '{key}', which a {} result needs (value has: {})",
                control.kind.result_type(),
                if keys.is_empty() {
                    "nothing".to_owned()
                } else {
                    keys.join(", ")
                }
            ),
        ));
    }
    if let Some(geometry) = control.kind.geometry() {
        geometry::validate(geometry, value, location)?;
    }
    match &control.kind {
        kind if kind.has_labels() => labels::validate(control, value, location),
        ControlKind::Choices => choices::validate(control, value, location),
        ControlKind::Taxonomy => choices::validate_taxonomy(control, value, location),
        ControlKind::TextArea => textarea::validate(value, location),
        ControlKind::Rating | ControlKind::Number | ControlKind::DateTime => {
            scalar::validate(&control.kind, value, location)
        }
        _ => Ok(()),
    }
}

/// Builds a [`ValidationError`].
pub(crate) fn invalid(location: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        location: location.into(),
        message: message.into(),
    }
}

/// A short name for a JSON value's type, for messages (`a number`, `a list`).
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `value[key]` as a list of strings.
pub(crate) fn string_list<'v>(
    value: &'v Map<String, Value>,
    key: &str,
    location: &str,
) -> Result<Vec<&'v str>, ValidationError> {
    let loc = format!("{location}.{key}");
    let Some(Value::Array(items)) = value.get(key) else {
        let got = value.get(key).map_or("nothing", json_type);
        return Err(invalid(
            loc,
            format!("expected a list of strings, got {got}"),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str().ok_or_else(|| {
                invalid(
                    format!("{loc}[{i}]"),
                    format!("expected a string, got {}", json_type(item)),
                )
            })
        })
        .collect()
}
