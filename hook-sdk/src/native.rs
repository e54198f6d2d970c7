//! The host's native ops (`cls:hooks/ops`): whole-tensor kernels that run
//! in the server, outside the sandbox's interpreter or JIT.
//!
//! They are this crate's own functions ([`crate::ops`], [`crate::boxes`],
//! [`crate::ctc`], [`crate::contours`], [`crate::rle`]) compiled natively,
//! so results are identical to computing in the hook. A Rust hook gains
//! little from them (its loops are already compiled; a call copies the
//! tensor out of the hook and back); they exist for languages whose loops
//! are slow, and for Rust hooks that prefer one call over a loop. Errors
//! come back as [`HookError::bad_config`], naming the op.
//!
//! ```no_run
//! use hook_sdk::{native, HookError, Outputs};
//!
//! fn read_line(out: &Outputs) -> Result<String, HookError> {
//!     let alphabet = native::CtcAlphabet::PaddleDictionary("a\nb\nc".into());
//!     let lines = native::ctc_greedy_decode(out.only()?, &alphabet, 0)?;
//!     Ok(lines.into_iter().map(|l| l.text).collect())
//! }
//! # fn main() {}
//! ```

use crate::Tensor;
use crate::bindings::pre::cls::hooks::ops;
pub use crate::bindings::pre::cls::hooks::ops::{
    BoxFormat, CtcAlphabet, Detection, NmsOptions, Ranked, Region, RegionOptions, Transcription,
};
use crate::error::HookError;

fn named<T>(op: &str, result: Result<T, String>) -> Result<T, HookError> {
    result.map_err(|message| HookError::bad_config(format_args!("{op}: {message}")))
}

/// Softmax along `axis` (negative: from the end): an `f32` tensor of the
/// same name and shape.
pub fn softmax(t: &Tensor, axis: i32) -> Result<Tensor, HookError> {
    named("softmax", ops::softmax(t, axis))
}

/// The logistic function of every element, as an `f32` tensor.
pub fn sigmoid(t: &Tensor) -> Result<Tensor, HookError> {
    named("sigmoid", ops::sigmoid(t))
}

/// The `k` largest elements along `axis` for every position of the other
/// axes, in row-major order, largest first (`k` = 1: argmax).
pub fn top_k(t: &Tensor, axis: i32, k: u32) -> Result<Vec<Vec<Ranked>>, HookError> {
    named("top-k", ops::top_k(t, axis, k))
}

/// Per-class hard NMS of `boxes` (`[n, 4]`) scored by `scores` (`[n]` or
/// `[n, classes]`).
pub fn nms(
    boxes: &Tensor,
    scores: &Tensor,
    options: NmsOptions,
) -> Result<Vec<Detection>, HookError> {
    named("nms", ops::nms(boxes, scores, options))
}

/// Greedy CTC decoding, one [`Transcription`] per line of `probs`
/// (`[steps, classes]` or `[lines, steps, classes]`).
pub fn ctc_greedy_decode(
    probs: &Tensor,
    alphabet: &CtcAlphabet,
    blank: u32,
) -> Result<Vec<Transcription>, HookError> {
    named(
        "ctc-greedy-decode",
        ops::ctc_greedy_decode(probs, alphabet, blank),
    )
}

/// The 8-connected regions of `values > threshold` with their outlines.
pub fn regions(values: &Tensor, options: RegionOptions) -> Result<Vec<Region>, HookError> {
    named("regions", ops::regions(values, options))
}

/// Label Studio's brush RLE of `values > threshold`.
pub fn brush_rle(values: &Tensor, threshold: f32) -> Result<Vec<u8>, HookError> {
    named("brush-rle", ops::brush_rle(values, threshold))
}
