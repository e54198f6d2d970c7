"""Write configurable-ls-backend hooks as plain Python functions.

A hook is a WebAssembly component built with componentize-py against
``wit/hooks.wit``; this package mirrors the Rust ``hook-sdk``::

    from cls_hooks import Prediction, export_post_hook, ops

    @export_post_hook
    def post_hook(outputs, ctx):
        target = ctx.choices_for_image()                     # from_name/to_name from the project
        names = ctx.class_names()                            # from the model's metadata
        scores = outputs.only().to_f32()
        probabilities = ops.as_probabilities(scores.first_item())
        return Prediction.top_choice(target, names, probabilities)

Modules: :mod:`~cls_hooks.tensor` (``Tensor``, ``Outputs``, building
inputs), :mod:`~cls_hooks.context` (``Context``, ``Datapoints``),
:mod:`~cls_hooks.labelconfig`, :mod:`~cls_hooks.results` (``Region``,
``Prediction``, ``BBox``), :mod:`~cls_hooks.ops`, :mod:`~cls_hooks.image`
(host-side images, ``Transform``), :mod:`~cls_hooks.log`,
:mod:`~cls_hooks.errors`, :mod:`~cls_hooks.export`, :mod:`~cls_hooks.rle`,
:mod:`~cls_hooks.native` (the host's native ops: softmax along an axis,
NMS, CTC decoding, regions, brush RLE), :mod:`~cls_hooks.polygon`
(outlines: simplify, unclip, minimum-area rectangle).
No NumPy: it does not exist for WASI.
"""

from . import entities, log, native, ops, polygon, rle, text
from .context import CLASS_NAME_KEYS, Context, Datapoint, Datapoints, TensorSpec, nchw_size, parse_class_names
from .errors import BadConfig, BadInput, Failed, HookError
from .export import PreOutput, RawJson, export_post_hook, export_pre_hook
from .image import IMAGENET_MEAN, IMAGENET_STD, Image, Transform, imagenet, tensor_options
from .labelconfig import Binding, Control, LabelConfig, Object
from .results import BBox, ImageSize, Prediction, Region, RegionIds, Target
from .tensor import Array, Outputs, Tensor, string_tensor, tensor, tensor_from_bytes

__all__ = [
    "Array", "BBox", "BadConfig", "BadInput", "Binding", "CLASS_NAME_KEYS", "Context", "Control", "Datapoint",
    "Datapoints", "Failed", "entities", "HookError", "IMAGENET_MEAN", "IMAGENET_STD", "Image", "ImageSize",
    "LabelConfig", "Object", "Outputs", "PreOutput", "Prediction", "RawJson", "Region",
    "RegionIds", "Target", "Tensor", "TensorSpec", "Transform", "export_post_hook",
    "export_pre_hook", "imagenet", "log", "native", "nchw_size", "ops", "parse_class_names", "polygon", "rle",
    "string_tensor", "tensor", "tensor_from_bytes", "tensor_options", "text",
]  # fmt: skip
__version__ = "0.1.0"
