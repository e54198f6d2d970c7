//! One hook call: a fresh `Store` with limits, instantiate from the
//! `InstancePre`, call the export, classify any trap, drop the store, and
//! check what came back (sizes, tensor names, carry) before the rest of the
//! server sees it. Every hook-supplied string in an error is sanitized.

use std::time::Instant;

use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::types as wit;
use super::compile::{Hook, Linked};
use super::convert::{
    Datapoint, DatapointInfo, datapoint_to_wit, info_to_wit, spec_to_wit, tensor_from_wit,
    tensor_to_wit,
};
use super::epoch::Ticking;
use super::host::HostState;
use super::text::{MAX_ERROR_MESSAGE, sanitize};
use super::{CallTag, HookCallError, HookFailure, HookKind, HookLimits, HookRuntime};
use crate::tensor::{Tensor, TensorSpec};

/// Everything a hook may know about the call besides its main input.
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    pub task_json: String,
    pub task_id: Option<i64>,
    pub label_config: String,
    pub model_version: String,
    pub interactive_context: Option<String>,
    pub model_inputs: Vec<TensorSpec>,
    pub model_outputs: Vec<TensorSpec>,
    pub model_metadata: Vec<(String, String)>,
    pub datapoints: Vec<DatapointInfo>,
    pub carry: Option<String>,
    /// The backend's `params` as a JSON object, given to the hook by the
    /// `params` host function rather than in the WIT context record, which
    /// hooks built against 0.1.0 could not read with a field added.
    pub params: crate::backend::HookParams,
    /// The backend's tokenizer (`host.open-tokenizer`), shared, not copied.
    pub tokenizer: crate::model::ModelTokenizer,
}

impl HookContext {
    fn to_wit(&self) -> wit::Context {
        wit::Context {
            task_json: self.task_json.clone(),
            task_id: self.task_id,
            label_config: self.label_config.clone(),
            model_version: self.model_version.clone(),
            interactive_context: self.interactive_context.clone(),
            model_inputs: self.model_inputs.iter().map(spec_to_wit).collect(),
            model_outputs: self.model_outputs.iter().map(spec_to_wit).collect(),
            model_metadata: self.model_metadata.clone(),
            datapoints: self.datapoints.iter().map(info_to_wit).collect(),
            carry: self.carry.clone(),
        }
    }
}

/// What a pre-hook returned for one task.
#[derive(Debug, Clone)]
pub struct PreOutput {
    pub inputs: Vec<Tensor>,
    pub carry: Option<String>,
}

/// Most tensors a pre-hook may return when the model has fewer inputs.
const MIN_TENSOR_LIMIT: usize = 16;
/// Longest tensor name a pre-hook may return.
const MAX_TENSOR_NAME: usize = 256;
/// How much of a hook's stdout/stderr goes into an error message.
const MAX_OUTPUT_IN_ERROR: usize = 2 * 1024;

/// Raised from the epoch callback, or from a host call, when the call's
/// wall-time budget is spent.
#[derive(Debug)]
pub(super) struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hook deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

