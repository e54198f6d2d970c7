"""A starting point for an image model none of the other templates fits:
the task's image, upright, resized to the model's input size, scaled to
0–1, RGB, NCHW. Change what your model's training code does differently
(see the TODOs); ``ctx.model_inputs`` says what the model declares.

The Python twin of ``../blank-pre``. The pixels stay in the host: each
image step is one native call, so this costs what the Rust hook costs.
"""

from cls_hooks import PreOutput, export_pre_hook, nchw_size, tensor_options

#: The size used when the model's input height and width are dynamic.
DEFAULT_SIZE = 224


@export_pre_hook
def pre_hook(data, ctx):
    spec = ctx.first_input()
    # TODO: a model with dynamic dims usually wants one particular size;
    # set `params.size` or change DEFAULT_SIZE.
    size = ctx.param("size", DEFAULT_SIZE)
    width, height = nchw_size(spec) or (size, size)
    # TODO: keep the aspect ratio (`letterbox`) or crop (`center_crop`) if
    # the model was trained that way.
    image = data.image(ctx).decode_image().resize(width, height, "bilinear")
    # TODO: mean/std (`mean=`, `std=`), BGR (`channels="bgr"`) or NHWC
    # (`layout="nhwc"`) if the training code used them.
    options = tensor_options(spec.name)
    # The transform lets the post-hook map model coordinates back.
    return PreOutput.from_image(image, options)
