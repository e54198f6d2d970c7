"""Post-hook for sequence-classification transformers (a BERT-like encoder
with a classification head): the logits of the task's text become one
``choices`` result on the config's ``<Text>``.

The Python twin of ``../text-classification-post`` (same logic, same
JSON). Single-label by default: the most probable class the config knows.
With ``params.threshold`` (e.g. ``0.5``) it is multi-label: every class
whose sigmoid probability reaches the threshold, for models trained with
one sigmoid per class. The built-in pre-hook tokenizes the text with the
model's ``tokenizer.json``; label names come from ``config.json``
(``id2label``).
"""

from cls_hooks import Prediction, Region, export_post_hook, ops


@export_post_hook
def post_hook(outputs, ctx):
    target = ctx.label_config().choices_for_text()
    names = ctx.class_names()
    logits = outputs.first_of(["logits"]).to_f32().first_item()
    threshold = ctx.param("threshold", kind=float)
    if threshold is None:
        return Prediction.top_choice(target, names, ops.softmax(logits))
    probabilities = [ops.sigmoid(value) for value in logits]
    chosen = Region.choices_above(target, names, probabilities, threshold)
    return Prediction([chosen] if chosen is not None else []).with_mean_region_score()
