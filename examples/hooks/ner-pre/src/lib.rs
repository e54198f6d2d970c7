//! Pre-hook for token-classification transformers on texts longer than the
//! model's window: the task's text is tokenized by the host with the
//! model's own `tokenizer.json` into overlapping windows (`max_length`
//! tokens each, `stride` tokens shared by neighbours, padded to one
//! length), fed to the model as one batch `[windows, tokens]`, and passed on
//! to [`ner-post`](../ner-post), which merges the windows' entities by word.
//!
//! `params.max_length` (default 256) and `params.stride` (default 64) in
//! the backend's config tune the windows. The built-in pre-hook reads the
//! same params (it cuts windows only when `stride` is set); this hook shows
//! how, for models that need something else.

use hook_sdk::text::{EncodeOptions, TokenizedText, Tokenizer};
use hook_sdk::{Context, Datapoints, HookError, PreOutput};

fn pre_hook(data: &Datapoints, ctx: &Context) -> Result<PreOutput, HookError> {
    let text = data.text(ctx)?.text()?;
    let max_length = ctx.param_or("max_length", 256)?;
    let stride = ctx.param_or("stride", 64)?;
    let options = EncodeOptions::windows(max_length, stride).padded();
    let tokenized = TokenizedText::new(&Tokenizer::open()?, text, &options)?;
    let inputs = tokenized.to_inputs(ctx.model_inputs())?;
    Ok(PreOutput::new(inputs).with_carry(tokenized.to_carry()))
}

hook_sdk::export_pre_hook!(pre_hook);
