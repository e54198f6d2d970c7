"""Post-hook for ``ch_PP-OCRv4_det_infer.onnx`` and other DBNet text
detectors: the probability map ``[1, 1, H, W]`` becomes ``polygonlabels``
outlining each text region, in percent of the original image.

The Python twin of ``../polygons-post`` (same steps, same JSON), following
PaddleOCR's DB post-processing in polygon mode with rapidocr 1.4.4's
settings: threshold 0.3, 2×2 dilation, contours simplified to 0.2 % of their
length, regions scoring under 0.5 dropped, the rest grown by
``area × 1.6 / perimeter`` ("unclip"). The per-pixel work (threshold,
dilation, tracing, mean score) runs in the host (``native.regions``); only
the outlines, tens of points each, are handled in Python.
"""

from cls_hooks import BadConfig, Prediction, Region, export_post_hook, log, native, ops, polygon

#: Pixel probability that counts as text (``thresh``).
PIXEL_THRESHOLD = 0.3
#: Mean probability a region needs (``box_thresh``).
REGION_THRESHOLD = ops.f32(0.5)
#: How far regions are grown, relative to area / perimeter (``unclip_ratio``).
UNCLIP_RATIO = 1.6
#: Simplification tolerance, relative to the contour length.
SIMPLIFY = 0.002
#: Regions whose grown outline is thinner than this (pixels) are noise (``min_size + 2``).
MIN_SIDE = 5.0
#: At most this many regions per image (``max_candidates``).
MAX_REGIONS = 1000
#: The label used when the config has no label named like it (and exactly one label).
MODEL_LABEL = "text"


@export_post_hook
def post_hook(outputs, ctx):
    target = ctx.label_config().polygon_labels_for_image()
    # The model has no class names: take "text", or the config's only label.
    labels = target.labels()
    label = target.resolve_label(MODEL_LABEL) or (labels[0] if len(labels) == 1 else None)
    if label is None:
        log.warn("'%s' has no label '%s' and more than one label; nothing to predict", target.from_name, MODEL_LABEL)
        return Prediction.empty()
    transform = ctx.image_transform()

    prob = outputs.only()
    if len(prob.shape) < 2:
        raise BadConfig("expected a [1, 1, H, W] map, got %s" % prob.shape)
    found = native.regions(prob, PIXEL_THRESHOLD, dilate=(2, 2))

    size = transform.original_size
    regions = []
    for blob in found[:MAX_REGIONS]:
        contour = [(float(x), float(y)) for x, y in blob.outline]
        outline = polygon.simplify(contour, SIMPLIFY * polygon.perimeter(contour))
        if blob.mean < REGION_THRESHOLD or len(outline) < 4:
            continue
        grown = polygon.unclip(outline, UNCLIP_RATIO)
        if polygon.min_area_rect(grown)[1] < MIN_SIDE:
            continue
        points = [to_original(transform, x, y) for x, y in grown]
        regions.append(Region.polygon_labels(target, points, size, [label]).with_score(ops.widen(blob.mean)))
    return Prediction(regions).with_mean_region_score()


def to_original(transform, x, y):
    """A point in model pixels mapped to original pixels (through ``f32``, as
    the Rust SDK's ``Point::to_original``), clipped to the image."""
    ox, oy = transform.to_original(ops.f32(x), ops.f32(y))
    return (min(max(ox, 0.0), float(transform.original_width)), min(max(oy, 0.0), float(transform.original_height)))
