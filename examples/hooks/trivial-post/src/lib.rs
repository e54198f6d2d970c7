//! The smallest post-hook: one prediction with no regions, whatever the
//! model said. For measuring the host's per-call overhead.

use hook_sdk::{Context, HookError, Outputs, RawJson};

fn post_hook(_out: &Outputs, _ctx: &Context) -> Result<RawJson, HookError> {
    // Written by hand so no serialisation runs; the host adds the model version.
    Ok(RawJson(r#"{"result":[]}"#.to_owned()))
}

hook_sdk::export_post_hook!(post_hook);
