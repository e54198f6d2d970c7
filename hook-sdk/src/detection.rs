//! Decoding anchor-free detection heads with Distribution Focal Loss box
//! regression (GFL, PicoDet, NanoDet): per feature level a score map
//! `[anchors, classes]` and a box map `[anchors, 4 × bins]`, where each box
//! side is a distribution over `bins` distances in units of the stride.
//!
//! ```
//! use hook_sdk::detection::{GflHead, GflLevel};
//! use hook_sdk::Nms;
//!
//! // A 16×16 input, one level at stride 16: a single anchor centred at (8, 8).
//! let head = GflHead { input_width: 16, input_height: 16, num_classes: 1, bins: 2, top_k_per_level: 0 };
//! let scores = [0.9];
//! // Each side: all mass on bin 1, i.e. 1 × stride = 16 px from the centre.
//! let sides = [-50.0, 50.0, -50.0, 50.0, -50.0, 50.0, -50.0, 50.0];
//! let candidates = head.decode(&[GflLevel { scores: &scores, distributions: &sides, stride: 16 }])?;
//! let found = candidates.nms(0.5, &Nms::new(0.5));
//! assert_eq!(found.len(), 1);
//! assert!((found[0].bbox.x1 + 8.0).abs() < 1e-3 && (found[0].bbox.x2 - 24.0).abs() < 1e-3);
//! # Ok::<(), hook_sdk::HookError>(())
//! ```

use crate::boxes::{BBox, Detection, Nms, multiclass_nms};
use crate::error::HookError;
use crate::ops::softmax;
use crate::tensor::{Array, Outputs};

/// Expected value of a DFL side distribution: softmax over the bins, then
/// `Σ i·pᵢ`, in units of the stride.
///
/// ```
/// let d = hook_sdk::detection::dfl_expectation(&[0.0, 0.0, 0.0, 0.0]);
/// assert!((d - 1.5).abs() < 1e-6); // uniform over 0..=3
/// ```
pub fn dfl_expectation(logits: &[f32]) -> f32 {
    softmax(logits)
        .iter()
        .enumerate()
        .map(|(i, p)| i as f32 * p)
        .sum()
}

/// One feature level of the head's output, for a single image.
#[derive(Debug, Clone, Copy)]
pub struct GflLevel<'a> {
    /// Class scores, `[anchors, num_classes]`, already sigmoid-activated.
    pub scores: &'a [f32],
    /// Side distributions, `[anchors, 4 × bins]`, sides in the order left,
    /// top, right, bottom.
    pub distributions: &'a [f32],
    /// Pixels of model input per anchor step.
    pub stride: u32,
}

/// Shape of a GFL-style head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GflHead {
    /// Model input width in pixels.
    pub input_width: u32,
    /// Model input height in pixels.
    pub input_height: u32,
    /// Number of classes in each score row.
    pub num_classes: usize,
    /// Bins per side (`reg_max + 1`; 8 for PicoDet).
    pub bins: usize,
    /// Per level, only this many anchors with the highest class score are
    /// decoded; 0 = all. (PicoDet's reference post-processing uses 1000.)
    pub top_k_per_level: usize,
}

/// Decoded boxes (model pixels) with their per-class scores.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Candidates {
    /// One box per candidate.
    pub boxes: Vec<BBox>,
    /// `num_classes` scores per candidate, row-major.
    pub scores: Vec<f32>,
    /// Scores per candidate.
    pub num_classes: usize,
}

impl Candidates {
    /// Per-class thresholding and NMS, see [`multiclass_nms`].
    pub fn nms(&self, score_threshold: f32, nms: &Nms) -> Vec<Detection> {
        multiclass_nms(
            &self.boxes,
            &self.scores,
            self.num_classes,
            score_threshold,
            nms,
        )
    }
}

impl GflHead {
    /// Anchor rows and columns at `stride`: the input size divided by the
    /// stride, rounded up (an 800×608 input has 13×10 anchors at stride 64).
    pub fn grid(&self, stride: u32) -> (usize, usize) {
        let s = stride.max(1);
        (
            self.input_height.div_ceil(s) as usize,
            self.input_width.div_ceil(s) as usize,
        )
    }

    /// The power-of-two stride (4–256) whose grid has `anchors` anchors, to
    /// match output tensors to levels without relying on their names.
    ///
    /// ```
    /// use hook_sdk::detection::GflHead;
    /// let head = GflHead { input_width: 608, input_height: 800, num_classes: 10, bins: 8, top_k_per_level: 1000 };
    /// assert_eq!([7600, 1900, 475, 130].map(|n| head.stride_for(n)), [Some(8), Some(16), Some(32), Some(64)]);
    /// ```
    pub fn stride_for(&self, anchors: usize) -> Option<u32> {
        (2..=8).map(|p| 1u32 << p).find(|&s| {
            let (rows, cols) = self.grid(s);
            rows * cols == anchors
        })
    }

