//! The pre-hook used when a backend has none: text becomes a string tensor,
//! or the model's tokens when it takes `input_ids` and has a tokenizer; an
//! image becomes the tensor the model's input shape asks for.
//!
//! Text for a transformer is tokenized with the model's own tokenizer into
//! one window: as long as the input's fixed sequence length (padded), else
//! at most [`MAX_DYNAMIC_TOKENS`] (or what `tokenizer.json` truncates to).
//! With `params.stride` in the backend's config (the keys the `ner-pre`
//! example reads, see [`TextWindows`]) a long text becomes overlapping
//! windows of `params.max_length` tokens instead, padded to one length and
//! fed as one batch `[windows, tokens]`.
//! Windows are not padded to a shared length so that tasks could stack: on
//! the CPU one stacked batch runs on one session while separate tasks run
//! on all of them (16 sentences padded to 32 tokens: 115 tasks/s stacked,
//! 266 apart; `cargo bench --bench text`).
//! The text and the window (offsets, word ids, tokens) go to the post-hook
//! as the carry (`{"text": …, "windows": [...]}`, the SDK's
//! `TokenizedText`), so it can map token outputs to spans of the text.
//!
//! Images are resized (stretched) to the input's height and width, scaled to
//! 0–1 for `f32` inputs (raw 0–255 for `u8`), RGB (or grey for one channel),
//! NCHW when dimension 1 is the channel count, NHWC when the last one is.
//! Dynamic height/width take the image's own size rounded to a multiple of
//! 32, capped at [`MAX_DYNAMIC_SIDE`]. Anything else needs a real pre-hook.

use serde_json::Value;

use crate::backend::HookParams;
use crate::hooks::{Datapoint, DatapointInfo, PreOutput};
use crate::imageops::{self, Channels, EncodedImage, Layout, TensorOptions};
use crate::model::{EncodeOptions, Encoding, ModelTokenizer};
use crate::tensor::{ElementType, Tensor, TensorData, TensorSpec};

/// Longest window of tokens fed to a model whose sequence length is open
/// and whose `tokenizer.json` names no maximum: BERT-sized models' limit.
pub const MAX_DYNAMIC_TOKENS: u32 = 512;

/// The model inputs the built-in pre-hook fills from the tokenizer, by the
/// names transformer exports use.
const TOKEN_INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

/// Largest side used for an image input whose size the model leaves open.
pub const MAX_DYNAMIC_SIDE: u32 = 1024;

/// Windows the built-in pre-hook feeds for one text unless
/// `params.max_windows` says otherwise: every window's attention runs in
/// the one inference, so the count bounds the task's memory (64 windows of
/// 128 tokens cover ~6,000 tokens).
pub const DEFAULT_MAX_WINDOWS: u32 = 64;
/// The most `params.max_windows` may allow.
pub const MAX_WINDOWS: u32 = 1024;

/// How the built-in pre-hook cuts a long text into windows, read from the
/// backend's params: `stride` (tokens each window repeats from the one
/// before; absent: the text is truncated to one window), `max_length`
/// (tokens per window, special tokens included; default the model's fixed
/// sequence length, else the tokenizer's, else [`MAX_DYNAMIC_TOKENS`]) and
/// `max_windows` (default [`DEFAULT_MAX_WINDOWS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextWindows {
    pub max_length: Option<u32>,
    pub stride: Option<u32>,
    pub max_windows: u32,
}

impl Default for TextWindows {
    fn default() -> Self {
        Self {
            max_length: None,
            stride: None,
            max_windows: DEFAULT_MAX_WINDOWS,
        }
    }
}

impl TextWindows {
    /// The windows for a model with `inputs`: read from `params` when the
    /// model takes token ids (the built-in pre-hook reads them only then),
    /// the defaults otherwise.
    pub fn for_model(inputs: &[TensorSpec], params: &HookParams) -> Result<Self, String> {
        if !inputs.iter().any(is_token_input) {
            return Ok(Self::default());
        }
        let windows = Self::from_params(params)?;
        match (fixed_sequence_length(inputs), windows.max_length) {
            (Some(fixed), Some(max)) if fixed != max => Err(format!(
                "params.max_length = {max}, but the model takes exactly {fixed} tokens"
            )),
            _ => Ok(windows),
        }
    }

