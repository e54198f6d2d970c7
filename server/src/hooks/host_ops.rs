//! The host side of the WIT `ops` interface: whole-tensor kernels a hook
//! asks the host to run (softmax, top-k, NMS, CTC decoding, regions, brush
//! RLE), so an interpreted hook does not loop over model outputs itself.
//!
//! Each op is the Rust SDK's own function compiled natively, so a hook
//! gets the numbers its Rust twin computes in-guest. Ops are governed like
//! the image helpers: what a call would allocate is checked against the
//! hook's memory limit before it starts, work that cannot finish before the
//! deadline is refused, and the work runs on [`crate::compute::pool`] and
//! traps at the deadline.

use std::convert::identity;
use std::time::Duration;

use hook_sdk::boxes::{BBox, Nms, multiclass_nms_indices};
use hook_sdk::contours::Mask;

use super::bindings::ops::{
    self, BoxFormat, CtcAlphabet, Detection, NmsOptions, Ranked, Region, RegionOptions,
    Transcription,
};
use super::bindings::types::{ElementType, Tensor, TensorData};
use super::convert::tensor_to_wit;
use super::host::{HostState, on_pool};
use crate::tensor::{self as host_tensor, element_count};

/// What an op returns: a trap (the deadline) or the hook's `result<_, string>`.
type OpResult<T> = wasmtime::Result<Result<T, String>>;

/// NMS candidates considered per class at most: the pairwise suppression
/// is quadratic in them.
pub const MAX_NMS_CANDIDATES: u32 = 10_000;

/// Elements per second assumed when refusing work that cannot finish in
/// time: far above what these loops reach, so only hopeless calls are
/// refused up front (the deadline stops the rest).
const ELEMENTS_PER_SECOND: f64 = 1e9;

/// A tensor's values as `f32`, with its shape.
struct Values {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Values {
    fn read(t: &Tensor) -> Result<Self, String> {
        let shape = t
            .shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("dimension {d} is too large")))
            .collect::<Result<Vec<_>, _>>()?;
        let TensorData::Bytes(bytes) = &t.data else {
            return Err(format!(
                "`{}` is a string tensor; this op needs numbers",
                t.name
            ));
        };
        let data = decode(t.element_type, bytes).ok_or_else(|| {
            format!(
                "`{}` is {:?}; this op needs numbers",
                t.name, t.element_type
            )
        })?;
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if count != Some(data.len()) {
            return Err(format!(
                "`{}` has shape {:?} but {} elements",
                t.name,
                t.shape,
                data.len()
            ));
        }
        Ok(Self { shape, data })
    }

    /// The shape without leading dimensions of 1 (a batch of one).
    fn squeezed(&self) -> &[usize] {
        let first = self
            .shape
            .iter()
            .position(|&d| d != 1)
            .unwrap_or(self.shape.len());
        &self.shape[first..]
    }

    /// `(outer, len, inner)`: the tensor as `outer × len × inner` around `axis`.
    fn around(&self, axis: i32) -> Result<(usize, usize, usize), String> {
        let rank = self.shape.len();
        let resolved = if axis < 0 {
            rank.checked_sub(axis.unsigned_abs() as usize)
        } else {
            Some(axis as usize).filter(|&a| a < rank)
        };
        let Some(axis) = resolved else {
            return Err(format!("axis {axis} is outside a tensor of rank {rank}"));
        };
        let product = |dims: &[usize]| dims.iter().product::<usize>();
        Ok((
            product(&self.shape[..axis]),
            self.shape[axis],
            product(&self.shape[axis + 1..]),
        ))
    }

    /// Calls `f` with every row along `axis` (gathered into one buffer), in
    /// row-major order of the other axes, and the index of its first element
    /// (the next is `inner` further on).
    fn for_each_row(&self, axis: i32, mut f: impl FnMut(&[f32], usize)) -> Result<(), String> {
        let (outer, len, inner) = self.around(axis)?;
        let mut row = Vec::with_capacity(len);
        for o in 0..outer {
            for i in 0..inner {
                let start = o * len * inner + i;
                row.clear();
                row.extend((0..len).map(|k| self.data[start + k * inner]));
                f(&row, start);
            }
        }
        Ok(())
    }
}