impl Hook {
    /// Runs a pre-hook on one task's datapoints.
    pub async fn call_pre(
        &self,
        runtime: &HookRuntime,
        datapoints: &[Datapoint],
        ctx: &HookContext,
        limits: &HookLimits,
        backend: &str,
    ) -> Result<PreOutput, HookCallError> {
        let compiled = self.compiled();
        let Linked::Pre(instance_pre) = &compiled.linked else {
            return Err(wrong_kind(self.kind, HookKind::Pre, ctx.task_id));
        };
        let tag = CallTag {
            backend: backend.to_owned(),
            kind: HookKind::Pre,
            task: ctx.task_id,
        };
        let fail = |failure| HookCallError {
            kind: HookKind::Pre,
            task: ctx.task_id,
            failure,
        };
        let _slot = runtime.call_slot().await.map_err(fail)?;
        let mut store = new_store(instance_pre.engine(), tag, limits, ctx);
        let input: Vec<wit::Datapoint> = datapoints.iter().map(datapoint_to_wit).collect();
        let result = async {
            let hook = instance_pre.instantiate_async(&mut store).await?;
            hook.call_pre_hook(&mut store, &input, &ctx.to_wit()).await
        }
        .await;
        store.data().finish_logging();
        let output = match result {
            Ok(Ok(output)) => output,
            Ok(Err(returned)) => return Err(fail(HookFailure::Returned(describe(&returned)))),
            Err(trap) => return Err(fail(classify(&trap, store.data(), limits))),
        };
        let handed_over = store.data_mut().take_inputs();
        let returned = output
            .inputs
            .into_iter()
            .map(tensor_from_wit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                fail(HookFailure::InvalidOutput(sanitize(
                    &e.to_string(),
                    MAX_ERROR_MESSAGE,
                )))
            })?;
        let inputs = merge_inputs(returned, handed_over).map_err(fail)?;
        check_tensor_names(&inputs, ctx.model_inputs.len()).map_err(fail)?;
        // Model inputs are routinely larger than any JSON (a 1920x736 f32
        // image is 17 MB), so they are bounded by the hook's memory limit,
        // which they had to fit in anyway, rather than by max_output.
        let size: usize = inputs.iter().map(Tensor::byte_len).sum();
        if size > limits.memory_bytes {
            return Err(fail(HookFailure::OutputTooLarge {
                what: "model inputs",
                size,
                max: limits.memory_bytes,
                setting: "hook_memory_mb",
            }));
        }
        // The carry waits in memory until the post-hook runs and is copied
        // into it: it is output like any other.
        let carry_len = output.carry.as_ref().map_or(0, String::len);
        if carry_len > limits.max_output_bytes {
            return Err(fail(HookFailure::OutputTooLarge {
                what: "a carry",
                size: carry_len,
                max: limits.max_output_bytes,
                setting: "max_output_mb",
            }));
        }
        Ok(PreOutput {
            inputs,
            carry: output.carry,
        })
    }

    /// Runs a post-hook on one task's model outputs; returns its JSON text.
    pub async fn call_post(
        &self,
        runtime: &HookRuntime,
        outputs: Vec<Tensor>,
        ctx: &HookContext,
        limits: &HookLimits,
        backend: &str,
    ) -> Result<String, HookCallError> {
        let compiled = self.compiled();
        let Linked::Post(instance_pre) = &compiled.linked else {
            return Err(wrong_kind(self.kind, HookKind::Post, ctx.task_id));
        };
        let tag = CallTag {
            backend: backend.to_owned(),
            kind: HookKind::Post,
            task: ctx.task_id,
        };
        let fail = |failure| HookCallError {
            kind: HookKind::Post,
            task: ctx.task_id,
            failure,
        };
        let _slot = runtime.call_slot().await.map_err(fail)?;
        let mut store = new_store(instance_pre.engine(), tag, limits, ctx);
        let input: Vec<wit::Tensor> = outputs.into_iter().map(tensor_to_wit).collect();
        let result = async {
            let hook = instance_pre.instantiate_async(&mut store).await?;
            hook.call_post_hook(&mut store, &input, &ctx.to_wit()).await
        }
        .await;
        store.data().finish_logging();
        let json = match result {
            Ok(Ok(json)) => json,
            Ok(Err(returned)) => return Err(fail(HookFailure::Returned(describe(&returned)))),
            Err(trap) => return Err(fail(classify(&trap, store.data(), limits))),
        };
        if json.len() > limits.max_output_bytes {
            return Err(fail(HookFailure::OutputTooLarge {
                what: "prediction JSON",
                size: json.len(),
                max: limits.max_output_bytes,
                setting: "max_output_mb",
            }));
        }
        Ok(json)
    }
}

/// A call's place among the instances allowed at once, with the epochs
/// advancing for its deadline while it is held.
struct CallSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    _ticking: Ticking<'a>,
}

impl HookRuntime {
    async fn call_slot(&self) -> Result<CallSlot<'_>, HookFailure> {
        let permit = self
            .instances
            .acquire()
            .await
            .map_err(|e| HookFailure::Instantiate(e.to_string()))?;
        Ok(CallSlot {
            _permit: permit,
            _ticking: self.ticker.busy(),
        })
    }
}

