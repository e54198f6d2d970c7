//! Post-hook for token-classification (NER) transformers such as a BERT
//! fine-tuned with BIO tags (`B-PER`, `I-PER`, `O`, …): the model's
//! per-token logits become `labels` spans on the config's `<Text>`, with
//! character offsets in the original text.
//!
//! The host's built-in pre-hook tokenizes the task's text with the model's
//! own `tokenizer.json` and passes the text and its token offsets on as the
//! carry, so this model needs no pre-hook. Label names come from the
//! model's `config.json` (`id2label`).

use hook_sdk::entities::{self, window_scores};
use hook_sdk::text::TokenizedText;
use hook_sdk::{Context, HookError, Outputs, Prediction};

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
    let target = ctx.label_config()?.labels_for_text()?;
    let tokenized = TokenizedText::from_context(ctx)?;
    let logits = out.first_of(&["logits"])?.to_f32()?;
    let scores = window_scores(&tokenized.windows, &logits)?;
    let found = entities::entities(&scores, &ctx.class_names()?)?;
    let regions = entities::regions(&found, &target, &tokenized.text);
    Ok(Prediction::new(regions).with_mean_region_score())
}

hook_sdk::export_post_hook!(post_hook);