fn decode(element_type: ElementType, bytes: &[u8]) -> Option<Vec<f32>> {
    fn each<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut buf = [0u8; N];
                buf.copy_from_slice(c);
                f(buf)
            })
            .collect()
    }
    Some(match element_type {
        ElementType::F32 => each::<4>(bytes, f32::from_le_bytes),
        ElementType::F64 => each::<8>(bytes, |b| f64::from_le_bytes(b) as f32),
        ElementType::I64 => each::<8>(bytes, |b| i64::from_le_bytes(b) as f32),
        ElementType::I32 => each::<4>(bytes, |b| i32::from_le_bytes(b) as f32),
        ElementType::U8 | ElementType::Bool => bytes.iter().map(|&b| f32::from(b)).collect(),
        ElementType::I8 => bytes.iter().map(|&b| f32::from(b as i8)).collect(),
        ElementType::String | ElementType::Unsupported => return None,
    })
}

fn f32_tensor(name: String, shape: Vec<u64>, values: &[f32]) -> Result<Tensor, String> {
    host_tensor::Tensor::from_f32(name, shape, values)
        .map(tensor_to_wit)
        .map_err(|e| e.to_string())
}

/// Applies `f` to every row along `axis`, writing the results in place.
fn map_rows(t: Tensor, axis: i32, f: fn(&[f32]) -> Vec<f32>) -> Result<Tensor, String> {
    let values = Values::read(&t)?;
    let (_, _, inner) = values.around(axis)?;
    let mut out = vec![0.0f32; values.data.len()];
    values.for_each_row(axis, |row, start| {
        for (k, v) in f(row).into_iter().enumerate() {
            out[start + k * inner] = v;
        }
    })?;
    f32_tensor(t.name, t.shape, &out)
}

fn top_k(t: &Tensor, axis: i32, k: u32) -> Result<Vec<Vec<Ranked>>, String> {
    let values = Values::read(t)?;
    let mut rows = Vec::new();
    values.for_each_row(axis, |row, _| {
        rows.push(
            hook_sdk::ops::top_k(row, k as usize)
                .into_iter()
                .map(|(index, value)| Ranked {
                    index: index as u32,
                    value,
                })
                .collect(),
        );
    })?;
    Ok(rows)
}

fn to_bbox(format: BoxFormat, b: &[f32]) -> BBox {
    match format {
        BoxFormat::Xyxy => BBox::from_xyxy(b[0], b[1], b[2], b[3]),
        BoxFormat::Xywh => BBox::from_xywh(b[0], b[1], b[2], b[3]),
        BoxFormat::Cxcywh => BBox::from_cxcywh(b[0], b[1], b[2], b[3]),
    }
}

fn nms(boxes: &Tensor, scores: &Tensor, options: NmsOptions) -> Result<Vec<Detection>, String> {
    let (box_values, score_values) = (Values::read(boxes)?, Values::read(scores)?);
    let n = match box_values.squeezed() {
        [n, 4] => *n,
        [4] => 1,
        _ => {
            return Err(format!(
                "boxes must be [n, 4]; `{}` is {:?}",
                boxes.name, boxes.shape
            ));
        }
    };
    let classes = match score_values.squeezed() {
        [] if n == 1 => 1,
        [m] if *m == n => 1,
        [m, c] if *m == n => *c,
        [c] if n == 1 => *c,
        _ => {
            return Err(format!(
                "scores must be [{n}] or [{n}, classes] for {n} boxes; `{}` is {:?}",
                scores.name, scores.shape
            ));
        }
    };
    let bboxes: Vec<BBox> = box_values
        .data
        .chunks_exact(4)
        .map(|b| to_bbox(options.format, b))
        .collect();
    let settings = Nms {
        iou_threshold: options.iou_threshold,
        max_candidates: candidate_cap(options.max_candidates) as usize,
        max_keep: options.max_keep as usize,
    };
    let kept = multiclass_nms_indices(
        &bboxes,
        &score_values.data,
        classes,
        options.score_threshold,
        &settings,
    );
    Ok(kept
        .into_iter()
        .map(|(index, class)| {
            let b = bboxes[index];
            Detection {
                index: index as u32,
                class: class as u32,
                score: score_values.data[index * classes + class],
                x1: b.x1,
                y1: b.y1,
                x2: b.x2,
                y2: b.y2,
            }
        })
        .collect())
}

