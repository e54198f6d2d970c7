//! Region shapes shared by a labeled tool and its plain twin
//! (`<RectangleLabels>`/`<Rectangle>`, …): coordinates are percentages of the
//! object's size, 0–100, as Label Studio expects (never pixels).

use serde_json::{Map, Value};

use super::{invalid, json_type};
use crate::error::ValidationError;

/// Rounding slack for coordinates computed in floating point.
const SLACK: f64 = 1e-6;
/// Slack for sums such as `x + width`, which accumulate two roundings.
const SUM_SLACK: f64 = 1e-3;

/// The shape of a result's region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geometry {
    /// `x`, `y`, `width`, `height` (top-left corner), optional `rotation`.
    Rectangle,
    /// `points`: `[[x, y], …]`, at least three.
    Polygon,
    /// `x`, `y`, optional `width` (the point's size).
    KeyPoint,
    /// `x`, `y` (centre), `radiusX`, `radiusY`, optional `rotation`.
    Ellipse,
    /// `format: "rle"`, `rle`: Label Studio's bit-packed RLE of RGBA bytes.
    Brush,
    /// `start`, `end`: offsets in text, seconds in audio, or XPaths in HTML.
    Span,
    /// `sequence`: keyframes of a video track.
    VideoSequence,
}

impl Geometry {
    /// Whether the region is only meaningful with `original_width` and
    /// `original_height` (Label Studio decodes brush masks with them).
    pub fn needs_original_size(self) -> bool {
        self == Self::Brush
    }
}

pub(crate) fn validate(
    geometry: Geometry,
    value: &Map<String, Value>,
    location: &str,
) -> Result<(), ValidationError> {
    match geometry {
        Geometry::Rectangle => {
            let x = percent(value, "x", location)?;
            let y = percent(value, "y", location)?;
            let width = percent(value, "width", location)?;
            let height = percent(value, "height", location)?;
            let rotation = optional_number(value, "rotation", location)?.unwrap_or(0.0);
            // A rotated box may extend past the right/bottom edge of its
            // unrotated frame, so the sums only bind without rotation.
            if rotation == 0.0 {
                if x + width > 100.0 + SUM_SLACK {
                    return Err(invalid(
                        format!("{location}.width"),
                        format!(
                            "x + width = {} exceeds 100 (coordinates are percent of the image width)",
                            x + width
                        ),
                    ));
                }
                if y + height > 100.0 + SUM_SLACK {
                    return Err(invalid(
                        format!("{location}.height"),
                        format!(
                            "y + height = {} exceeds 100 (coordinates are percent of the image height)",
                            y + height
                        ),
                    ));
                }
            }
            Ok(())
        }
        Geometry::Polygon => {
            let loc = format!("{location}.points");
            let Some(Value::Array(points)) = value.get("points") else {
                let got = value.get("points").map_or("nothing", json_type);
                return Err(invalid(
                    loc,
                    format!("expected a list of [x, y] points, got {got}"),
                ));
            };
            if points.len() < 3 {
                return Err(invalid(
                    loc,
                    format!("a polygon needs at least 3 points, got {}", points.len()),
                ));
            }
            for (i, point) in points.iter().enumerate() {
                let pair = point.as_array().filter(|p| p.len() == 2);
                let Some(pair) = pair else {
                    return Err(invalid(
                        format!("{loc}[{i}]"),
                        format!("expected [x, y], got {point}"),
                    ));
                };
                for (j, axis) in ["x", "y"].iter().enumerate() {
                    check_percent(&pair[j], &format!("{loc}[{i}][{j}]"), axis)?;
                }
            }
            Ok(())
        }
        Geometry::KeyPoint => {
            percent(value, "x", location)?;
            percent(value, "y", location)?;
            non_negative(value, "width", location, false)?;
            Ok(())
        }
        Geometry::Ellipse => {
            percent(value, "x", location)?;
            percent(value, "y", location)?;
            non_negative(value, "radiusX", location, true)?;
            non_negative(value, "radiusY", location, true)?;
            optional_number(value, "rotation", location)?;
            Ok(())
        }
        Geometry::Brush => {
            if let Some(format) = value.get("format")
                && format.as_str() != Some("rle")
            {
                return Err(invalid(
                    format!("{location}.format"),
                    format!("expected \"rle\", got {format}"),
                ));
            }
            let loc = format!("{location}.rle");
            let Some(Value::Array(bytes)) = value.get("rle") else {
                let got = value.get("rle").map_or("nothing", json_type);
                return Err(invalid(
                    loc,
                    format!("expected a list of bytes (0–255), got {got}"),
                ));
            };
            if let Some(i) = bytes
                .iter()
                .position(|b| b.as_u64().is_none_or(|b| b > 255))
            {
                return Err(invalid(
                    format!("{loc}[{i}]"),
                    format!("expected a byte (0–255), got {}", bytes[i]),
                ));
            }
            Ok(())
        }
        Geometry::Span => {
            for key in ["start", "end"] {
                if !value.contains_key(key) {
                    return Err(invalid(
                        location,
                        format!("missing '{key}', which a span needs"),
                    ));
                }
            }
            if let (Some(start), Some(end)) = (
                value.get("start").and_then(Value::as_f64),
                value.get("end").and_then(Value::as_f64),
            ) && (start < 0.0 || end < start)
            {
                return Err(invalid(
                    format!("{location}.end"),
                    format!("expected 0 ≤ start ≤ end, got start {start}, end {end}"),
                ));
            }
            Ok(())
        }
        Geometry::VideoSequence => match value.get("sequence") {
            Some(Value::Array(_)) => Ok(()),
            other => Err(invalid(
                format!("{location}.sequence"),
                format!(
                    "expected a list of keyframes, got {}",
                    other.map_or("nothing", json_type)
                ),
            )),
        },
    }
}

/// A required coordinate in 0–100.
fn percent(value: &Map<String, Value>, key: &str, location: &str) -> Result<f64, ValidationError> {
    let loc = format!("{location}.{key}");
    match value.get(key) {
        Some(v) => check_percent(v, &loc, key),
        None => Err(invalid(
            loc,
            "missing; expected a number in 0–100 (percent of the image size)",
        )),
    }
}

fn check_percent(v: &Value, location: &str, what: &str) -> Result<f64, ValidationError> {
    let Some(n) = v.as_f64() else {
        return Err(invalid(
            location,
            format!("expected a number in 0–100, got {}", json_type(v)),
        ));
    };
    if !(-SLACK..=100.0 + SLACK).contains(&n) {
        return Err(invalid(
            location,
            format!(
                "{what} = {n} is outside 0–100 (Label Studio coordinates are percent of the image size, not pixels)"
            ),
        ));
    }
    Ok(n)
}

fn optional_number(
    value: &Map<String, Value>,
    key: &str,
    location: &str,
) -> Result<Option<f64>, ValidationError> {
    match value.get(key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            invalid(
                format!("{location}.{key}"),
                format!("expected a number, got {}", json_type(v)),
            )
        }),
    }
}

fn non_negative(
    value: &Map<String, Value>,
    key: &str,
    location: &str,
    required: bool,
) -> Result<(), ValidationError> {
    match optional_number(value, key, location)? {
        None if required => Err(invalid(
            format!("{location}.{key}"),
            "missing; expected a number ≥ 0",
        )),
        Some(n) if n < 0.0 => Err(invalid(
            format!("{location}.{key}"),
            format!("expected a number ≥ 0, got {n}"),
        )),
        _ => Ok(()),
    }
}