fn new_store(
    engine: &wasmtime::Engine,
    tag: CallTag,
    limits: &HookLimits,
    ctx: &HookContext,
) -> Store<HostState> {
    let state = HostState::new(
        tag,
        limits,
        ctx.params.json().clone(),
        ctx.tokenizer.clone(),
    );
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    // The deadline is an `Instant` checked on every epoch tick; between ticks
    // the call yields to tokio, so a spinning guest never blocks a worker.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        if Instant::now() >= ctx.data().deadline {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

fn classify(err: &wasmtime::Error, state: &HostState, limits: &HookLimits) -> HookFailure {
    if err.downcast_ref::<DeadlineExceeded>().is_some() {
        return HookFailure::Deadline(limits.timeout);
    }
    let output = sanitize(state.captured_output().trim(), MAX_OUTPUT_IN_ERROR);
    // Trap messages carry the hook's own function names and panic text.
    let with_output = |message: String| {
        let message = sanitize(&message, MAX_ERROR_MESSAGE - MAX_OUTPUT_IN_ERROR);
        if output.is_empty() {
            message
        } else {
            format!("{message}; hook output: {output}")
        }
    };
    match err.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => return HookFailure::StackOverflow,
        Some(Trap::Interrupt) => return HookFailure::Deadline(limits.timeout),
        // Rust and C guests keep large locals on a shadow stack in linear
        // memory; overflowing it surfaces as an out-of-bounds access.
        Some(Trap::MemoryOutOfBounds) => {
            return HookFailure::Trap(with_output(format!(
                "{}; usually the hook's stack overflowed (deep recursion or large locals)",
                first_line(&format!("{err}"))
            )));
        }
        _ => {}
    }
    let message = format!("{err:#}");
    if message.contains("growing memory") || message.contains("memory allocation") {
        // The chain starts with wasmtime's "error while executing at wasm
        // backtrace:"; the line that says what ran out is the useful one.
        let cause = message
            .lines()
            .map(str::trim)
            .find(|l| l.contains("memory"))
            .map_or_else(|| first_line(&message), str::to_owned);
        return HookFailure::OutOfMemory(with_output(cause));
    }
    HookFailure::Trap(with_output(message))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

/// The hook's own error, on one line and at most [`MAX_ERROR_MESSAGE`] long.
fn describe(err: &wit::HookError) -> String {
    let (prefix, message) = match err {
        wit::HookError::BadInput(m) => ("bad input: ", m),
        wit::HookError::BadConfig(m) => ("bad config: ", m),
        wit::HookError::Failed(m) => ("", m),
    };
    format!("{prefix}{}", sanitize(message, MAX_ERROR_MESSAGE))
}

/// Refuses more tensors than the model could take, and names that are too
/// long or not printable: later checks quote every name in their messages.
/// The inputs a pre-hook returned followed by those it handed over with
/// `image.set-input`; a name handed over twice, or both handed over and
/// returned, is refused (the host would not know which one the model gets).
fn merge_inputs(
    mut returned: Vec<Tensor>,
    handed_over: Vec<Tensor>,
) -> Result<Vec<Tensor>, HookFailure> {
    for tensor in handed_over {
        if returned.iter().any(|t| t.name() == tensor.name()) {
            return Err(HookFailure::InvalidOutput(format!(
                "gave the model input '{}' twice (image.set-input and the returned inputs, \
                 or set-input twice)",
                sanitize(tensor.name(), MAX_TENSOR_NAME)
            )));
        }
        returned.push(tensor);
    }
    Ok(returned)
}

fn check_tensor_names(tensors: &[Tensor], model_inputs: usize) -> Result<(), HookFailure> {
    let limit = model_inputs.max(MIN_TENSOR_LIMIT);
    if tensors.len() > limit {
        return Err(HookFailure::InvalidOutput(format!(
            "returned {} tensors; the model has {model_inputs} inputs (at most {limit} tensors \
             are accepted)",
            tensors.len()
        )));
    }
    for tensor in tensors {
        let printable = sanitize(tensor.name(), MAX_TENSOR_NAME);
        if printable != tensor.name() {
            return Err(HookFailure::InvalidOutput(format!(
                "returned a tensor named '{printable}': tensor names are at most \
                 {MAX_TENSOR_NAME} bytes, without control characters"
            )));
        }
    }
    Ok(())
}

fn wrong_kind(actual: HookKind, wanted: HookKind, task: Option<i64>) -> HookCallError {
    HookCallError {
        kind: actual,
        task,
        failure: HookFailure::InvalidOutput(format!("called as {wanted}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str) -> Tensor {
        Tensor::from_f32(name, vec![1, 1], &[0.5]).expect("tensor")
    }

    fn names(tensors: &[Tensor]) -> Vec<&str> {
        tensors.iter().map(Tensor::name).collect()
    }

    #[test]
    fn inputs_handed_over_follow_the_returned_ones() {
        let merged = merge_inputs(vec![input("ids")], vec![input("x"), input("y")]);
        assert_eq!(names(&merged.expect("merged")), ["ids", "x", "y"]);
    }

    #[test]
    fn an_input_given_twice_is_refused_with_its_name() {
        for (returned, handed_over) in [
            (vec![input("x")], vec![input("x")]),
            (vec![], vec![input("x"), input("x")]),
        ] {
            let Err(HookFailure::InvalidOutput(message)) = merge_inputs(returned, handed_over)
            else {
                panic!("a duplicate input must be refused");
            };
            assert!(message.contains("'x' twice"), "{message}");
        }
    }
}
