//! Tensors in and out of the model: building them ([`Tensor::new`],
//! [`Tensor::from_strings`]), reading them as typed [`Array`]s, and finding a
//! model output by name ([`Outputs`]).
//!
//! The wire format is the WIT `tensor`: little-endian bytes (or strings) plus
//! a shape. Reading copies into a `Vec<T>`, since the bytes carry no
//! alignment guarantee.

use crate::bindings::pre::cls::hooks::types::{ElementType, Tensor, TensorData};
use crate::error::HookError;

mod sealed {
    pub trait Sealed {}
}

/// A numeric element type a tensor can hold.
pub trait Element: Copy + sealed::Sealed {
    /// The WIT element type.
    const TYPE: ElementType;
    /// Bytes per element.
    const SIZE: usize;
    /// Reads one element from `SIZE` little-endian bytes.
    fn read(bytes: &[u8]) -> Self;
    /// Appends the element's little-endian bytes.
    fn write(self, out: &mut Vec<u8>);
    /// The value as `f32` (lossy for wide types).
    fn to_f32(self) -> f32;
}

macro_rules! element {
    ($t:ty, $variant:ident, $size:expr) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const TYPE: ElementType = ElementType::$variant;
            const SIZE: usize = $size;
            fn read(bytes: &[u8]) -> Self {
                let mut buf = [0u8; $size];
                buf.copy_from_slice(&bytes[..$size]);
                <$t>::from_le_bytes(buf)
            }
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
        }
    };
}

element!(f32, F32, 4);
element!(f64, F64, 8);
element!(i64, I64, 8);
element!(i32, I32, 4);
element!(u8, U8, 1);
element!(i8, I8, 1);

impl sealed::Sealed for bool {}
impl Element for bool {
    const TYPE: ElementType = ElementType::Bool;
    const SIZE: usize = 1;
    fn read(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn write(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn to_f32(self) -> f32 {
        f32::from(u8::from(self))
    }
}

/// The name numpy and ONNX use for an element type, for messages.
pub fn type_name(t: ElementType) -> &'static str {
    match t {
        ElementType::F32 => "float32",
        ElementType::F64 => "float64",
        ElementType::I64 => "int64",
        ElementType::I32 => "int32",
        ElementType::U8 => "uint8",
        ElementType::I8 => "int8",
        ElementType::Bool => "bool",
        ElementType::String => "string",
        ElementType::Unsupported => "unsupported",
    }
}

/// Element count of a shape, `None` on overflow.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl Tensor {
    /// A numeric tensor. Fails when `data.len()` is not the product of `shape`.
    ///
    /// ```
    /// use hook_sdk::Tensor;
    /// let t = Tensor::new("x", &[1, 2], &[0.5f32, 1.5])?;
    /// assert_eq!(t.to_array::<f32>()?.data(), &[0.5, 1.5]);
    /// # Ok::<(), hook_sdk::HookError>(())
    /// ```
    pub fn new<T: Element>(
        name: impl Into<String>,
        shape: &[usize],
        data: &[T],
    ) -> Result<Self, HookError> {
        let name = name.into();
        check_count(&name, shape, data.len())?;
        let mut bytes = Vec::with_capacity(data.len() * T::SIZE);
        for &v in data {
            v.write(&mut bytes);
        }
        Ok(Self {
            name,
            element_type: T::TYPE,
            shape: shape.iter().map(|&d| d as u64).collect(),
            data: TensorData::Bytes(bytes),
        })
    }

    /// A string tensor (e.g. the `text` input of a text classifier).
    ///
    /// ```
    /// use hook_sdk::Tensor;
    /// let t = Tensor::from_strings("text", &[1, 1], vec!["great movie".into()])?;
    /// assert_eq!(t.strings()?, ["great movie"]);
    /// # Ok::<(), hook_sdk::HookError>(())
    /// ```
    pub fn from_strings(
        name: impl Into<String>,
        shape: &[usize],
        data: Vec<String>,
    ) -> Result<Self, HookError> {
        let name = name.into();
        check_count(&name, shape, data.len())?;
        Ok(Self {
            name,
            element_type: ElementType::String,
            shape: shape.iter().map(|&d| d as u64).collect(),
            data: TensorData::Strings(data),
        })
    }

    /// The shape as `usize`s.
    pub fn dims(&self) -> Vec<usize> {
        self.shape
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }

    /// The elements as a typed array; the element type must be exactly `T`.
    pub fn to_array<T: Element>(&self) -> Result<Array<T>, HookError> {
        if self.element_type != T::TYPE {
            return Err(HookError::bad_config(format_args!(
                "model output '{}' is {}, the hook expects {}",
                self.name,
                type_name(self.element_type),
                type_name(T::TYPE)
            )));
        }
        self.read_as::<T, T>(|v| v)
    }

