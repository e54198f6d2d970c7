//! `<Rating>`, `<Number>`, `<DateTime>`: one value under the result type
//! (`"rating": 4`, `"number": 3.5`, `"datetime": "2024-01-31"`).

use serde_json::{Map, Value};

use super::{invalid, json_type};
use crate::control::ControlKind;
use crate::error::ValidationError;

pub(crate) fn validate(
    kind: &ControlKind,
    value: &Map<String, Value>,
    location: &str,
) -> Result<(), ValidationError> {
    let key = kind.result_type();
    let loc = format!("{location}.{key}");
    let v = value.get(&key).unwrap_or(&Value::Null);
    match kind {
        ControlKind::Rating => match v.as_f64() {
            Some(n) if n >= 0.0 => Ok(()),
            _ => Err(invalid(loc, format!("expected a number ≥ 0, got {v}"))),
        },
        ControlKind::Number if !v.is_number() => Err(invalid(
            loc,
            format!("expected a number, got {}", json_type(v)),
        )),
        ControlKind::DateTime if !v.is_string() => Err(invalid(
            loc,
            format!("expected a date/time string, got {}", json_type(v)),
        )),
        _ => Ok(()),
    }
}