fn candidate_cap(asked: u32) -> u32 {
    if asked == 0 {
        MAX_NMS_CANDIDATES
    } else {
        asked.min(MAX_NMS_CANDIDATES)
    }
}

fn ctc_greedy_decode(
    probs: &Tensor,
    alphabet: CtcAlphabet,
    blank: u32,
) -> Result<Vec<Transcription>, String> {
    let alphabet = match alphabet {
        CtcAlphabet::Classes(classes) => classes,
        CtcAlphabet::PaddleDictionary(dictionary) => hook_sdk::ctc::paddle_alphabet(&dictionary),
    };
    let values = Values::read(probs)?;
    let (lines, classes) = match values.shape.as_slice() {
        [_, classes] => (1, *classes),
        [lines, _, classes] => (*lines, *classes),
        _ => {
            return Err(format!(
                "probabilities must be [steps, classes] or [lines, steps, classes]; `{}` is {:?}",
                probs.name, probs.shape
            ));
        }
    };
    if blank as usize >= classes {
        return Err(format!("blank {blank} is not one of the {classes} classes"));
    }
    let per_line = values.data.len() / lines.max(1);
    values
        .data
        .chunks(per_line.max(1))
        .take(lines)
        .map(|line| {
            hook_sdk::ctc::greedy_decode(line, classes, &alphabet, blank as usize)
                .map(|t| Transcription {
                    text: t.text,
                    score: t.score,
                })
                .map_err(|e| e.message().to_string())
        })
        .collect()
}

fn plane(values: &Values, name: &str) -> Result<(usize, usize), String> {
    match values.squeezed() {
        [height, width] => Ok((*width, *height)),
        [width] => Ok((*width, 1)),
        [] => Ok((1, 1)),
        _ => Err(format!(
            "a map must be [height, width] (leading dimensions of 1 allowed); `{name}` is {:?}",
            values.shape
        )),
    }
}

fn mask_of(values: &Values, name: &str, threshold: f32) -> Result<Mask, String> {
    let (width, height) = plane(values, name)?;
    Mask::from_threshold(&values.data, width, height, threshold)
        .map_err(|e| e.message().to_string())
}

fn regions(t: &Tensor, options: RegionOptions) -> Result<Vec<Region>, String> {
    let values = Values::read(t)?;
    let mut mask = mask_of(&values, &t.name, options.threshold)?;
    if options.dilate_width > 1 || options.dilate_height > 1 {
        mask = mask.dilate(
            options.dilate_width.max(1) as usize,
            options.dilate_height.max(1) as usize,
        );
    }
    let width = mask.width();
    Ok(mask
        .blobs()
        .into_iter()
        .filter(|blob| blob.pixels.len() >= options.min_pixels as usize)
        .map(|blob| {
            let outline = if options.epsilon > 0.0 {
                hook_sdk::polygon::simplify(&blob.contour, f64::from(options.epsilon))
            } else {
                blob.contour.clone()
            };
            Region {
                outline: outline.iter().map(|p| (p.x as f32, p.y as f32)).collect(),
                pixels: blob.pixels.len() as u32,
                mean: blob.mean(&values.data),
                bbox: pixel_bounds(&blob.pixels, width),
            }
        })
        .collect())
}

