"""Pre-hook for PaddleOCR text recognizers (``ch_PP-OCRv4_rec_infer.onnx``
from the ``rapidocr-onnxruntime`` wheel): one cropped text line in, the
recognizer's ``[1, 3, 48, width]`` input out.

The Python twin of ``../ocr-rec-pre`` (the same tensor): the line is resized
to a height of 48 keeping its aspect ratio (bilinear), scaled to -1–1 in BGR
order, and padded with zeros on the right to at least 320 pixels (the width
the model was trained at). Wider lines keep their width, up to
``params.max_width`` (default 1600); wider ones are squeezed to it.
"""

import math

from cls_hooks import PreOutput, export_pre_hook, tensor_from_bytes, tensor_options

#: The recognizer's input height.
HEIGHT = 48
#: The narrowest input: rapidocr's ``rec_img_shape`` width.
MIN_WIDTH = 320
#: The widest input unless ``params.max_width`` says otherwise.
MAX_WIDTH = 1600


@export_pre_hook
def pre_hook(data, ctx):
    max_width = max(ctx.param("max_width", MAX_WIDTH), MIN_WIDTH)
    line = data.image(ctx).decode_image()
    width, padded = line_widths(line.width, line.height, max_width)
    options = tensor_options(ctx.first_input().name, channels="bgr", mean=(0.5,), std=(0.5,))
    resized = line.resize(width, HEIGHT, "bilinear").to_tensor(options)
    return PreOutput([pad_right(resized, width, padded)])


def line_widths(width, height, max_width):
    """The resized line's width and the padded input width."""
    resized = min(max(math.ceil(HEIGHT * (width / max(height, 1))), 1), max_width)
    return resized, max(resized, MIN_WIDTH)


def pad_right(t, width, padded):
    """``[1, 3, 48, width]`` zero-padded on the right to ``[1, 3, 48, padded]``,
    row by row on the f32 bytes (no per-value Python work)."""
    data = t.raw.data.value
    row, pad = width * 4, bytes((padded - width) * 4)
    rows = (data[i : i + row] + pad for i in range(0, len(data), row))
    return tensor_from_bytes(t.name, [1, 3, HEIGHT, padded], b"".join(rows), "f32")
