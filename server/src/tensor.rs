//! The host's tensor: what pre-hooks produce, the model consumes and
//! produces, and post-hooks receive. It mirrors the WIT `tensor` record
//! (name, element type, shape, little-endian bytes or strings) so that
//! crossing into or out of a hook is a move, not a conversion.
//!
//! This module owns shape/size invariants and batching along dimension 0; it
//! knows nothing about wasmtime or ONNX Runtime.

use std::fmt;

use serde::Serialize;

/// Element type of a tensor, named as in ONNX/numpy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    F32,
    F64,
    I64,
    I32,
    U8,
    I8,
    Bool,
    String,
}

impl ElementType {
    /// Bytes per element in the little-endian encoding; `None` for strings.
    pub fn byte_width(self) -> Option<usize> {
        match self {
            Self::F64 | Self::I64 => Some(8),
            Self::F32 | Self::I32 => Some(4),
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::String => None,
        }
    }

    /// The numpy dtype name MLflow signatures use (`float32`, `int64`, `str`).
    pub fn numpy_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::Bool => "bool",
            Self::String => "str",
        }
    }

    /// Parses a numpy dtype name as found in MLflow signatures.
    pub fn from_numpy_name(name: &str) -> Option<Self> {
        Some(match name {
            "float32" | "float" => Self::F32,
            "float64" | "double" => Self::F64,
            "int64" | "long" => Self::I64,
            "int32" | "integer" => Self::I32,
            "uint8" => Self::U8,
            "int8" => Self::I8,
            "bool" | "boolean" => Self::Bool,
            "str" | "string" | "object" => Self::String,
            _ => return None,
        })
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::I64 => "i64",
            Self::I32 => "i32",
            Self::U8 => "u8",
            Self::I8 => "i8",
            Self::Bool => "bool",
            Self::String => "string",
        };
        f.write_str(name)
    }
}

/// Elements in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Little-endian element bytes for every element type except `String`.
    Bytes(Vec<u8>),
    /// One string per element.
    Strings(Vec<String>),
}

/// A tensor whose data length always matches its shape and element type.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    name: String,
    element_type: ElementType,
    shape: Vec<u64>,
    data: TensorData,
}

/// Why a tensor could not be built or combined.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error(
        "tensor '{name}': shape {shape:?} holds {expected} elements but the data holds {actual}"
    )]
    LengthMismatch {
        name: String,
        shape: Vec<u64>,
        expected: u64,
        actual: u64,
    },
    #[error("tensor '{name}': element type {element_type} needs {expected} data")]
    DataKind {
        name: String,
        element_type: ElementType,
        expected: &'static str,
    },
    #[error("tensor '{name}': shape {shape:?} is too large")]
    TooLarge { name: String, shape: Vec<u64> },
    #[error("cannot batch tensors '{name}': {reason}")]
    Batch { name: String, reason: String },
}

impl Tensor {
    /// Builds a tensor, checking that `data` matches `shape` and `element_type`.
    pub fn new(
        name: impl Into<String>,
        element_type: ElementType,
        shape: Vec<u64>,
        data: TensorData,
    ) -> Result<Self, TensorError> {
        let name = name.into();
        let count = element_count(&shape).ok_or_else(|| TensorError::TooLarge {
            name: name.clone(),
            shape: shape.clone(),
        })?;
        let actual = match (&data, element_type.byte_width()) {
            (TensorData::Bytes(bytes), Some(width)) => (bytes.len() / width) as u64,
            (TensorData::Strings(strings), None) => strings.len() as u64,
            (TensorData::Bytes(_), None) => {
                return Err(TensorError::DataKind {
                    name,
                    element_type,
                    expected: "string",
                });
            }
            (TensorData::Strings(_), Some(_)) => {
                return Err(TensorError::DataKind {
                    name,
                    element_type,
                    expected: "little-endian byte",
                });
            }
        };
        let exact = match (&data, element_type.byte_width()) {
            (TensorData::Bytes(bytes), Some(width)) => bytes.len() % width == 0,
            _ => true,
        };
        if actual != count || !exact {
            return Err(TensorError::LengthMismatch {
                name,
                shape,
                expected: count,
                actual,
            });
        }
        Ok(Self {
            name,
            element_type,
            shape,
            data,
        })
    }

