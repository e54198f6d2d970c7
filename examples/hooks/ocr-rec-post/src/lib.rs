//! Post-hook for PaddleOCR text recognizers: greedy CTC decoding of the
//! `[1, steps, classes]` probabilities with the dictionary from the model's
//! `character` metadata (blank at 0, a space last), as rapidocr's
//! `CTCLabelDecode` does; the line becomes a `textarea` result on the
//! config's `<Image>`, scored with the mean probability of its characters.
//!
//! Decodes in the hook (`hook_sdk::ctc`); its Python twin
//! `../ocr-rec-post-py` asks the host (`native.ctc_greedy_decode`), which
//! runs the same function.

use hook_sdk::ctc::{greedy_decode, paddle_alphabet};
use hook_sdk::labelconfig::ObjectKind;
use hook_sdk::{Context, HookError, Outputs, Prediction, Region, ops};

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
    let target = ctx.label_config()?.textarea_for(&ObjectKind::Image)?;
    let dictionary = ctx.metadata("character").ok_or_else(|| {
        HookError::bad_config("the recognizer has no `character` metadata (its dictionary)")
    })?;
    let alphabet = paddle_alphabet(dictionary);
    let probs = out.only()?.to_f32()?;
    let classes = probs.shape().last().copied().unwrap_or(0);
    let line = greedy_decode(probs.data(), classes, &alphabet, 0)?;
    let score = ops::widen(line.score);
    let region = Region::textarea(target, [line.text]).with_score(score);
    Ok(Prediction::new(vec![region]).with_score(score))
}

hook_sdk::export_post_hook!(post_hook);
