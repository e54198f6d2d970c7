//! How much memory one task of a backend may need, and how many tasks of a
//! request run at once (a *wave*) so that a request of any length streams
//! through a bounded amount of memory.
//!
//! The estimate is made from what the backend declares before any task is
//! seen: the model's input and output shapes, the hooks' output cap, the
//! built-in pre-hook's largest image side and its token windows. It is an
//! upper bound for fixed shapes and a cap for dynamic ones (a hook cannot
//! return more than `max_output_mb`; the built-in pre-hook never exceeds
//! [`MAX_DYNAMIC_SIDE`](super::builtin_pre::MAX_DYNAMIC_SIDE), nor the
//! windows and tokens of [`token_bound`](super::builtin_pre::token_bound)).

use crate::backend::Backend;
use crate::tensor::TensorSpec;

/// Tasks in flight per wave at least, when memory allows: enough to fill a
/// batch and keep every core busy with fetches and hooks.
const MIN_WAVE_TASKS: usize = 32;

/// Estimated bytes one wave may hold when its tasks are large, though never
/// fewer tasks than the caller's floor (a request runs its waves one after
/// the other, so a smaller wave would leave cores idle). A wave holds its
/// tasks' inputs and outputs: PP-OCRv4's detector (64 MiB estimated per
/// task, ~13 MiB real) went from 32-task waves to 4-task waves, peak RSS
/// 1.7 → 1.0 GiB.
const WAVE_BYTES: u64 = 128 << 20;

/// Bytes a string element is assumed to take (text inputs are small; the
/// task JSON is counted separately).
const STRING_ELEMENT_BYTES: u64 = 4 << 10;

/// Fixed allowance per task for everything that is not a tensor: the task's
/// JSON and hook context, fetched bytes kept until the pre-hook ran, the
/// post-hook's JSON.
const TASK_OVERHEAD_BYTES: u64 = 256 << 10;

/// Upper bound of the memory one task holds while in flight: its input
/// tensors twice (the task's own and its share of the stacked batch), its
/// output tensors twice (the batch's and the task's split), and
/// [`TASK_OVERHEAD_BYTES`] plus the label config the hook context copies.
pub fn task_bytes(backend: &Backend, label_config_len: usize) -> u64 {
    let dims = Dims::of(backend);
    let inputs = tensors_bytes(backend, backend.model.inputs(), dims.inputs);
    let outputs = tensors_bytes(backend, backend.model.outputs(), dims.outputs);
    inputs
        .saturating_mul(2)
        .saturating_add(outputs.saturating_mul(2))
        .saturating_add(TASK_OVERHEAD_BYTES)
        .saturating_add(label_config_len as u64)
}

/// Upper bound of one task's model inputs.
pub fn input_bytes(backend: &Backend) -> u64 {
    tensors_bytes(backend, backend.model.inputs(), Dims::of(backend).inputs)
}

/// Upper bound of one task's tensors of these specs, each at most the hook
/// output cap.
fn tensors_bytes(backend: &Backend, specs: &[TensorSpec], bound: Bound) -> u64 {
    let cap = backend.limits.max_output_bytes as u64;
    specs
        .iter()
        .map(|s| spec_bytes(s, bound).min(cap))
        .fold(0, u64::saturating_add)
}

/// What one task's dynamic dimensions are at most: `batch` for dimension
/// 0, `side` for the others (`None`: unknown, bounded only by the hook
/// output cap the caller applies).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound {
    batch: u64,
    side: Option<u64>,
}

/// The bounds of a backend's inputs and outputs.
struct Dims {
    inputs: Bound,
    outputs: Bound,
}

impl Dims {
    fn of(backend: &Backend) -> Self {
        let unknown = Bound {
            batch: 1,
            side: None,
        };
        if backend.pre_hook.is_some() {
            return Self {
                inputs: unknown,
                outputs: unknown,
            };
        }
        let token_bound = super::builtin_pre::token_bound(
            backend.model.inputs(),
            backend.text_windows,
            &backend.tokenizer,
        );
        match token_bound {
            // The built-in pre-hook feeds at most this many windows of this
            // many tokens. A token model's dynamic output dimensions follow
            // its inputs' (logits `[windows, tokens, labels]` or
            // `[windows, labels]`), so they take the same bounds.
            Some((windows, tokens)) => {
                let bound = Bound {
                    batch: u64::from(windows),
                    side: Some(u64::from(tokens)),
                };
                Self {
                    inputs: bound,
                    outputs: bound,
                }
            }
            None => Self {
                inputs: Bound {
                    batch: 1,
                    side: Some(u64::from(super::builtin_pre::MAX_DYNAMIC_SIDE)),
                },
                outputs: unknown,
            },
        }
    }
}

