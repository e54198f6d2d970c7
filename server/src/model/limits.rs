//! Bounds on what a model may make this process allocate: the size of the
//! inputs a model declares (checked when it loads, before any inference),
//! and the cap on ONNX Runtime's CPU memory (enforced by its arena while a
//! model runs).
//!
//! A graph is small and its tensors need not be: a 128-byte file can
//! declare a `[1,3,16384,16384]` input (3 GiB per task once a pre-hook
//! fills it) or `Expand` a scalar to `65536×65536` floats (16 GiB). The
//! first is refused here from the declared shapes; the second depends on
//! values known only at run time, so ONNX Runtime's allocator refuses it
//! (see [`crate::model::OrtRuntime::init_with`]).

use crate::size::human;
use crate::tensor::TensorSpec;

/// Default for [`ModelLimits::max_input_bytes`]: 256 MiB per task.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 256 << 20;

/// The environment variable that sets [`ModelLimits::max_input_bytes`] in
/// MiB; named in error messages so operators know what to change.
pub const MAX_INPUT_MB_ENV: &str = "CLS_MAX_INPUT_MB";

/// What a model may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimits {
    /// Most bytes one task's input tensors may declare, all inputs together
    /// (dynamic dimensions counted as 1; the pipeline bounds those at run
    /// time by the data it actually has). 0 turns the check off.
    pub max_input_bytes: u64,
}

impl Default for ModelLimits {
    fn default() -> Self {
        Self {
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// Why a model's declared inputs were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model input '{name}' declares {shape} = {size} per task; the limit is {limit} \
     ({MAX_INPUT_MB_ENV}){hint}"
)]
pub struct InputTooLarge {
    /// The input, or `inputs` when only their sum is over the limit.
    pub name: String,
    /// The declared shape as written in the graph, e.g. `[1,3,16384,16384]`.
    pub shape: String,
    /// The size, e.g. `3 GiB of f32`, or why it cannot be computed.
    pub size: String,
    /// The limit, e.g. `256 MiB`.
    pub limit: String,
    hint: String,
}

impl ModelLimits {
    /// Checks the declared shapes of a model's inputs, each and together,
    /// against [`ModelLimits::max_input_bytes`].
    pub fn check_inputs(&self, inputs: &[TensorSpec]) -> Result<(), InputTooLarge> {
        if self.max_input_bytes == 0 {
            return Ok(());
        }
        let limit = human(self.max_input_bytes);
        let mut total: u64 = 0;
        for input in inputs {
            let bytes = declared_bytes(input).map_err(|size| InputTooLarge {
                name: input.name.clone(),
                shape: shape_text(&input.shape),
                size,
                limit: limit.clone(),
                hint: String::new(),
            })?;
            if bytes > self.max_input_bytes {
                return Err(InputTooLarge {
                    name: input.name.clone(),
                    shape: shape_text(&input.shape),
                    size: format!("{} of {}", human(bytes), type_name(input)),
                    limit,
                    hint: dynamic_hint(input),
                });
            }
            total = total.saturating_add(bytes);
        }
        if total > self.max_input_bytes {
            let shapes: Vec<String> = inputs
                .iter()
                .map(|i| format!("{} {}", i.name, shape_text(&i.shape)))
                .collect();
            return Err(InputTooLarge {
                name: inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join("', '"),
                shape: shapes.join(" + "),
                size: human(total),
                limit,
                hint: " (all inputs together)".to_owned(),
            });
        }
        Ok(())
    }
}

/// Bytes one task's `input` holds at the declared shape, dynamic dimensions
/// counted as 1; `Err` says why it cannot be represented.
fn declared_bytes(input: &TensorSpec) -> Result<u64, String> {
    // Strings have no fixed width; each element is at least a pointer.
    let width = input.element_type.and_then(|t| t.byte_width()).unwrap_or(8) as u64;
    let mut elements: u64 = 1;
    for &dim in &input.shape {
        let dim = u64::try_from(dim).unwrap_or(1).max(1);
        elements = elements.checked_mul(dim).ok_or_else(|| {
            format!(
                "more than 2^64 elements ({} multiplied out)",
                shape_product_text(&input.shape)
            )
        })?;
    }
    elements
        .checked_mul(width)
        .ok_or_else(|| format!("{elements} elements of {width} bytes each, more than 2^64 bytes"))
}

fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|&d| if d < 0 { "?".to_owned() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(","))
}

/// `a × b × …` of the positive dimensions, for messages about overflow.
fn shape_product_text(shape: &[i64]) -> String {
    shape
        .iter()
        .filter(|&&d| d > 1)
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(" × ")
}

fn type_name(input: &TensorSpec) -> String {
    match input.element_type {
        Some(crate::tensor::ElementType::String) => "strings (8 bytes each at least)".to_owned(),
        Some(t) => t.to_string(),
        None => "an unsupported type (8 bytes per element assumed)".to_owned(),
    }
}

fn dynamic_hint(input: &TensorSpec) -> String {
    if input.shape.iter().any(|&d| d < 0) {
        " (dynamic dimensions counted as 1)".to_owned()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::ElementType;

    fn spec(name: &str, ty: ElementType, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.to_owned(),
            element_type: Some(ty),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn a_huge_declared_image_is_refused_with_its_size_and_the_limit() {
        let inputs = [spec("x", ElementType::F32, &[1, 3, 16384, 16384])];
        let message = ModelLimits::default()
            .check_inputs(&inputs)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "model input 'x' declares [1,3,16384,16384] = 3 GiB of f32 per task; the limit \
             is 256 MiB (CLS_MAX_INPUT_MB)"
        );
    }

    #[test]
    fn dynamic_dimensions_count_as_one() {
        let inputs = [spec("x", ElementType::F32, &[-1, 3, 224, 224])];
        assert_eq!(ModelLimits::default().check_inputs(&inputs), Ok(()));
        let tight = ModelLimits {
            max_input_bytes: 1000,
        };
        let message = tight.check_inputs(&inputs).unwrap_err().to_string();
        assert!(
            message.contains("[?,3,224,224] = 588 KiB of f32"),
            "{message}"
        );
        assert!(
            message.contains("dynamic dimensions counted as 1"),
            "{message}"
        );
    }

    #[test]
    fn dimensions_that_overflow_are_refused_with_the_real_numbers() {
        let inputs = [spec("x", ElementType::F32, &[1 << 40, 1 << 40])];
        let message = ModelLimits::default()
            .check_inputs(&inputs)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("[1099511627776,1099511627776]")
                && message.contains("more than 2^64 elements (1099511627776 × 1099511627776"),
            "{message}"
        );
    }

    #[test]
    fn inputs_are_also_limited_together() {
        let inputs = [
            spec("a", ElementType::U8, &[600]),
            spec("b", ElementType::U8, &[600]),
        ];
        let limits = ModelLimits {
            max_input_bytes: 1000,
        };
        let message = limits.check_inputs(&inputs).unwrap_err().to_string();
        assert!(message.contains("all inputs together"), "{message}");
        assert_eq!(
            ModelLimits { max_input_bytes: 0 }.check_inputs(&inputs),
            Ok(())
        );
    }
}
