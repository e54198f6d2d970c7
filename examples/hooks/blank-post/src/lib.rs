//! A starting point for a post-hook: it logs what the model returned
//! (names, shapes, the first values) and predicts nothing, so `try` shows
//! what there is to turn into Label Studio results. Replace the body with
//! the decoding your model needs; `hook_sdk::results::Region` builds every
//! Label Studio result type, and `hook_sdk::ops`, `boxes`, `contours` and
//! `ctc` the usual decoding steps.

use hook_sdk::{Context, HookError, Outputs, Prediction, info};

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
    // The project's labeling config: pick the control your results are for,
    // e.g. `ctx.label_config()?.choices_for_image()?`.
    let _config = ctx.label_config()?;
    for tensor in out.iter() {
        let first: Vec<f32> = match tensor.to_f32() {
            Ok(values) => values.data().iter().take(8).copied().collect(),
            Err(_) => Vec::new(),
        };
        info!(
            "output {} {:?} {:?}: first values {first:?}",
            tensor.name,
            tensor.element_type,
            tensor.dims()
        );
    }
    // TODO: decode the outputs into regions.
    Ok(Prediction::new(Vec::new()))
}

hook_sdk::export_post_hook!(post_hook);