    /// The elements converted to `f32`, whatever the numeric element type
    /// (models disagree on float32/float64/int64 outputs).
    pub fn to_f32(&self) -> Result<Array<f32>, HookError> {
        match self.element_type {
            ElementType::F32 => self.read_as::<f32, f32>(|v| v),
            ElementType::F64 => self.read_as::<f64, f32>(Element::to_f32),
            ElementType::I64 => self.read_as::<i64, f32>(Element::to_f32),
            ElementType::I32 => self.read_as::<i32, f32>(Element::to_f32),
            ElementType::U8 => self.read_as::<u8, f32>(Element::to_f32),
            ElementType::I8 => self.read_as::<i8, f32>(Element::to_f32),
            ElementType::Bool => self.read_as::<bool, f32>(Element::to_f32),
            other => Err(HookError::bad_config(format_args!(
                "model output '{}' is {}, the hook expects numbers",
                self.name,
                type_name(other)
            ))),
        }
    }

    /// The elements of a string tensor.
    pub fn strings(&self) -> Result<&[String], HookError> {
        match &self.data {
            TensorData::Strings(s) => Ok(s),
            TensorData::Bytes(_) => Err(HookError::bad_config(format_args!(
                "model output '{}' is {}, the hook expects strings",
                self.name,
                type_name(self.element_type)
            ))),
        }
    }

    fn read_as<S: Element, T>(&self, convert: impl Fn(S) -> T) -> Result<Array<T>, HookError> {
        let TensorData::Bytes(bytes) = &self.data else {
            return Err(HookError::bad_config(format_args!(
                "model output '{}' holds strings, not numbers",
                self.name
            )));
        };
        let shape = self.dims();
        let count = element_count(&shape).unwrap_or(usize::MAX);
        if count.checked_mul(S::SIZE) != Some(bytes.len()) {
            return Err(HookError::bad_config(format_args!(
                "model output '{}' has {} bytes for shape {:?} of {} (expected {} × {})",
                self.name,
                bytes.len(),
                shape,
                type_name(S::TYPE),
                count,
                S::SIZE
            )));
        }
        let data = bytes
            .chunks_exact(S::SIZE)
            .map(|c| convert(S::read(c)))
            .collect();
        Ok(Array { shape, data })
    }
}

fn check_count(name: &str, shape: &[usize], len: usize) -> Result<(), HookError> {
    if element_count(shape) != Some(len) {
        return Err(HookError::failed(format_args!(
            "tensor '{name}': {len} elements do not fill shape {shape:?}"
        )));
    }
    Ok(())
}

/// A dense row-major array read from a tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T> Array<T> {
    /// An array; fails when `data` does not fill `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Result<Self, HookError> {
        check_count("array", &shape, data.len())?;
        Ok(Self { shape, data })
    }

    /// Dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// All elements in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements, consuming the array.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The element at a multi-dimensional index; `None` when out of range.
    pub fn get(&self, index: &[usize]) -> Option<&T> {
        if index.len() != self.shape.len() {
            return None;
        }
        let mut flat = 0usize;
        for (&i, &d) in index.iter().zip(&self.shape) {
            if i >= d {
                return None;
            }
            flat = flat * d + i;
        }
        self.data.get(flat)
    }

    /// The `i`-th sub-array along the first axis, flattened (e.g. one
    /// batch item, or one row of a matrix).
    ///
    /// ```
    /// use hook_sdk::tensor::Array;
    /// let a = Array::new(vec![2, 3], vec![1, 2, 3, 4, 5, 6])?;
    /// assert_eq!(a.outer(1), Some(&[4, 5, 6][..]));
    /// assert_eq!(a.outer(2), None);
    /// # Ok::<(), hook_sdk::HookError>(())
    /// ```
    pub fn outer(&self, i: usize) -> Option<&[T]> {
        let first = *self.shape.first()?;
        if i >= first {
            return None;
        }
        let stride = self.data.len() / first.max(1);
        self.data.get(i * stride..(i + 1) * stride)
    }

    /// The first batch item: [`Array::outer`]`(0)` when the array has a
    /// batch axis, else all of its data. Hooks get one task per call, so a
    /// classifier's `[1, classes]` output and a bare `[classes]` vector
    /// both give the class scores.
    ///
    /// ```
    /// use hook_sdk::tensor::Array;
    /// let batched = Array::new(vec![1, 3], vec![0.2, 0.7, 0.1])?;
    /// assert_eq!(batched.first_item(), &[0.2, 0.7, 0.1]);
    /// let scalar = Array::new(vec![], vec![0.5])?;
    /// assert_eq!(scalar.first_item(), &[0.5]);
    /// # Ok::<(), hook_sdk::HookError>(())
    /// ```
    pub fn first_item(&self) -> &[T] {
        self.outer(0).unwrap_or(&self.data)
    }

    /// Consecutive runs of the last dimension (the rows of a `[…, n]` array).
    pub fn rows(&self) -> std::slice::ChunksExact<'_, T> {
        let last = self.shape.last().copied().unwrap_or(1).max(1);
        self.data.chunks_exact(last)
    }
}

/// The model outputs a post-hook receives, in the model's output order.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs(Vec<Tensor>);