    /// An `f32` tensor from native floats.
    pub fn from_f32(
        name: impl Into<String>,
        shape: Vec<u64>,
        values: &[f32],
    ) -> Result<Self, TensorError> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(name, ElementType::F32, shape, TensorData::Bytes(bytes))
    }

    /// A string tensor.
    pub fn from_strings(
        name: impl Into<String>,
        shape: Vec<u64>,
        values: Vec<String>,
    ) -> Result<Self, TensorError> {
        Self::new(
            name,
            ElementType::String,
            shape,
            TensorData::Strings(values),
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the tensor (e.g. to the model input it is bound to).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn element_type(&self) -> ElementType {
        self.element_type
    }

    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Splits into parts, e.g. to hand them to a hook without copying.
    pub fn into_parts(self) -> (String, ElementType, Vec<u64>, TensorData) {
        (self.name, self.element_type, self.shape, self.data)
    }

    /// Size of the data in bytes (strings: their UTF-8 length).
    pub fn byte_len(&self) -> usize {
        match &self.data {
            TensorData::Bytes(b) => b.len(),
            TensorData::Strings(s) => s.iter().map(String::len).sum(),
        }
    }

    /// The elements as `f32`, decoded from little-endian bytes.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match (&self.data, self.element_type) {
            (TensorData::Bytes(b), ElementType::F32) => Some(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Concatenates tensors along dimension 0. All must share name, element
    /// type and every dimension but the first.
    pub fn concat(parts: Vec<Tensor>) -> Result<Tensor, TensorError> {
        let mut iter = parts.into_iter();
        let Some(first) = iter.next() else {
            return Err(TensorError::Batch {
                name: String::new(),
                reason: "no tensors".into(),
            });
        };
        let (name, element_type, mut shape, mut data) = first.into_parts();
        if shape.is_empty() {
            return Err(TensorError::Batch {
                name,
                reason: "a scalar has no batch dimension".into(),
            });
        }
        for part in iter {
            if part.element_type != element_type || part.shape.get(1..) != shape.get(1..) {
                return Err(TensorError::Batch {
                    reason: format!(
                        "{}{:?} does not stack with {}{:?}",
                        part.element_type, part.shape, element_type, shape
                    ),
                    name,
                });
            }
            shape[0] += part.shape[0];
            match (&mut data, part.data) {
                (TensorData::Bytes(acc), TensorData::Bytes(more)) => acc.extend(more),
                (TensorData::Strings(acc), TensorData::Strings(more)) => acc.extend(more),
                // Equal element types imply equal data kinds (see `Tensor::new`).
                _ => {
                    return Err(TensorError::Batch {
                        name,
                        reason: "mixed data kinds".into(),
                    });
                }
            }
        }
        Tensor::new(name, element_type, shape, data)
    }

    /// Splits along dimension 0 into `parts` equal tensors (the inverse of
    /// [`Tensor::concat`] for equal-sized parts).
    pub fn split(self, parts: usize) -> Result<Vec<Tensor>, TensorError> {
        let (name, element_type, shape, data) = self.into_parts();
        let rows = shape.first().copied().unwrap_or(0);
        if parts == 0 || rows != parts as u64 {
            return Err(TensorError::Batch {
                reason: format!("dimension 0 is {rows}, expected one row per task ({parts})"),
                name,
            });
        }
        let mut row_shape = shape.clone();
        row_shape[0] = 1;
        let per_row = element_count(&row_shape).unwrap_or(0) as usize;
        let pieces: Vec<TensorData> = match data {
            TensorData::Bytes(bytes) => {
                let width = element_type.byte_width().unwrap_or(1);
                bytes
                    .chunks(per_row * width)
                    .map(|c| TensorData::Bytes(c.to_vec()))
                    .collect()
            }
            TensorData::Strings(strings) => strings
                .chunks(per_row.max(1))
                .map(|c| TensorData::Strings(c.to_vec()))
                .collect(),
        };
        pieces
            .into_iter()
            .map(|d| Tensor::new(name.clone(), element_type, row_shape.clone(), d))
            .collect()
    }
}

/// Product of the dimensions; `None` on overflow.
pub fn element_count(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

/// A model input or output as the model declares it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorSpec {
    pub name: String,
    /// `None` when the model uses a type hooks cannot carry (e.g. float16).
    pub element_type: Option<ElementType>,
    /// -1 marks a dynamic dimension.
    pub shape: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_data_that_does_not_fill_the_shape() {
        let err = Tensor::from_f32("x", vec![2, 2], &[1.0, 2.0, 3.0]).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds 4 elements but the data holds 3")
        );
    }

    #[test]
    fn strings_need_string_data() {
        let err = Tensor::new(
            "t",
            ElementType::String,
            vec![1],
            TensorData::Bytes(vec![0]),
        )
        .unwrap_err();
        assert!(matches!(err, TensorError::DataKind { .. }));
    }

    #[test]
    fn concat_then_split_round_trips() {
        let a = Tensor::from_f32("x", vec![1, 2], &[1.0, 2.0]).unwrap();
        let b = Tensor::from_f32("x", vec![1, 2], &[3.0, 4.0]).unwrap();
        let batch = Tensor::concat(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(batch.shape(), &[2, 2]);
        assert_eq!(batch.to_f32_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(batch.split(2).unwrap(), vec![a, b]);
    }

    #[test]
    fn concat_refuses_mismatched_inner_dimensions() {
        let a = Tensor::from_f32("x", vec![1, 2], &[1.0, 2.0]).unwrap();
        let b = Tensor::from_f32("x", vec![1, 1], &[3.0]).unwrap();
        assert!(Tensor::concat(vec![a, b]).is_err());
    }

    #[test]
    fn split_needs_one_row_per_part() {
        let t = Tensor::from_f32("y", vec![3], &[1.0, 2.0, 3.0]).unwrap();
        assert!(t.split(2).is_err());
    }
}