    /// Reads the window params, refusing values that cannot work.
    fn from_params(params: &HookParams) -> Result<Self, String> {
        let values = params.values();
        let read = |key: &str, min: u32, max: u32| -> Result<Option<u32>, String> {
            let Some(value) = values.get(key) else {
                return Ok(None);
            };
            value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "params.{key} = {} cannot be used by the built-in pre-hook: \
                         it takes a whole number from {min} to {max}",
                        short_json(value)
                    )
                })
        };
        let windows = Self {
            max_length: read("max_length", 4, 1 << 16)?,
            stride: read("stride", 0, 1 << 16)?,
            max_windows: read("max_windows", 1, MAX_WINDOWS)?.unwrap_or(DEFAULT_MAX_WINDOWS),
        };
        if let (Some(stride), Some(max)) = (windows.stride, windows.max_length)
            && stride >= max / 2
        {
            return Err(format!(
                "params.stride = {stride} must be less than half of params.max_length = \
                 {max}, or windows would repeat more than they add"
            ));
        }
        Ok(windows)
    }
}

/// A param's JSON, shortened for a message.
fn short_json(value: &Value) -> String {
    value.to_string().chars().take(40).collect()
}

/// Builds one tensor per model input from the task's datapoints.
///
/// An image is decoded only when its header declares a size whose pixels
/// fit `max_decode_bytes`; a decode bomb is refused before any allocation.
pub fn run(
    datapoints: &[Datapoint],
    inputs: &[TensorSpec],
    tokenizer: &ModelTokenizer,
    text_windows: TextWindows,
    max_decode_bytes: usize,
) -> Result<(PreOutput, Vec<DatapointInfo>), String> {
    let mut infos: Vec<DatapointInfo> = datapoints.iter().map(describe).collect();
    let mut tensors = Vec::with_capacity(inputs.len());
    let tokenized = match inputs.iter().find(|s| is_token_input(s)) {
        Some(spec) => Some(tokenize(spec, inputs, datapoints, tokenizer, text_windows)?),
        None => None,
    };
    let windows = tokenized.as_ref().map(|(_, windows)| windows.as_slice());
    for spec in inputs {
        let tensor = match (spec.element_type, windows) {
            (_, Some(windows)) if is_token_input(spec) => token_tensor(spec, windows)?,
            (Some(ElementType::String), _) => text_tensor(spec, datapoints)?,
            (Some(ty @ (ElementType::F32 | ElementType::U8)), _) if spec.shape.len() == 4 => {
                image_tensor(spec, ty, datapoints, &mut infos, max_decode_bytes)?
            }
            _ => {
                return Err(format!(
                    "the built-in pre-hook cannot build model input '{}' ({} {:?}); upload a pre_hook",
                    spec.name,
                    spec.element_type
                        .map_or("unsupported".into(), |t| t.to_string()),
                    spec.shape
                ));
            }
        };
        tensors.push(tensor);
    }
    let carry = tokenized
        .as_ref()
        .map(|(text, windows)| windows_carry(text, windows));
    Ok((
        PreOutput {
            inputs: tensors,
            carry,
        },
        infos,
    ))
}

/// An integer input named like a tokenizer output.
fn is_token_input(spec: &TensorSpec) -> bool {
    TOKEN_INPUTS.contains(&spec.name.as_str())
        && matches!(spec.element_type, Some(ElementType::I64 | ElementType::I32))
}

