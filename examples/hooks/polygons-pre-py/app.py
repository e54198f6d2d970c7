"""Pre-hook for ``ch_PP-OCRv4_det_infer.onnx`` (DBNet text detection).

The Python twin of ``../polygons-pre`` (the same tensor), following
rapidocr-onnxruntime 1.4.4's defaults: the image is brought to sides that
are multiples of 32, with the long side at most 2000 and the short side at
least 736 (very flat images get black bars above and below first), then
scaled to 0–1 and normalised with mean = std = 0.5, NCHW, BGR channel order.
"""

import math

from cls_hooks import PreOutput, export_pre_hook, tensor_options

#: rapidocr's ``Global.max_side_len``: larger images are shrunk first.
MAX_SIDE = 2000
#: rapidocr's ``Global.min_side_len``: tinier images are grown first.
MIN_SIDE = 30
#: rapidocr's ``Det.limit_side_len`` with ``limit_type: min``.
DET_MIN_SIDE = 736
#: rapidocr's ``Global.min_height``: images this flat get letterboxed.
MIN_HEIGHT = 30.0
#: rapidocr's ``Global.width_height_ratio``: images wider than this get letterboxed.
WIDTH_HEIGHT_RATIO = 8.0


def _to_32(side):
    # Python's int() truncates, round() rounds half to even, as rapidocr's code does.
    return max(round(math.trunc(side) / 32.0) * 32.0, 32.0)


def model_size(width, height):
    """The ``(width, height)`` rapidocr feeds the detector for a
    ``width × height`` image, and whether it pads the image with bars above
    and below to get there."""
    w, h = float(width), float(height)
    if max(w, h) > MAX_SIDE:
        ratio = MAX_SIDE / max(w, h)
        w, h = _to_32(w * ratio), _to_32(h * ratio)
    if min(w, h) < MIN_SIDE:
        ratio = MIN_SIDE / min(w, h)
        w, h = _to_32(w * ratio), _to_32(h * ratio)
    letterbox = h <= MIN_HEIGHT or w / h > WIDTH_HEIGHT_RATIO
    if letterbox:
        padded = abs(max(math.trunc(w / WIDTH_HEIGHT_RATIO), MIN_HEIGHT) * 2.0 - h)
        h += math.trunc(padded / 2.0) * 2.0
    ratio = DET_MIN_SIDE / min(w, h) if min(w, h) < DET_MIN_SIDE else 1.0
    return (int(_to_32(w * ratio)), int(_to_32(h * ratio))), letterbox


@export_pre_hook
def pre_hook(data, ctx):
    image = data.image(ctx).decode_image()
    (width, height), letterbox = model_size(image.width, image.height)
    if letterbox:
        image = image.letterbox(width, height, 0)
    else:
        image = image.resize(width, height, "bilinear")
    options = tensor_options(ctx.first_input().name, channels="bgr", mean=(0.5,) * 3, std=(0.5,) * 3)
    return PreOutput.from_image(image, options)
