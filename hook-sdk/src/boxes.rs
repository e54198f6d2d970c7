//! Axis-aligned boxes: conversions between the layouts models use
//! (`xyxy`, `xywh`, `cxcywh`), mapping model pixels back to the original
//! image, Label Studio percentages, and non-maximum suppression.

use crate::bindings::pre::cls::hooks::types::ImageTransform;
use crate::image::ImageSize;

/// A box by its corners, in pixels (model or original, the caller knows which).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BBox {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
}

/// A rectangle as Label Studio stores it: top-left corner and size, in
/// percent (0–100) of the original image's width and height.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PercentRect {
    /// Left edge, percent of the width.
    pub x: f64,
    /// Top edge, percent of the height.
    pub y: f64,
    /// Width, percent of the width.
    pub width: f64,
    /// Height, percent of the height.
    pub height: f64,
}

impl BBox {
    /// From corners `(x1, y1, x2, y2)`.
    pub fn from_xyxy(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// From top-left corner and size.
    pub fn from_xywh(x: f32, y: f32, width: f32, height: f32) -> Self {
        Self {
            x1: x,
            y1: y,
            x2: x + width,
            y2: y + height,
        }
    }

    /// From centre and size (YOLO's layout).
    ///
    /// ```
    /// use hook_sdk::BBox;
    /// let b = BBox::from_cxcywh(50.0, 40.0, 20.0, 10.0);
    /// assert_eq!(b, BBox::from_xyxy(40.0, 35.0, 60.0, 45.0));
    /// assert_eq!(b.to_xywh(), [40.0, 35.0, 20.0, 10.0]);
    /// assert_eq!(b.to_cxcywh(), [50.0, 40.0, 20.0, 10.0]);
    /// ```
    pub fn from_cxcywh(cx: f32, cy: f32, width: f32, height: f32) -> Self {
        Self::from_xywh(cx - width / 2.0, cy - height / 2.0, width, height)
    }

    /// `[x, y, width, height]`.
    pub fn to_xywh(&self) -> [f32; 4] {
        [self.x1, self.y1, self.width(), self.height()]
    }

    /// `[cx, cy, width, height]`.
    pub fn to_cxcywh(&self) -> [f32; 4] {
        [
            (self.x1 + self.x2) / 2.0,
            (self.y1 + self.y2) / 2.0,
            self.width(),
            self.height(),
        ]
    }

    /// Width (negative for an inverted box).
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    /// Height (negative for an inverted box).
    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    /// Area; 0 for empty or inverted boxes.
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// Intersection over union. A tiny constant (1e-5, as in PaddleDetection
    /// and rapid-layout) keeps two empty boxes from dividing by zero.
    pub fn iou(&self, other: &BBox) -> f32 {
        let inter = BBox {
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
            x2: self.x2.min(other.x2),
            y2: self.y2.min(other.y2),
        }
        .area();
        inter / (self.area() + other.area() - inter + 1e-5)
    }

    /// The box clipped to `0..=width`, `0..=height`.
    pub fn clip(&self, width: f32, height: f32) -> Self {
        Self {
            x1: self.x1.clamp(0.0, width),
            y1: self.y1.clamp(0.0, height),
            x2: self.x2.clamp(0.0, width),
            y2: self.y2.clamp(0.0, height),
        }
    }

    /// Maps a box in model pixels to original-image pixels, clipped to the
    /// original image.
    pub fn to_original(&self, transform: &ImageTransform) -> Self {
        let (x1, y1) = transform.to_original(self.x1, self.y1);
        let (x2, y2) = transform.to_original(self.x2, self.y2);
        Self { x1, y1, x2, y2 }.clip(
            transform.original_width as f32,
            transform.original_height as f32,
        )
    }

    /// The box (in original pixels) as Label Studio percentages, clipped to
    /// the image.
    ///
    /// ```
    /// use hook_sdk::{BBox, ImageSize};
    /// let r = BBox::from_xywh(64.0, 48.0, 320.0, 240.0).to_percent(ImageSize { width: 640, height: 480 });
    /// assert_eq!((r.x, r.y, r.width, r.height), (10.0, 10.0, 50.0, 50.0));
    /// ```
    pub fn to_percent(&self, size: ImageSize) -> PercentRect {
        let (w, h) = (f64::from(size.width.max(1)), f64::from(size.height.max(1)));
        let x1 = (f64::from(self.x1) / w * 100.0).clamp(0.0, 100.0);
        let y1 = (f64::from(self.y1) / h * 100.0).clamp(0.0, 100.0);
        let x2 = (f64::from(self.x2) / w * 100.0).clamp(x1, 100.0);
        let y2 = (f64::from(self.y2) / h * 100.0).clamp(y1, 100.0);
        PercentRect {
            x: x1,
            y: y1,
            width: x2 - x1,
            height: y2 - y1,
        }
    }
}

/// Hard non-maximum suppression settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nms {
    /// Boxes overlapping a kept box by more than this IoU are dropped.
    pub iou_threshold: f32,
    /// Only the this many highest-scoring boxes are considered; 0 = all.
    pub max_candidates: usize,
    /// At most this many boxes are kept; 0 = all.
    pub max_keep: usize,
}

