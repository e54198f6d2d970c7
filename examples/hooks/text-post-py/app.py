"""Post-hook for text classifiers such as ``text_sentiment.onnx`` (skl2onnx
TF-IDF + logistic regression): the most probable class the labeling config
knows becomes a ``choices`` result on the config's text object.

The Python twin of ``../text-post`` (same logic, same JSON). The host's
built-in pre-hook feeds the task's text as a string tensor, so this model
needs no pre-hook.
"""

from cls_hooks import Prediction, Region, export_post_hook, log, ops


@export_post_hook
def post_hook(outputs, ctx):
    target = ctx.label_config().choices_for_text()
    names = ctx.class_names(["labels", "classes", "names"])
    probabilities = outputs.first_of(["probabilities", "output_probability"]).to_f32()
    row = probabilities.outer(0)
    if row is None:
        row = probabilities.data

    region = Region.top_choice(target, names, ops.as_probabilities(row))
    if region is None:
        log.warn("none of the model's classes (%s) is a choice of '%s'", ", ".join(names), target.from_name)
        return [Prediction([])]
    return [Prediction([region]).with_mean_region_score()]
