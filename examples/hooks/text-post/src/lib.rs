//! Post-hook for text classifiers such as `text_sentiment.onnx` (skl2onnx
//! TF-IDF + logistic regression): the most probable class the labeling
//! config knows becomes a `choices` result on the config's text object.
//!
//! The host's built-in pre-hook feeds the task's text as a string tensor,
//! so this model needs no pre-hook.

use hook_sdk::{Context, HookError, Outputs, Prediction, Region, ops};

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Vec<Prediction>, HookError> {
    let target = ctx.label_config()?.choices_for_text()?;
    let names = ctx.class_names(&["labels", "classes", "names"])?;
    let probabilities = out
        .first_of(&["probabilities", "output_probability"])?
        .to_f32()?;
    let row = probabilities.outer(0).unwrap_or(probabilities.data());

    let Some(region) = Region::top_choice(&target, &names, &ops::as_probabilities(row)) else {
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