fn pixel_bounds(pixels: &[usize], width: usize) -> (u32, u32, u32, u32) {
    let width = width.max(1);
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for &i in pixels {
        let (x, y) = (i % width, i / width);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    if pixels.is_empty() {
        return (0, 0, 0, 0);
    }
    (
        x0 as u32,
        y0 as u32,
        (x1 - x0 + 1) as u32,
        (y1 - y0 + 1) as u32,
    )
}

fn brush_rle(t: &Tensor, threshold: f32) -> Result<Vec<u8>, String> {
    let values = Values::read(t)?;
    let mask = mask_of(&values, &t.name, threshold)?;
    Ok(hook_sdk::rle::encode_mask(&mask))
}

/// Elements of `t`; past `u64` (a hostile shape) as many as can be, so the
/// op is refused as too large.
fn elements(t: &Tensor) -> u64 {
    element_count(&t.shape).unwrap_or(u64::MAX)
}

fn time_for(elements: u64) -> Duration {
    Duration::from_secs_f64(elements as f64 / ELEMENTS_PER_SECOND)
}

impl HostState {
    /// Admits an op that allocates about `bytes_per_element` per element of
    /// `work_elements` and runs it on the compute pool until the deadline.
    async fn op<T, F>(
        &mut self,
        name: &str,
        elements: u64,
        bytes_per_element: u64,
        work: Duration,
        job: F,
    ) -> OpResult<T>
    where
        F: FnOnce() -> Result<T, String> + Send + 'static,
        T: Send + 'static,
    {
        let needed = elements.saturating_mul(bytes_per_element);
        let what = format!("{name} over {elements} elements");
        if let Err(refused) = self.admit(&what, needed, work, identity::<String>)? {
            return Ok(Err(refused));
        }
        on_pool(self.deadline, job).await
    }
}

impl ops::Host for HostState {
    async fn softmax(&mut self, t: Tensor, axis: i32) -> OpResult<Tensor> {
        let n = elements(&t);
        self.op("softmax", n, 16, time_for(n), move || {
            map_rows(t, axis, hook_sdk::ops::softmax)
        })
        .await
    }

    async fn sigmoid(&mut self, t: Tensor) -> OpResult<Tensor> {
        let n = elements(&t);
        self.op("sigmoid", n, 12, time_for(n), move || {
            let values = Values::read(&t)?;
            let out: Vec<f32> = values
                .data
                .iter()
                .map(|&v| hook_sdk::ops::sigmoid(v))
                .collect();
            f32_tensor(t.name, t.shape, &out)
        })
        .await
    }

    async fn top_k(&mut self, t: Tensor, axis: i32, k: u32) -> OpResult<Vec<Vec<Ranked>>> {
        let n = elements(&t);
        // Each element may be kept (index and value) besides its f32 copy.
        self.op("top-k", n, 20, time_for(n), move || top_k(&t, axis, k))
            .await
    }

    async fn nms(
        &mut self,
        boxes: Tensor,
        scores: Tensor,
        options: NmsOptions,
    ) -> OpResult<Vec<Detection>> {
        let n = elements(&boxes).saturating_add(elements(&scores));
        let pairs = u64::from(candidate_cap(options.max_candidates))
            .min(n)
            .pow(2);
        self.op("nms", n, 32, time_for(pairs), move || {
            nms(&boxes, &scores, options)
        })
        .await
    }

    async fn ctc_greedy_decode(
        &mut self,
        probs: Tensor,
        alphabet: CtcAlphabet,
        blank: u32,
    ) -> OpResult<Vec<Transcription>> {
        let n = elements(&probs);
        self.op("ctc-greedy-decode", n, 8, time_for(n), move || {
            ctc_greedy_decode(&probs, alphabet, blank)
        })
        .await
    }

    async fn regions(&mut self, values: Tensor, options: RegionOptions) -> OpResult<Vec<Region>> {
        let n = elements(&values);
        // f32 copy, two masks, a label map, pixel indices and outline corners.
        self.op("regions", n, 64, time_for(n.saturating_mul(8)), move || {
            regions(&values, options)
        })
        .await
    }

    async fn brush_rle(&mut self, values: Tensor, threshold: f32) -> OpResult<Vec<u8>> {
        let n = elements(&values);
        self.op("brush-rle", n, 16, time_for(n), move || {
            brush_rle(&values, threshold)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