    /// Decodes a head's raw model outputs for one image: score maps
    /// `[1, anchors, num_classes]` and box maps `[1, anchors, 4 × bins]`,
    /// whatever their names and order, paired by anchor count, each level's
    /// stride found with [`GflHead::stride_for`].
    pub fn decode_outputs(&self, outputs: &Outputs) -> Result<Candidates, HookError> {
        let box_width = 4 * self.bins;
        if self.num_classes == box_width {
            return Err(HookError::bad_config(
                "score and box maps have the same width; cannot tell them apart",
            ));
        }
        let width = |t: &crate::Tensor| t.dims().last().copied();
        let anchors = |t: &crate::Tensor| t.dims().iter().rev().nth(1).copied().unwrap_or(0);
        let mut arrays: Vec<(Array<f32>, Array<f32>, u32)> = Vec::new();
        for scores in outputs
            .iter()
            .filter(|t| width(t) == Some(self.num_classes))
        {
            let n = anchors(scores);
            let boxes = outputs
                .iter()
                .find(|t| width(t) == Some(box_width) && anchors(t) == n)
                .ok_or_else(|| {
                    HookError::bad_config(format_args!(
                        "no [1, {n}, {box_width}] box map for score map '{}'",
                        scores.name
                    ))
                })?;
            let stride = self.stride_for(n).ok_or_else(|| {
                HookError::bad_config(format_args!(
                    "'{}': {n} anchors fit no stride of a {}×{} input",
                    scores.name, self.input_width, self.input_height
                ))
            })?;
            arrays.push((scores.to_f32()?, boxes.to_f32()?, stride));
        }
        if arrays.is_empty() {
            return Err(HookError::bad_config(format_args!(
                "no output is a [1, anchors, {}] score map (outputs: {})",
                self.num_classes,
                outputs.names().collect::<Vec<_>>().join(", ")
            )));
        }
        let levels: Vec<GflLevel<'_>> = arrays
            .iter()
            .map(|(s, b, stride)| GflLevel {
                scores: s.data(),
                distributions: b.data(),
                stride: *stride,
            })
            .collect();
        self.decode(&levels)
    }

