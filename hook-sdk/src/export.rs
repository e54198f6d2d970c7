//! The entry macros, [`export_pre_hook!`](crate::export_pre_hook) and
//! [`export_post_hook!`](crate::export_post_hook), and what a post-hook may
//! return ([`PostOutput`]). The macros implement the generated `Guest` trait
//! of the world with a call to the author's plain function and export it.

use crate::bindings::pre::PreOutput;
use crate::bindings::pre::cls::hooks::types::{
    Context as WitContext, Datapoint, HookError as WitHookError, Tensor,
};
use crate::context::{Context, Datapoints};
use crate::error::HookError;
use crate::results::{Prediction, RegionIds};
use crate::tensor::Outputs;

/// What a post-hook function may return: predictions (serialised with
/// region ids and the backend's model version filled in) or raw JSON text.
pub trait PostOutput {
    /// The JSON text handed to the host.
    fn into_json(self, ctx: &Context) -> Result<String, HookError>;
}

impl PostOutput for Vec<Prediction> {
    fn into_json(self, ctx: &Context) -> Result<String, HookError> {
        let mut ids = RegionIds::new(ctx.task_id());
        let list: Vec<serde_json::Value> = self
            .iter()
            .map(|p| p.to_json(&mut ids, ctx.model_version()))
            .collect();
        Ok(serde_json::to_string(&list)?)
    }
}

impl PostOutput for Prediction {
    fn into_json(self, ctx: &Context) -> Result<String, HookError> {
        vec![self].into_json(ctx)
    }
}

impl PostOutput for serde_json::Value {
    fn into_json(self, _ctx: &Context) -> Result<String, HookError> {
        Ok(serde_json::to_string(&self)?)
    }
}

/// Prediction JSON the hook wrote itself, passed to the host unchanged (the
/// host still validates it against the labeling config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(pub String);

impl PostOutput for RawJson {
    fn into_json(self, _ctx: &Context) -> Result<String, HookError> {
        Ok(self.0)
    }
}

/// Runs a pre-hook function; called by [`export_pre_hook!`](crate::export_pre_hook).
#[doc(hidden)]
pub fn run_pre_hook(
    datapoints: Vec<Datapoint>,
    ctx: WitContext,
    hook: impl FnOnce(&Datapoints, &Context) -> Result<PreOutput, HookError>,
) -> Result<PreOutput, WitHookError> {
    hook(&Datapoints::new(datapoints), &Context::new(ctx)).map_err(Into::into)
}

/// Runs a post-hook function; called by [`export_post_hook!`](crate::export_post_hook).
#[doc(hidden)]
pub fn run_post_hook<T: PostOutput>(
    outputs: Vec<Tensor>,
    ctx: WitContext,
    hook: impl FnOnce(&Outputs, &Context) -> Result<T, HookError>,
) -> Result<String, WitHookError> {
    let ctx = Context::new(ctx);
    hook(&Outputs::new(outputs), &ctx)
        .and_then(|out| out.into_json(&ctx))
        .map_err(Into::into)
}

/// Exports `fn(&Datapoints, &Context) -> Result<PreOutput, HookError>` as
/// the component's `pre-hook`.
///
/// ```no_run
/// use hook_sdk::{Context, Datapoints, HookError, PreOutput, Tensor};
///
/// fn pre_hook(data: &Datapoints, ctx: &Context) -> Result<PreOutput, HookError> {
///     let text = data.text(ctx)?.text()?;
///     Ok(PreOutput::new(vec![Tensor::from_strings("text", &[1, 1], vec![text.to_owned()])?]))
/// }
/// hook_sdk::export_pre_hook!(pre_hook);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_pre_hook {
    ($hook:path) => {
        const _: () = {
            struct HookSdkPreHook;
            impl $crate::bindings::pre::Guest for HookSdkPreHook {
                fn pre_hook(
                    datapoints: ::std::vec::Vec<$crate::bindings::pre::cls::hooks::types::Datapoint>,
                    ctx: $crate::bindings::pre::cls::hooks::types::Context,
                ) -> ::std::result::Result<$crate::PreOutput, $crate::bindings::pre::cls::hooks::types::HookError> {
                    $crate::export::run_pre_hook(datapoints, ctx, $hook)
                }
            }
            $crate::bindings::pre::__export_pre_hook_world!(HookSdkPreHook with_types_in $crate::bindings::pre);
        };
    };
}

/// Exports `fn(&Outputs, &Context) -> Result<T, HookError>` as the
/// component's `post-hook`, where `T` is a [`PostOutput`]: usually one
/// [`Prediction`] (or a `Vec` of them).
///
/// ```no_run
/// use hook_sdk::{Context, HookError, Outputs, Prediction};
///
/// fn post_hook(_out: &Outputs, _ctx: &Context) -> Result<Prediction, HookError> {
///     Ok(Prediction::empty())
/// }
/// hook_sdk::export_post_hook!(post_hook);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_post_hook {
    ($hook:path) => {
        const _: () = {
            struct HookSdkPostHook;
            impl $crate::bindings::post::Guest for HookSdkPostHook {
                fn post_hook(
                    outputs: ::std::vec::Vec<$crate::Tensor>,
                    ctx: $crate::bindings::pre::cls::hooks::types::Context,
                ) -> ::std::result::Result<::std::string::String, $crate::bindings::pre::cls::hooks::types::HookError> {
                    $crate::export::run_post_hook(outputs, ctx, $hook)
                }
            }
            $crate::bindings::post::__export_post_hook_world!(HookSdkPostHook with_types_in $crate::bindings::post);
        };
    };
}
