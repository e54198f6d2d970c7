//! Pre-hook for PaddleOCR text recognizers (`ch_PP-OCRv4_rec_infer.onnx`
//! from the `rapidocr-onnxruntime` wheel): one cropped text line in, the
//! recognizer's `[1, 3, 48, width]` input out.
//!
//! Mirrors `rapidocr_onnxruntime.ch_ppocr_rec.TextRecognizer.resize_norm_img`
//! (rapidocr-onnxruntime 1.4.4) for one line: the line is resized to a height
//! of 48 keeping its aspect ratio (bilinear), scaled to -1–1 in BGR order,
//! and padded with zeros on the right to at least 320 pixels (the width the
//! model was trained at). Wider lines keep their width, up to
//! `params.max_width` (default 1600) so a hostile panorama cannot ask for an
//! unbounded tensor; wider ones are squeezed to it.

use hook_sdk::{
    Channels, Context, Datapoints, Filter, HookError, PreOutput, Tensor, TensorOptions,
};

/// The recognizer's input height.
const HEIGHT: u32 = 48;
/// The narrowest input: rapidocr's `rec_img_shape` width.
const MIN_WIDTH: u32 = 320;
/// The widest input unless `params.max_width` says otherwise.
const MAX_WIDTH: u32 = 1600;

fn pre_hook(data: &Datapoints, ctx: &Context) -> Result<PreOutput, HookError> {
    let max_width = ctx.param_or("max_width", MAX_WIDTH)?.max(MIN_WIDTH);
    let line = data.image(ctx)?.decode_image()?;
    let (width, padded) = line_widths(line.width(), line.height(), max_width);
    let options = TensorOptions::new(&ctx.first_input()?.name)
        .with_normalization(&[0.5], &[0.5])
        .with_channels(Channels::Bgr);
    let resized = line
        .resize(width, HEIGHT, Filter::Bilinear)?
        .to_tensor(&options)?;
    Ok(PreOutput::new(vec![pad_right(&resized, width, padded)?]))
}

/// The resized line's width and the padded input width.
fn line_widths(width: u32, height: u32, max_width: u32) -> (u32, u32) {
    let ratio = f64::from(width) / f64::from(height.max(1));
    let resized = ((f64::from(HEIGHT) * ratio).ceil() as u32).clamp(1, max_width);
    (resized, resized.max(MIN_WIDTH))
}

/// `[1, 3, 48, width]` zero-padded on the right to `[1, 3, 48, padded]`.
fn pad_right(t: &Tensor, width: u32, padded: u32) -> Result<Tensor, HookError> {
    let values = t.to_f32()?;
    let (width, padded) = (width as usize, padded as usize);
    let mut out = vec![0.0f32; 3 * HEIGHT as usize * padded];
    for (row, src) in values.data().chunks_exact(width).enumerate() {
        out[row * padded..row * padded + width].copy_from_slice(src);
    }
    Tensor::new(&t.name, &[1, 3, HEIGHT as usize, padded], &out)
}

hook_sdk::export_pre_hook!(pre_hook);