    /// Decodes every level into boxes in model pixels, keeping each
    /// anchor's scores for all classes.
    pub fn decode(&self, levels: &[GflLevel<'_>]) -> Result<Candidates, HookError> {
        let side = self.bins;
        let per_anchor = 4 * side;
        let mut out = Candidates {
            num_classes: self.num_classes,
            ..Candidates::default()
        };
        if self.num_classes == 0 || side == 0 {
            return Err(HookError::bad_config(
                "detection head needs at least one class and one bin",
            ));
        }
        for level in levels {
            let (rows, cols) = self.grid(level.stride);
            let anchors = rows * cols;
            if level.scores.len() != anchors * self.num_classes
                || level.distributions.len() != anchors * per_anchor
            {
                return Err(HookError::bad_config(format_args!(
                    "stride {} expects {anchors} anchors × {} classes and × {per_anchor} box bins, \
                     got {} scores and {} box values",
                    level.stride,
                    self.num_classes,
                    level.scores.len(),
                    level.distributions.len()
                )));
            }
            let best: Vec<f32> = level
                .scores
                .chunks_exact(self.num_classes)
                .map(|row| row.iter().copied().fold(f32::NEG_INFINITY, f32::max))
                .collect();
            let mut order: Vec<usize> = (0..anchors).collect();
            order.sort_by(|&a, &b| best[b].total_cmp(&best[a]));
            if self.top_k_per_level > 0 {
                order.truncate(self.top_k_per_level);
            }
            let stride = level.stride as f32;
            for a in order {
                let (row, col) = (a / cols, a % cols);
                let cx = (col as f32 + 0.5) * stride;
                let cy = (row as f32 + 0.5) * stride;
                let dist = &level.distributions[a * per_anchor..(a + 1) * per_anchor];
                let d: Vec<f32> = dist
                    .chunks_exact(side)
                    .map(|bins| dfl_expectation(bins) * stride)
                    .collect();
                out.boxes
                    .push(BBox::from_xyxy(cx - d[0], cy - d[1], cx + d[2], cy + d[3]));
                out.scores.extend_from_slice(
                    &level.scores[a * self.num_classes..(a + 1) * self.num_classes],
                );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits putting (almost) all mass on bin `k` of `bins`.
    fn peak(k: usize, bins: usize) -> Vec<f32> {
        (0..bins).map(|i| if i == k { 30.0 } else { 0.0 }).collect()
    }

    #[test]
    fn dfl_expectation_of_a_peak_is_its_bin() {
        assert!((dfl_expectation(&peak(5, 8)) - 5.0).abs() < 1e-4);
        // Two equal peaks average.
        let mut two = vec![0.0; 8];
        two[2] = 30.0;
        two[4] = 30.0;
        assert!((dfl_expectation(&two) - 3.0).abs() < 1e-4);
    }

    #[test]
    fn anchors_are_laid_out_row_major_from_the_top_left() {
        // 32×16 input, stride 8: 2 rows × 4 cols. Anchor 6 = row 1, col 2, centre (20, 12).
        let head = GflHead {
            input_width: 32,
            input_height: 16,
            num_classes: 2,
            bins: 8,
            top_k_per_level: 0,
        };
        let mut scores = vec![0.0; 8 * 2];
        scores[6 * 2 + 1] = 0.9;
        let mut dist = Vec::new();
        for a in 0..8 {
            // left 1, top 2, right 3, bottom 4 (× stride 8) for anchor 6; zero elsewhere.
            for k in if a == 6 { [1, 2, 3, 4] } else { [0, 0, 0, 0] } {
                dist.extend(peak(k, 8));
            }
        }
        let c = head
            .decode(&[GflLevel {
                scores: &scores,
                distributions: &dist,
                stride: 8,
            }])
            .unwrap();
        let d = c.nms(0.5, &Nms::new(0.5));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, 1);
        let b = d[0].bbox;
        for (got, want) in [
            (b.x1, 20.0 - 8.0),
            (b.y1, 12.0 - 16.0),
            (b.x2, 20.0 + 24.0),
            (b.y2, 12.0 + 32.0),
        ] {
            assert!((got - want).abs() < 1e-3, "{b:?}");
        }
    }

    #[test]
    fn top_k_keeps_the_best_anchors_per_level() {
        let head = GflHead {
            input_width: 16,
            input_height: 16,
            num_classes: 1,
            bins: 1,
            top_k_per_level: 2,
        };
        let scores = [0.1, 0.7, 0.3, 0.9];
        let dist = vec![0.0; 4 * 4];
        let c = head
            .decode(&[GflLevel {
                scores: &scores,
                distributions: &dist,
                stride: 8,
            }])
            .unwrap();
        assert_eq!(c.scores, vec![0.9, 0.7]);
        assert_eq!(c.boxes[0].to_cxcywh()[..2], [12.0, 12.0]);
    }

    #[test]
    fn wrong_level_sizes_are_config_errors() {
        let head = GflHead {
            input_width: 16,
            input_height: 16,
            num_classes: 2,
            bins: 8,
            top_k_per_level: 0,
        };
        let err = head
            .decode(&[GflLevel {
                scores: &[0.0; 3],
                distributions: &[],
                stride: 8,
            }])
            .unwrap_err();
        assert!(
            err.to_string().contains("stride 8 expects 4 anchors"),
            "{err}"
        );
    }

    #[test]
    fn raw_outputs_are_paired_by_shape_whatever_their_order() {
        use crate::Tensor;
        // 16×16 input: stride 8 → 4 anchors, stride 16 → 1 anchor; 3 classes, 2 bins.
        let head = GflHead {
            input_width: 16,
            input_height: 16,
            num_classes: 3,
            bins: 2,
            top_k_per_level: 0,
        };
        let mut fine_scores = vec![0.0f32; 4 * 3];
        fine_scores[3 * 3 + 2] = 0.8; // anchor 3 (row 1, col 1), class 2
        let outputs = Outputs::new(vec![
            Tensor::new("b16", &[1, 1, 8], &[0.0f32; 8]).unwrap(),
            Tensor::new("s8", &[1, 4, 3], &fine_scores).unwrap(),
            Tensor::new("s16", &[1, 1, 3], &[0.0f32; 3]).unwrap(),
            Tensor::new("b8", &[1, 4, 8], &[0.0f32; 32]).unwrap(),
        ]);
        let found = head
            .decode_outputs(&outputs)
            .unwrap()
            .nms(0.5, &Nms::new(0.5));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].class, found[0].score), (2, 0.8));
        // Uniform bins: 0.5 × stride 8 from the centre (12, 12).
        assert_eq!(found[0].bbox, BBox::from_xyxy(8.0, 8.0, 16.0, 16.0));

        let missing = Outputs::new(vec![Tensor::new("s8", &[1, 4, 3], &fine_scores).unwrap()]);
        assert!(
            head.decode_outputs(&missing)
                .unwrap_err()
                .to_string()
                .contains("no [1, 4, 8] box map")
        );
        assert!(head.decode_outputs(&Outputs::new(vec![])).is_err());
    }

    #[test]
    fn strides_are_inferred_from_anchor_counts_with_ceiling_division() {
        let head = GflHead {
            input_width: 608,
            input_height: 800,
            num_classes: 10,
            bins: 8,
            top_k_per_level: 0,
        };
        assert_eq!(head.grid(64), (13, 10));
        assert_eq!(head.stride_for(999), None);
    }
}
