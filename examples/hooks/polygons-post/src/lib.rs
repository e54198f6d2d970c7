//! Post-hook for `ch_PP-OCRv4_det_infer.onnx` and other DBNet text
//! detectors: the probability map `[1, 1, H, W]` becomes `polygonlabels`
//! outlining each text region, in percent of the original image.
//!
//! Follows PaddleOCR's DB post-processing in polygon mode with rapidocr
//! 1.4.4's settings: threshold 0.3, 2×2 dilation, contours simplified to
//! 0.2 % of their length, regions scoring under 0.5 dropped, the rest
//! grown by `area × 1.6 / perimeter` ("unclip").

use hook_sdk::contours::Mask;
use hook_sdk::polygon::{self, Point};
use hook_sdk::{Context, HookError, Outputs, Prediction, Region, ops};

/// Pixel probability that counts as text (`thresh`).
const PIXEL_THRESHOLD: f32 = 0.3;
/// Mean probability a region needs (`box_thresh`).
const REGION_THRESHOLD: f32 = 0.5;
/// How far regions are grown, relative to area / perimeter (`unclip_ratio`).
const UNCLIP_RATIO: f64 = 1.6;
/// Simplification tolerance, relative to the contour length.
const SIMPLIFY: f64 = 0.002;
/// Regions whose grown outline is thinner than this (pixels) are noise (`min_size + 2`).
const MIN_SIDE: f64 = 5.0;
/// At most this many regions per image (`max_candidates`).
const MAX_REGIONS: usize = 1000;
/// The label used when the config has no label named like it (and exactly one label).
const MODEL_LABEL: &str = "text";

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
    let target = ctx.label_config()?.polygon_labels_for_image()?;
    // The model has no class names: take "text", or the config's only label.
    let single = target.labels().count() == 1;
    let Some(label) = target
        .resolve_label(MODEL_LABEL)
        .or_else(|| target.labels().next().filter(|_| single))
    else {
        hook_sdk::warn!(
            "'{}' has no label '{MODEL_LABEL}' and more than one label; nothing to predict",
            target.from_name()
        );
        return Ok(Prediction::empty());
    };
    let transform = ctx.image_transform()?;

    let map = out.only()?.to_f32()?;
    let &[.., height, width] = map.shape() else {
        return Err(HookError::bad_config(format_args!(
            "expected a [1, 1, H, W] map, got {:?}",
            map.shape()
        )));
    };
    let mask = Mask::from_threshold(map.data(), width, height, PIXEL_THRESHOLD)?.dilate(2, 2);

    let size = transform.original_size();
    let regions = mask
        .blobs()
        .into_iter()
        .take(MAX_REGIONS)
        .filter_map(|blob| {
            let score = blob.mean(map.data());
            let outline =
                polygon::simplify(&blob.contour, SIMPLIFY * polygon::perimeter(&blob.contour));
            if score < REGION_THRESHOLD || outline.len() < 4 {
                return None;
            }
            let grown = polygon::unclip(&outline, UNCLIP_RATIO);
            if polygon::min_area_rect(&grown).1 < MIN_SIDE {
                return None;
            }
            let points: Vec<Point> = grown.iter().map(|p| p.to_original(&transform)).collect();
            Some(
                Region::polygon_labels(target, &points, size, [label])
                    .with_score(ops::widen(score)),
            )
        })
        .collect();
    Ok(Prediction::new(regions).with_mean_region_score())
}

hook_sdk::export_post_hook!(post_hook);