impl Nms {
    /// Every box considered and kept unless suppressed.
    pub fn new(iou_threshold: f32) -> Self {
        Self {
            iou_threshold,
            max_candidates: 0,
            max_keep: 0,
        }
    }

    /// Indices of the kept boxes, highest score first. Boxes whose IoU with
    /// a kept box exceeds the threshold are dropped (an IoU equal to it is
    /// kept, as in rapid-layout's `hard_nms`).
    ///
    /// ```
    /// use hook_sdk::{BBox, Nms};
    /// let boxes = [BBox::from_xywh(0.0, 0.0, 10.0, 10.0), BBox::from_xywh(1.0, 1.0, 10.0, 10.0),
    ///              BBox::from_xywh(50.0, 50.0, 10.0, 10.0)];
    /// assert_eq!(Nms::new(0.5).run(&boxes, &[0.8, 0.9, 0.3]), vec![1, 2]);
    /// ```
    pub fn run(&self, boxes: &[BBox], scores: &[f32]) -> Vec<usize> {
        let n = boxes.len().min(scores.len());
        let mut order: Vec<usize> = (0..n).filter(|&i| !scores[i].is_nan()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        if self.max_candidates > 0 {
            order.truncate(self.max_candidates);
        }
        let mut keep = Vec::new();
        let mut suppressed = vec![false; n];
        for (pos, &i) in order.iter().enumerate() {
            if suppressed[i] {
                continue;
            }
            keep.push(i);
            if self.max_keep > 0 && keep.len() == self.max_keep {
                break;
            }
            for &j in &order[pos + 1..] {
                if !suppressed[j] && boxes[i].iou(&boxes[j]) > self.iou_threshold {
                    suppressed[j] = true;
                }
            }
        }
        keep
    }
}

/// A detected object: box, score, class index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// The box (model pixels until mapped back).
    pub bbox: BBox,
    /// Confidence of `class`.
    pub score: f32,
    /// Index into the model's class names.
    pub class: usize,
}

/// Per-class NMS over candidates with one score per class each
/// (`scores[i * num_classes + c]`): for every class, the candidates scoring
/// above `score_threshold` go through `nms`. One box may be kept for several
/// classes. Results are ordered by class, then score.
pub fn multiclass_nms(
    boxes: &[BBox],
    scores: &[f32],
    num_classes: usize,
    score_threshold: f32,
    nms: &Nms,
) -> Vec<Detection> {
    multiclass_nms_indices(boxes, scores, num_classes, score_threshold, nms)
        .into_iter()
        .map(|(index, class)| Detection {
            bbox: boxes[index],
            score: scores[index * num_classes + class],
            class,
        })
        .collect()
}

