"""A starting point for a post-hook: it logs what the model returned
(names, shapes, the first values) and predicts nothing, so ``try`` shows
what there is to turn into Label Studio results. Replace the body with the
decoding your model needs: :class:`cls_hooks.Region` builds every Label
Studio result type, and :mod:`cls_hooks.native` runs the usual decoding
steps (softmax, top-k, NMS, CTC, regions) in the host.

The Python twin of ``../blank-post``.
"""

from cls_hooks import Prediction, export_post_hook, log


@export_post_hook
def post_hook(outputs, ctx):
    # The project's labeling config: pick the control your results are for,
    # e.g. ctx.label_config().choices_for_image().
    ctx.label_config()
    for tensor in outputs:
        first = tensor.to_f32().data[:8] if tensor.dtype != "string" else []
        log.info("output %s %s %s: first values %s", tensor.name, tensor.dtype, tensor.shape, first)
    # TODO: decode the outputs into regions.
    return Prediction([])
