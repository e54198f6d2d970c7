//! Post-hook for sequence-classification transformers (a BERT-like encoder
//! with a classification head): the logits of the task's text become one
//! `choices` result on the config's `<Text>`.
//!
//! Single-label by default: the most probable class the config knows.
//! With `params.threshold` (e.g. `0.5`) it is multi-label: every class
//! whose sigmoid probability reaches the threshold, for models trained
//! with one sigmoid per class. The built-in pre-hook tokenizes the text
//! with the model's `tokenizer.json`; label names come from `config.json`
//! (`id2label`).

use hook_sdk::{Context, HookError, Outputs, Prediction, Region, ops};

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
    let target = ctx.label_config()?.choices_for_text()?;
    let names = ctx.class_names()?;
    let logits = out.first_of(&["logits"])?.to_f32()?;
    let logits = logits.first_item();
    match ctx.param::<f32>("threshold")? {
        None => Ok(Prediction::top_choice(
            &target,
            &names,
            &ops::softmax(logits),
        )),
        Some(threshold) => {
            let probabilities: Vec<f32> = logits.iter().map(|&l| ops::sigmoid(l)).collect();
            let chosen = Region::choices_above(&target, &names, &probabilities, threshold);
            Ok(Prediction::new(chosen.into_iter().collect()).with_mean_region_score())
        }
    }
}

hook_sdk::export_post_hook!(post_hook);
