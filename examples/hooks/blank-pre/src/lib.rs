//! A starting point for an image model none of the other templates fits:
//! the task's image, upright, resized to the model's input size, scaled to
//! 0–1, RGB, NCHW. Change what your model's training code does differently
//! (see the TODOs); `ctx.model_inputs()` says what the model declares.

use hook_sdk::{Context, Datapoints, Filter, HookError, ImageSize, PreOutput, TensorOptions};

/// The size used when the model's input height and width are dynamic.
const DEFAULT_SIZE: u32 = 224;

fn pre_hook(data: &Datapoints, ctx: &Context) -> Result<PreOutput, HookError> {
    let input = ctx.first_input()?;
    // TODO: a model with dynamic dims usually wants one particular size;
    // set `params.size` or change DEFAULT_SIZE.
    let size = ctx.param_or("size", DEFAULT_SIZE)?;
    let ImageSize { width, height } = input.nchw_size().unwrap_or(ImageSize {
        width: size,
        height: size,
    });
    // TODO: keep the aspect ratio (`letterbox`) or crop (`center_crop`) if
    // the model was trained that way.
    let image = data
        .image(ctx)?
        .decode_image()?
        .resize(width, height, Filter::Bilinear)?;
    // TODO: mean/std (`with_normalization`), BGR (`with_channels`) or NHWC
    // (`with_layout`) if the training code used them.
    let options = TensorOptions::new(&input.name);
    // The transform lets the post-hook map model coordinates back.
    PreOutput::from_image(&image, &options)
}

hook_sdk::export_pre_hook!(pre_hook);
