"""Post-hook for token-classification (NER) transformers such as a BERT
fine-tuned with BIO tags (``B-PER``, ``I-PER``, ``O``, ...): the model's
per-token logits become ``labels`` spans on the config's ``<Text>``, with
character offsets in the original text.

The Python twin of ``../ner-post`` (same logic, same JSON). The host's
built-in pre-hook tokenizes the task's text with the model's own
``tokenizer.json`` (overlapping windows when the backend's ``params`` set
``stride``) and passes the text and its token offsets on as the carry, so
this model needs no pre-hook. Label names come from the model's
``config.json`` (``id2label``).
"""

from cls_hooks import Prediction, entities, export_post_hook
from cls_hooks.text import TokenizedText


@export_post_hook
def post_hook(outputs, ctx):
    target = ctx.label_config().labels_for_text()
    tokenized = TokenizedText.from_context(ctx)
    logits = outputs.first_of(["logits"]).to_f32()
    scores = entities.window_scores(tokenized.windows, logits)
    found = entities.entities(scores, ctx.class_names())
    regions = entities.regions(found, target, tokenized.text)
    return Prediction(regions).with_mean_region_score()