impl Outputs {
    /// Wraps the tensors the host passed.
    pub fn new(tensors: Vec<Tensor>) -> Self {
        Self(tensors)
    }

    /// The output called `name`; the error lists the outputs there are.
    ///
    /// ```
    /// use hook_sdk::{Outputs, Tensor};
    /// let out = Outputs::new(vec![Tensor::new("probs", &[1, 2], &[0.2f32, 0.8])?]);
    /// assert_eq!(out.get("probs")?.dims(), [1, 2]);
    /// assert_eq!(
    ///     out.get("logits").unwrap_err().to_string(),
    ///     "bad config: the model has no output 'logits' (outputs: probs)"
    /// );
    /// # Ok::<(), hook_sdk::HookError>(())
    /// ```
    pub fn get(&self, name: &str) -> Result<&Tensor, HookError> {
        self.0.iter().find(|t| t.name == name).ok_or_else(|| {
            HookError::bad_config(format_args!(
                "the model has no output '{name}' (outputs: {})",
                self.names().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The first of `names` that exists, for hooks that support several exports of a model.
    pub fn first_of(&self, names: &[&str]) -> Result<&Tensor, HookError> {
        names
            .iter()
            .find_map(|n| self.0.iter().find(|t| t.name == *n))
            .ok_or_else(|| {
                HookError::bad_config(format_args!(
                    "the model has none of the outputs {} (outputs: {})",
                    names.join(", "),
                    self.names().collect::<Vec<_>>().join(", ")
                ))
            })
    }

    /// The only output; fails when there are several or none.
    pub fn only(&self) -> Result<&Tensor, HookError> {
        match self.0.as_slice() {
            [t] => Ok(t),
            _ => Err(HookError::bad_config(format_args!(
                "the hook expects a model with one output, this one has {} ({})",
                self.0.len(),
                self.names().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Output names in model order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|t| t.name.as_str())
    }

    /// All outputs in model order.
    pub fn iter(&self) -> std::slice::Iter<'_, Tensor> {
        self.0.iter()
    }

    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no outputs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Outputs {
    type Item = &'a Tensor;
    type IntoIter = std::slice::Iter<'a, Tensor>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_numeric_type_round_trips() {
        fn round_trip<T: Element + PartialEq + std::fmt::Debug>(values: &[T]) {
            let t = Tensor::new("t", &[values.len()], values).unwrap();
            assert_eq!(t.to_array::<T>().unwrap().data(), values);
        }
        round_trip(&[1.5f32, -2.0]);
        round_trip(&[1.5f64, -2.0]);
        round_trip(&[i64::MIN, 7]);
        round_trip(&[i32::MAX, -7]);
        round_trip(&[0u8, 255]);
        round_trip(&[-128i8, 127]);
        round_trip(&[true, false]);
    }

    #[test]
    fn wrong_type_is_a_config_error_naming_both_types() {
        let t = Tensor::new("label", &[1], &[3i64]).unwrap();
        assert_eq!(
            t.to_array::<f32>().unwrap_err().to_string(),
            "bad config: model output 'label' is int64, the hook expects float32"
        );
        assert_eq!(t.to_f32().unwrap().data(), &[3.0]);
    }

    #[test]
    fn truncated_bytes_are_reported_not_panicked_on() {
        let t = Tensor {
            name: "x".into(),
            element_type: ElementType::F32,
            shape: vec![2],
            data: TensorData::Bytes(vec![0; 7]),
        };
        assert!(
            t.to_f32()
                .unwrap_err()
                .to_string()
                .contains("7 bytes for shape [2]")
        );
    }

    #[test]
    fn absurd_shapes_do_not_overflow() {
        let t = Tensor {
            name: "x".into(),
            element_type: ElementType::F32,
            shape: vec![u64::MAX, u64::MAX],
            data: TensorData::Bytes(vec![]),
        };
        assert!(t.to_f32().is_err());
    }

    #[test]
    fn shape_mismatch_on_build_is_an_error() {
        assert!(Tensor::new("x", &[2, 2], &[1.0f32]).is_err());
    }

    #[test]
    fn array_indexing_and_rows() {
        let a = Array::new(vec![2, 2, 3], (0..12).collect()).unwrap();
        assert_eq!(a.get(&[1, 0, 2]), Some(&8));
        assert_eq!(a.get(&[2, 0, 0]), None);
        assert_eq!(a.rows().count(), 4);
        assert_eq!(a.outer(1).unwrap(), &[6, 7, 8, 9, 10, 11]);
    }

    #[test]
    fn outputs_lookup_by_name_index_and_alternatives() {
        let out = Outputs::new(vec![
            Tensor::new("a", &[1], &[1.0f32]).unwrap(),
            Tensor::from_strings("b", &[1], vec!["x".into()]).unwrap(),
        ]);
        assert_eq!(out.first_of(&["z", "b"]).unwrap().name, "b");
        assert!(out.only().is_err());
        assert_eq!(out.names().collect::<Vec<_>>(), ["a", "b"]);
        assert!(out.get("b").unwrap().to_f32().is_err());
    }
}
