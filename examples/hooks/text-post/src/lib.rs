//! Post-hook for text classifiers such as `text_sentiment.onnx` (skl2onnx
//! TF-IDF + logistic regression): the most probable class the labeling
//! config knows becomes a `choices` result on the config's text object.
//!
//! The host's built-in pre-hook feeds the task's text as a string tensor,
//! so this model needs no pre-hook.

use hook_sdk::{Context, HookError, Outputs, Prediction, ops};

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
    let target = ctx.label_config()?.choices_for_text()?;
    let names = ctx.class_names()?;
    let scores = out
        .first_of(&["probabilities", "output_probability"])?
        .to_f32()?;
    let probabilities = ops::as_probabilities(scores.first_item());
    Ok(Prediction::top_choice(&target, &names, &probabilities))
}

hook_sdk::export_post_hook!(post_hook);