/// The task's text and its windows of the model's tokens: one, as long as
/// the model's sequence dimension allows, unless `text_windows` asks for
/// overlapping ones.
fn tokenize(
    spec: &TensorSpec,
    inputs: &[TensorSpec],
    datapoints: &[Datapoint],
    tokenizer: &ModelTokenizer,
    text_windows: TextWindows,
) -> Result<(String, Vec<Encoding>), String> {
    let tokenizer = tokenizer.get().map_err(|e| {
        format!(
            "model input '{}' takes token ids, and {e}; or upload a pre_hook",
            spec.name
        )
    })?;
    let text = first_text(spec, datapoints)?;
    let fixed = fixed_sequence_length(inputs);
    let max_length = window_length(text_windows, fixed, tokenizer.max_length());
    let options = EncodeOptions {
        add_special_tokens: true,
        max_length: Some(max_length),
        stride: text_windows.stride,
        // Windows share one tensor, so they share one length.
        pad_to_max_length: fixed.is_some() || text_windows.stride.is_some(),
    };
    let windows = tokenizer
        .encode(&text, None, options)
        .map_err(|e| e.to_string())?;
    if windows.is_empty() {
        return Err("the tokenizer returned no window".to_owned());
    }
    if windows.len() > text_windows.max_windows as usize {
        return Err(format!(
            "the text needs {} windows of {max_length} tokens, more than the {} allowed \
             (params.max_windows, at most {MAX_WINDOWS}; or raise params.max_length)",
            windows.len(),
            text_windows.max_windows
        ));
    }
    Ok((text, windows))
}

/// Tokens per window: the params', else the model's fixed sequence length,
/// else the length `tokenizer.json` was saved to truncate at, else
/// [`MAX_DYNAMIC_TOKENS`].
fn window_length(windows: TextWindows, fixed: Option<u32>, saved: Option<u32>) -> u32 {
    windows
        .max_length
        .or(fixed)
        .or(saved)
        .unwrap_or(MAX_DYNAMIC_TOKENS)
}

/// The most one task's text can take in the built-in pre-hook, as
/// `(windows, tokens per window)`; `None` when the model takes no token
/// ids.
pub fn token_bound(
    inputs: &[TensorSpec],
    windows: TextWindows,
    tokenizer: &ModelTokenizer,
) -> Option<(u32, u32)> {
    if !inputs.iter().any(is_token_input) {
        return None;
    }
    let saved = tokenizer.get().ok().and_then(|t| t.max_length());
    let tokens = window_length(windows, fixed_sequence_length(inputs), saved);
    let count = if windows.stride.is_some() {
        windows.max_windows
    } else {
        1
    };
    Some((count, tokens))
}

/// The sequence length the model's token inputs fix, if they fix one.
fn fixed_sequence_length(inputs: &[TensorSpec]) -> Option<u32> {
    inputs
        .iter()
        .filter(|s| is_token_input(s))
        .find_map(|s| s.shape.get(1).copied().filter(|&d| d > 0))
        .map(|d| u32::try_from(d).unwrap_or(u32::MAX))
}