/// Bytes of one task's tensor of this spec, dynamic dimensions at their
/// `bound` (saturating where unknown).
fn spec_bytes(spec: &TensorSpec, bound: Bound) -> u64 {
    let width = spec
        .element_type
        .and_then(|t| t.byte_width())
        .map_or(STRING_ELEMENT_BYTES, |w| w as u64);
    spec.shape
        .iter()
        .enumerate()
        .map(|(i, &d)| match (d, i, bound.side) {
            (d, _, _) if d > 0 => d as u64,
            (_, 0, _) => bound.batch,
            (_, _, Some(side)) => side,
            (_, _, None) => u64::MAX,
        })
        .fold(width, u64::saturating_mul)
}

/// Tasks per wave: as many as fit one request's memory share and
/// [`WAVE_BYTES`] (or `floor`), at least one, at most what keeps batches
/// full and cores busy.
pub fn wave_len(task_bytes: u64, request_share: u64, batch_size: usize, floor: usize) -> usize {
    let per = |bytes: u64| usize::try_from(bytes / task_bytes.max(1)).unwrap_or(usize::MAX);
    let fits = per(request_share).min(per(WAVE_BYTES).max(floor));
    let wanted = batch_size.max(MIN_WAVE_TASKS);
    // Whole batches per wave when more than one fits, so no batch is split.
    let len = fits.min(wanted).max(1);
    if len > batch_size {
        len - len % batch_size
    } else {
        len
    }
}

/// What a full wave counts in a backend's wave slots.
pub const WAVE_UNITS: u32 = 64;

/// The share of a full wave that a wave of `tasks` takes, in
/// [`WAVE_UNITS`]: at least one unit, at most a full wave.
pub fn wave_units(tasks: usize, wave_len: usize) -> u32 {
    let units = (tasks as u64)
        .saturating_mul(u64::from(WAVE_UNITS))
        .div_ceil(wave_len.max(1) as u64);
    u32::try_from(units)
        .unwrap_or(WAVE_UNITS)
        .clamp(1, WAVE_UNITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::ElementType;

    fn side(side: Option<u64>) -> Bound {
        Bound { batch: 1, side }
    }

    fn spec(shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            element_type: Some(ElementType::F32),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn fixed_shapes_count_exactly_and_the_batch_dimension_as_one() {
        assert_eq!(
            spec_bytes(&spec(&[-1, 3, 224, 224]), side(None)),
            3 * 224 * 224 * 4
        );
        assert_eq!(spec_bytes(&spec(&[1, 1000]), side(None)), 4000);
    }

    #[test]
    fn dynamic_image_sides_take_the_builtin_cap_or_saturate() {
        assert_eq!(
            spec_bytes(&spec(&[-1, 3, -1, -1]), side(Some(1024))),
            3 * 1024 * 1024 * 4
        );
        assert_eq!(spec_bytes(&spec(&[-1, 3, -1, -1]), side(None)), u64::MAX);
    }

    #[test]
    fn token_windows_bound_the_batch_and_sequence_dimensions() {
        let windows = Bound {
            batch: 64,
            side: Some(128),
        };
        // NER logits [windows, tokens, 7 labels].
        assert_eq!(spec_bytes(&spec(&[-1, -1, 7]), windows), 64 * 128 * 7 * 4);
        assert_eq!(spec_bytes(&spec(&[-1, 3]), windows), 64 * 3 * 4);
    }

    #[test]
    fn absurd_declared_dims_saturate_instead_of_wrapping() {
        assert_eq!(
            spec_bytes(&spec(&[1, 1 << 40, 1 << 40]), side(None)),
            u64::MAX
        );
    }

    #[test]
    fn waves_hold_whole_batches_and_shrink_to_fit_the_share() {
        assert_eq!(wave_len(1 << 20, 1 << 30, 16, 2), 32);
        assert_eq!(wave_len(1 << 20, 20 << 20, 16, 2), 16);
        assert_eq!(wave_len(1 << 20, 10 << 20, 16, 2), 10);
        assert_eq!(wave_len(u64::MAX, 1 << 30, 16, 2), 1);
        assert_eq!(wave_len(1 << 10, 1 << 30, 64, 2), 64);
    }

    #[test]
    fn waves_of_large_tasks_stay_small_but_fill_the_cores() {
        assert_eq!(wave_len(40 << 20, 1 << 30, 16, 2), 3);
        assert_eq!(wave_len(15 << 20, 1 << 30, 16, 2), 8);
        assert_eq!(wave_len(200 << 20, 1 << 30, 16, 2), 2);
        assert_eq!(wave_len(200 << 20, 1 << 30, 16, 4), 4);
        // The request's share still wins.
        assert_eq!(wave_len(200 << 20, 300 << 20, 16, 4), 1);
    }

    #[test]
    fn a_wave_takes_its_share_of_a_full_wave() {
        assert_eq!(wave_units(32, 32), WAVE_UNITS);
        assert_eq!(wave_units(16, 32), WAVE_UNITS / 2);
        assert_eq!(wave_units(1, 32), 2);
        assert_eq!(wave_units(1, 3), 22);
        assert_eq!(wave_units(0, 32), 1);
        assert_eq!(wave_units(usize::MAX, 1), WAVE_UNITS);
    }
}
