//! Conversions between the host's data types and the generated WIT types,
//! so nothing outside `hooks` sees generated code.

use super::bindings::types as wit;
use crate::imageops::Transform;
use crate::tensor::{ElementType, Tensor, TensorData, TensorError, TensorSpec};

/// One task field handed to a pre-hook.
#[derive(Debug, Clone)]
pub struct Datapoint {
    pub field: String,
    pub uri: Option<String>,
    pub content_type: String,
    pub data: bytes::Bytes,
}

/// What the post-hook learns about a datapoint.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DatapointInfo {
    pub field: String,
    pub uri: Option<String>,
    pub content_type: String,
    pub image_size: Option<(u32, u32)>,
    pub transform: Option<Transform>,
}

pub(super) fn element_type_to_wit(t: ElementType) -> wit::ElementType {
    match t {
        ElementType::F32 => wit::ElementType::F32,
        ElementType::F64 => wit::ElementType::F64,
        ElementType::I64 => wit::ElementType::I64,
        ElementType::I32 => wit::ElementType::I32,
        ElementType::U8 => wit::ElementType::U8,
        ElementType::I8 => wit::ElementType::I8,
        ElementType::Bool => wit::ElementType::Bool,
        ElementType::String => wit::ElementType::String,
    }
}

fn element_type_from_wit(t: wit::ElementType) -> Option<ElementType> {
    Some(match t {
        wit::ElementType::F32 => ElementType::F32,
        wit::ElementType::F64 => ElementType::F64,
        wit::ElementType::I64 => ElementType::I64,
        wit::ElementType::I32 => ElementType::I32,
        wit::ElementType::U8 => ElementType::U8,
        wit::ElementType::I8 => ElementType::I8,
        wit::ElementType::Bool => ElementType::Bool,
        wit::ElementType::String => ElementType::String,
        wit::ElementType::Unsupported => return None,
    })
}

pub(super) fn tensor_to_wit(tensor: Tensor) -> wit::Tensor {
    let (name, element_type, shape, data) = tensor.into_parts();
    wit::Tensor {
        name,
        element_type: element_type_to_wit(element_type),
        shape,
        data: match data {
            TensorData::Bytes(b) => wit::TensorData::Bytes(b),
            TensorData::Strings(s) => wit::TensorData::Strings(s),
        },
    }
}

pub(super) fn tensor_from_wit(tensor: wit::Tensor) -> Result<Tensor, TensorError> {
    let element_type =
        element_type_from_wit(tensor.element_type).ok_or_else(|| TensorError::DataKind {
            name: tensor.name.clone(),
            element_type: ElementType::U8,
            expected: "a supported element type (not `unsupported`)",
        })?;
    let data = match tensor.data {
        wit::TensorData::Bytes(b) => TensorData::Bytes(b),
        wit::TensorData::Strings(s) => TensorData::Strings(s),
    };
    Tensor::new(tensor.name, element_type, tensor.shape, data)
}

pub(super) fn spec_to_wit(spec: &TensorSpec) -> wit::TensorSpec {
    wit::TensorSpec {
        name: spec.name.clone(),
        element_type: spec
            .element_type
            .map_or(wit::ElementType::Unsupported, element_type_to_wit),
        shape: spec.shape.clone(),
    }
}

pub(super) fn datapoint_to_wit(d: &Datapoint) -> wit::Datapoint {
    wit::Datapoint {
        field: d.field.clone(),
        uri: d.uri.clone(),
        content_type: d.content_type.clone(),
        data: d.data.to_vec(),
    }
}

pub(super) fn info_to_wit(d: &DatapointInfo) -> wit::DatapointInfo {
    wit::DatapointInfo {
        field: d.field.clone(),
        uri: d.uri.clone(),
        content_type: d.content_type.clone(),
        image_width: d.image_size.map(|(w, _)| w),
        image_height: d.image_size.map(|(_, h)| h),
        transform: d.transform.map(super::host::transform_to_wit),
    }
}