/// One token input `[windows, tokens]` of equally long windows, in the
/// declared type.
fn token_tensor(spec: &TensorSpec, windows: &[Encoding]) -> Result<Tensor, String> {
    let tokens = windows.first().map_or(0, |w| w.ids.len());
    if windows.iter().any(|w| w.ids.len() != tokens) {
        return Err("the tokenizer returned windows of different lengths".to_owned());
    }
    let values: Vec<i64> = windows
        .iter()
        .flat_map(|window| token_values(&spec.name, window))
        .collect();
    let (element_type, bytes) = if spec.element_type == Some(ElementType::I32) {
        let bytes = values
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect();
        (ElementType::I32, bytes)
    } else {
        (
            ElementType::I64,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    };
    let shape = vec![windows.len() as u64, tokens as u64];
    Tensor::new(
        spec.name.clone(),
        element_type,
        shape,
        TensorData::Bytes(bytes),
    )
    .map_err(|e| e.to_string())
}

/// The values of token input `name` in one window.
fn token_values(name: &str, window: &Encoding) -> Vec<i64> {
    match name {
        "input_ids" => window.ids.iter().map(|&v| i64::from(v)).collect(),
        "attention_mask" => window
            .attention_mask
            .iter()
            .map(|&v| i64::from(v))
            .collect(),
        _ => window.type_ids.iter().map(|&v| i64::from(v)).collect(),
    }
}

/// Inputs holding only the largest id the tokenizer can produce, for a
/// model that takes nothing but token inputs: a model whose embedding is
/// smaller than the tokenizer's vocabulary fails on them, which shows a
/// tokenizer.json that does not belong to the model at configure time
/// instead of on the first long task. Returns the vocabulary size with
/// them; `None` without a tokenizer or with other inputs.
pub fn vocabulary_probe(
    inputs: &[TensorSpec],
    tokenizer: &ModelTokenizer,
) -> Option<(u32, Vec<Tensor>)> {
    let tokenizer = tokenizer.get().ok()?;
    if inputs.is_empty() || !inputs.iter().all(is_token_input) {
        return None;
    }
    let vocabulary = tokenizer.vocab_size();
    let largest = vocabulary.checked_sub(1)?;
    // Two tokens unless the model fixes its sequence length.
    let len = fixed_sequence_length(inputs).map_or(2, |d| d as usize);
    let window = Encoding {
        ids: vec![largest; len],
        type_ids: vec![0; len],
        attention_mask: vec![1; len],
        ..Encoding::default()
    };
    let tensors = inputs
        .iter()
        .map(|spec| token_tensor(spec, std::slice::from_ref(&window)))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some((vocabulary, tensors))
}

/// What a post-hook needs to map the windows' token outputs to characters
/// of the text.
fn windows_carry(text: &str, windows: &[Encoding]) -> String {
    let windows: Vec<Value> = windows
        .iter()
        .map(|window| {
            serde_json::json!({
                "ids": window.ids,
                "type_ids": window.type_ids,
                "attention_mask": window.attention_mask,
                "special_tokens_mask": window.special_tokens_mask,
                "word_ids": window.word_ids,
                "offsets": window.offsets,
                "tokens": window.tokens,
            })
        })
        .collect();
    serde_json::json!({"text": text, "windows": windows}).to_string()
}

/// A warning for models whose image input leaves its height or width open
/// (e.g. `[-1, 3, -1, -1]`): the built-in pre-hook then has to choose the
/// size, and a model trained at one fixed size usually scores worse at
/// another. `None` when every image input has a fixed size.
pub fn open_size_note(inputs: &[TensorSpec]) -> Option<String> {
    let spec = inputs.iter().find(|spec| {
        matches!(spec.element_type, Some(ElementType::F32 | ElementType::U8))
            && image_axes(&spec.shape)
                .is_some_and(|a| spec.shape[a.height] <= 0 || spec.shape[a.width] <= 0)
    })?;
    Some(format!(
        "model input '{}' has shape {:?}: its image size is open, so the built-in pre-hook feeds \
         each image at its own size rounded up to a multiple of 32, at most {MAX_DYNAMIC_SIDE} \
         pixels per side (a 500×375 photo becomes 512×384); if the model was trained at one \
         size, a pre_hook that resizes to it predicts better",
        spec.name, spec.shape
    ))
}

/// [`open_size_note`] for a backend that uses the built-in pre-hook;
/// `None` when it has a pre-hook of its own.
pub fn open_size_note_for(backend: &crate::backend::Backend) -> Option<String> {
    if backend.pre_hook.is_some() {
        return None;
    }
    open_size_note(backend.model.inputs())
}

/// How a 4-D image input lays out its pixels: NCHW when dimension 1 is
/// the channel count (1 or 3), NHWC when the last one is.
struct ImageAxes {
    layout: Layout,
    channels: usize,
    height: usize,
    width: usize,
}

fn image_axes(dims: &[i64]) -> Option<ImageAxes> {
    if dims.len() != 4 {
        return None;
    }
    let (layout, channels, height, width) = if matches!(dims[1], 1 | 3) {
        (Layout::Nchw, 1, 2, 3)
    } else if matches!(dims[3], 1 | 3) {
        (Layout::Nhwc, 3, 1, 2)
    } else {
        return None;
    };
    Some(ImageAxes {
        layout,
        channels,
        height,
        width,
    })
}

/// What the post-hook should know about a datapoint that no built-in
/// conversion touched (image size read from the header only).
pub fn describe(d: &Datapoint) -> DatapointInfo {
    DatapointInfo {
        field: d.field.clone(),
        uri: d.uri.clone(),
        content_type: d.content_type.clone(),
        image_size: looks_like_image(d)
            .then(|| imageops::dimensions(&d.data))
            .flatten(),
        transform: None,
    }
}

/// Bytes per pixel a decode may hold at its peak: the decoder's buffer (up
/// to RGBA with 16 bits per channel) while the RGB copy is made.
const DECODE_BYTES_PER_PIXEL: u64 = 8 + 3;

/// Refuses an image whose header declares more pixels than
/// `max_decode_bytes` can hold, before anything is decoded. An unreadable
/// header passes: the decoder then reports what is wrong with the file.
pub fn check_decode_size(bytes: &[u8], max_decode_bytes: usize) -> Result<(), String> {
    let Some((width, height)) = imageops::dimensions(bytes) else {
        return Ok(());
    };
    let need = u64::from(width)
        .saturating_mul(u64::from(height))
        .saturating_mul(DECODE_BYTES_PER_PIXEL);
    if need > max_decode_bytes as u64 {
        return Err(format!(
            "image of {width}×{height} pixels would need {} to decode; the limit is {} \
             (limits.hook_memory_mb)",
            crate::size::human(need),
            crate::size::human(max_decode_bytes as u64)
        ));
    }
    Ok(())
}

fn looks_like_image(d: &Datapoint) -> bool {
    d.content_type.starts_with("image/") || d.uri.is_some() && !d.content_type.starts_with("text/")
}

/// The task's first text field, for model input `spec`.
fn first_text(spec: &TensorSpec, datapoints: &[Datapoint]) -> Result<String, String> {
    let text = datapoints
        .iter()
        .find(|d| d.content_type.starts_with("text/"))
        .ok_or_else(|| {
            format!(
                "model input '{}' takes text, but the task has no text field",
                spec.name
            )
        })?;
    Ok(String::from_utf8_lossy(&text.data).into_owned())
}

fn text_tensor(spec: &TensorSpec, datapoints: &[Datapoint]) -> Result<Tensor, String> {
    let value = first_text(spec, datapoints)?;
    // One element, shaped like the spec with every dynamic dimension as 1.
    let shape: Vec<u64> = spec
        .shape
        .iter()
        .map(|&d| if d > 0 { d as u64 } else { 1 })
        .collect();
    if shape.iter().product::<u64>() != 1 {
        return Err(format!(
            "model input '{}' has shape {:?}; the built-in pre-hook feeds one string",
            spec.name, spec.shape
        ));
    }
    Tensor::from_strings(spec.name.clone(), shape, vec![value]).map_err(|e| e.to_string())
}

fn image_tensor(
    spec: &TensorSpec,
    element_type: ElementType,
    datapoints: &[Datapoint],
    infos: &mut [DatapointInfo],
    max_decode_bytes: usize,
) -> Result<Tensor, String> {
    let (index, datapoint) = datapoints
        .iter()
        .enumerate()
        .find(|(_, d)| looks_like_image(d))
        .ok_or_else(|| {
            format!(
                "model input '{}' takes an image, but the task has none",
                spec.name
            )
        })?;
    let dims = &spec.shape;
    let ImageAxes {
        layout,
        channels: channels_dim,
        height: h_dim,
        width: w_dim,
    } = image_axes(dims).ok_or_else(|| {
        format!(
            "model input '{}' {:?} has no channel dimension of 1 or 3; upload a pre_hook",
            spec.name, dims
        )
    })?;
    check_decode_size(&datapoint.data, max_decode_bytes)
        .map_err(|e| format!("field '{}': {e}", datapoint.field))?;
    let image = EncodedImage::open(datapoint.data.clone(), true)
        .map_err(|e| format!("field '{}': {e}", datapoint.field))?;
    // A declared side is checked before any narrowing: a huge dimension must
    // be reported as declared, not wrapped into a small (or zero) one.
    let side = |declared: i64, actual: u32| -> Result<u32, String> {
        if declared <= 0 {
            return Ok((actual.min(MAX_DYNAMIC_SIDE).div_ceil(32) * 32).max(32));
        }
        u32::try_from(declared)
            .ok()
            .filter(|&side| side <= crate::imageops::MAX_DIMENSION)
            .ok_or_else(|| {
                format!(
                    "model input '{}' declares an image of {}x{} (shape {:?}); the built-in \
                     pre-processing handles at most {} pixels per side, upload a pre_hook",
                    spec.name,
                    dims[w_dim],
                    dims[h_dim],
                    dims,
                    crate::imageops::MAX_DIMENSION
                )
            })
    };
    let width = side(dims[w_dim], image.width())?;
    let height = side(dims[h_dim], image.height())?;
    let (resized, transform) = image
        .stretch(width, height, imageops::MAX_DECODE_BYTES)
        .map_err(|e| format!("field '{}': {e}", datapoint.field))?;
    let options = TensorOptions {
        name: spec.name.clone(),
        layout,
        channels: if dims[channels_dim] == 1 {
            Channels::Gray
        } else {
            Channels::Rgb
        },
        element_type,
        scale: 1.0 / 255.0,
        mean: Vec::new(),
        std: Vec::new(),
    };
    let tensor = resized.to_tensor(&options).map_err(|e| e.to_string())?;
    infos[index].image_size = Some((image.width(), image.height()));
    infos[index].transform = Some(transform);
    Ok(tensor)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(name: &str, element_type: ElementType, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            element_type: Some(element_type),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn an_open_image_size_is_named_with_the_size_rule() {
        let note = open_size_note(&[spec("x", ElementType::F32, &[-1, 3, -1, -1])])
            .expect("open height and width");
        assert!(note.contains("'x'"), "{note}");
        assert!(note.contains("512×384"), "{note}");
        assert!(note.contains("1024"), "{note}");
        let nhwc = open_size_note(&[spec("img", ElementType::U8, &[1, -1, 224, 3])]);
        assert!(nhwc.is_some_and(|n| n.contains("'img'")));
    }

    #[test]
    fn fixed_sizes_and_non_images_need_no_note() {
        assert_eq!(
            open_size_note(&[spec("x", ElementType::F32, &[-1, 3, 224, 224])]),
            None
        );
        assert_eq!(
            open_size_note(&[spec("t", ElementType::String, &[-1, 1])]),
            None
        );
        assert_eq!(
            open_size_note(&[spec("f", ElementType::F32, &[-1, 7, -1, -1])]),
            None,
            "no channel axis: not an image the built-in pre-hook takes"
        );
    }

    fn windows(inputs: &[TensorSpec], params: Value) -> Result<TextWindows, String> {
        TextWindows::for_model(inputs, &HookParams::new(params).expect("params"))
    }

    #[test]
    fn window_params_are_read_for_token_models_only_and_checked() {
        let open = [spec("input_ids", ElementType::I64, &[-1, -1])];
        let fixed = [spec("input_ids", ElementType::I64, &[-1, 128])];
        let image = [spec("x", ElementType::F32, &[-1, 3, 224, 224])];
        assert_eq!(
            windows(&open, json!({"max_length": 128, "stride": 32})),
            Ok(TextWindows {
                max_length: Some(128),
                stride: Some(32),
                max_windows: DEFAULT_MAX_WINDOWS
            })
        );
        assert_eq!(windows(&open, json!({})), Ok(TextWindows::default()));
        // A post-hook's own "stride" is none of the built-in pre-hook's business.
        assert_eq!(
            windows(&image, json!({"stride": "wide"})),
            Ok(TextWindows::default())
        );
        for (params, names) in [
            (json!({"stride": "wide"}), "params.stride = \"wide\""),
            (json!({"stride": -1}), "params.stride = -1"),
            (json!({"max_length": 2}), "params.max_length = 2"),
            (json!({"max_windows": 5000}), "params.max_windows = 5000"),
            (
                json!({"max_length": 64, "stride": 32}),
                "half of params.max_length",
            ),
        ] {
            let err = windows(&open, params.clone()).expect_err(&params.to_string());
            assert!(err.contains(names), "{params}: {err}");
        }
        let err = windows(&fixed, json!({"max_length": 256})).expect_err("fixed 128");
        assert!(err.contains("exactly 128 tokens"), "{err}");
        assert!(windows(&fixed, json!({"max_length": 128, "stride": 16})).is_ok());
    }
}
