//! Write configurable-ls-backend hooks as plain Rust functions.
//!
//! A hook is a WebAssembly component (`wasm32-wasip2`) exporting one of the
//! two worlds of `wit/hooks.wit` (the crate carries its own copy): a
//! **pre-hook** turns a task's datapoints into model inputs, a **post-hook**
//! turns model outputs into Label Studio predictions. With this crate a post-hook is a function and one macro:
//!
//! ```no_run
//! use hook_sdk::{ops, Context, HookError, Outputs, Prediction};
//!
//! fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
//!     let target = ctx.label_config()?.choices_for_image()?;   // from_name/to_name from the project
//!     let names = ctx.class_names()?;                          // from the model's metadata
//!     let scores = out.only()?.to_f32()?;
//!     let probabilities = ops::as_probabilities(scores.first_item());
//!     Ok(Prediction::top_choice(&target, &names, &probabilities))   // the best class the config knows
//! }
//! hook_sdk::export_post_hook!(post_hook);
//! # fn main() {}
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to upload.
//!
//! # Layout
//! - [`export`]: [`export_pre_hook!`], [`export_post_hook!`] and what a post-hook may return.
//! - [`context`]: [`Context`] (task, labeling config, model metadata, carry) and [`Datapoints`].
//! - [`tensor`]: building tensors and reading outputs as typed [`Array`]s; [`Outputs`].
//! - [`image`]: host-side image decoding and transforms ([`Image`]), [`ImageTransform`] arithmetic.
//! - [`ops`]: softmax, argmax, top-k.
//! - [`native`]: the host's native ops on whole tensors (softmax along an axis, NMS, CTC, regions, brush RLE).
//! - [`ctc`]: greedy CTC decoding for text recognizers, PaddleOCR's alphabet.
//! - [`boxes`]: [`BBox`] conversions, percent coordinates, [`Nms`].
//! - [`detection`]: GFL/PicoDet heads (DFL box decoding).
//! - [`entities`]: token classification (NER) logits to character spans and `labels` regions.
//! - [`contours`]: masks and probability maps to blobs and outlines.
//! - [`polygon`]: simplification, unclip, hulls, minimum-area rectangles.
//! - [`rle`]: Label Studio brush RLE.
//! - [`text`]: the model's tokenizer, held by the host ([`text::Tokenizer`]), and token windows as inputs.
//! - [`results`]: [`Region`] builders and [`Prediction`].
//! - [`log`](mod@log): the `trace!`…`error!` macros.
//! - [`error`](mod@error): the [`HookError`] type.
//!
//! Label configs are parsed by [`labelconfig`], the same parser the server
//! uses, re-exported here.
#![deny(missing_docs)]
// Unit tests may unwrap: a panic is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

// Lets the generated code and the macros name this crate as `::hook_sdk`
// from inside it too (without it: E0433).
extern crate self as hook_sdk;

#[doc(hidden)]
pub mod bindings;
#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

pub mod boxes;
pub mod context;
pub mod contours;
pub mod ctc;
pub mod detection;
pub mod entities;
pub mod error;
pub mod export;
pub mod image;
pub mod log;
pub mod native;
pub mod ops;
pub mod polygon;
pub mod results;
pub mod rle;
pub mod tensor;
pub mod text;

pub use labelconfig;

pub use bindings::pre::PreOutput;
pub use bindings::pre::cls::hooks::host::{Channels, Filter, Layout, TensorOptions};
pub use bindings::pre::cls::hooks::types::{
    Datapoint, DatapointInfo, ElementType, ImageTransform, Tensor, TensorData, TensorSpec,
};
pub use boxes::{BBox, Detection, Nms, PercentRect};
pub use context::{Context, Datapoints};
pub use error::HookError;
pub use export::{PostOutput, RawJson};
pub use image::{Image, ImageSize};
pub use polygon::Point;
pub use results::{Prediction, Region, RegionIds, Target};
pub use tensor::{Array, Outputs};
