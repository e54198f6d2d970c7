"""Post-hook for text classifiers such as ``text_sentiment.onnx`` (skl2onnx
TF-IDF + logistic regression): the most probable class the labeling config
knows becomes a ``choices`` result on the config's text object.

The Python twin of ``../text-post`` (same logic, same JSON). The host's
built-in pre-hook feeds the task's text as a string tensor, so this model
needs no pre-hook.
"""

from cls_hooks import Prediction, export_post_hook, ops


@export_post_hook
def post_hook(outputs, ctx):
    target = ctx.label_config().choices_for_text()
    names = ctx.class_names()
    scores = outputs.first_of(["probabilities", "output_probability"]).to_f32()
    probabilities = ops.as_probabilities(scores.first_item())
    return Prediction.top_choice(target, names, probabilities)