/// [`multiclass_nms`] as `(box index, class)` pairs, for callers that keep
/// more per box than its corners (masks, keypoints, the row of a tensor).
pub fn multiclass_nms_indices(
    boxes: &[BBox],
    scores: &[f32],
    num_classes: usize,
    score_threshold: f32,
    nms: &Nms,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if num_classes == 0 {
        return out;
    }
    let n = boxes.len().min(scores.len() / num_classes);
    for class in 0..num_classes {
        let picked: Vec<usize> = (0..n)
            .filter(|&i| scores[i * num_classes + class] > score_threshold)
            .collect();
        if picked.is_empty() {
            continue;
        }
        let class_boxes: Vec<BBox> = picked.iter().map(|&i| boxes[i]).collect();
        let class_scores: Vec<f32> = picked
            .iter()
            .map(|&i| scores[i * num_classes + class])
            .collect();
        out.extend(
            nms.run(&class_boxes, &class_scores)
                .into_iter()
                .map(|k| (picked[k], class)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = BBox::from_xywh(0.0, 0.0, 10.0, 10.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox::from_xywh(20.0, 0.0, 10.0, 10.0)), 0.0);
        // Overlap 50 of union 150.
        assert!((a.iou(&BBox::from_xywh(5.0, 0.0, 10.0, 10.0)) - 1.0 / 3.0).abs() < 1e-5);
        assert_eq!(
            BBox::default().iou(&BBox::default()),
            0.0,
            "empty boxes do not divide by zero"
        );
    }

    #[test]
    fn nms_keeps_the_best_of_each_cluster_and_respects_limits() {
        let boxes = [
            BBox::from_xywh(0.0, 0.0, 10.0, 10.0),
            BBox::from_xywh(0.5, 0.5, 10.0, 10.0),
            BBox::from_xywh(30.0, 30.0, 10.0, 10.0),
            BBox::from_xywh(30.5, 30.5, 10.0, 10.0),
        ];
        let scores = [0.9, 0.8, 0.7, 0.95];
        assert_eq!(Nms::new(0.5).run(&boxes, &scores), vec![3, 0]);
        assert_eq!(
            Nms {
                max_keep: 1,
                ..Nms::new(0.5)
            }
            .run(&boxes, &scores),
            vec![3]
        );
        // Only the top 2 are candidates: 3 and 0.
        assert_eq!(
            Nms {
                max_candidates: 2,
                ..Nms::new(0.99)
            }
            .run(&boxes, &scores),
            vec![3, 0]
        );
        assert_eq!(
            Nms::new(1.0).run(&boxes, &scores).len(),
            4,
            "threshold 1 suppresses nothing"
        );
    }

    #[test]
    fn nms_ignores_nan_scores() {
        let boxes = [BBox::from_xywh(0.0, 0.0, 1.0, 1.0); 2];
        assert_eq!(Nms::new(0.5).run(&boxes, &[f32::NAN, 0.1]), vec![1]);
    }

    #[test]
    fn multiclass_nms_runs_per_class() {
        let boxes = [
            BBox::from_xywh(0.0, 0.0, 10.0, 10.0),
            BBox::from_xywh(1.0, 1.0, 10.0, 10.0),
        ];
        // Box 0: class 0 0.9, class 1 0.6; box 1: class 0 0.8, class 1 0.7.
        let scores = [0.9, 0.6, 0.8, 0.7];
        let d = multiclass_nms(&boxes, &scores, 2, 0.5, &Nms::new(0.5));
        assert_eq!(
            d.iter().map(|d| (d.class, d.score)).collect::<Vec<_>>(),
            [(0, 0.9), (1, 0.7)]
        );
        assert!(multiclass_nms(&boxes, &scores, 2, 0.95, &Nms::new(0.5)).is_empty());
    }

    #[test]
    fn to_percent_clips_boxes_hanging_over_the_edge() {
        let size = ImageSize {
            width: 200,
            height: 100,
        };
        let r = BBox::from_xyxy(-10.0, 50.0, 250.0, 120.0).to_percent(size);
        assert_eq!((r.x, r.y, r.width, r.height), (0.0, 50.0, 100.0, 50.0));
    }

    #[test]
    fn model_boxes_map_back_through_a_letterbox() {
        // 400×200 letterboxed into 100×100: scale 0.25, 25 px bars top and bottom.
        let t = ImageTransform {
            original_width: 400,
            original_height: 200,
            target_width: 100,
            target_height: 100,
            scale_x: 0.25,
            scale_y: 0.25,
            pad_x: 0.0,
            pad_y: 25.0,
        };
        let b = BBox::from_xyxy(10.0, 20.0, 60.0, 80.0).to_original(&t);
        assert_eq!(
            b,
            BBox::from_xyxy(40.0, 0.0, 240.0, 200.0),
            "clipped to the image, bars removed"
        );
        let r = b.to_percent(t.original_size());
        assert_eq!((r.x, r.width, r.height), (10.0, 50.0, 100.0));
    }
}
