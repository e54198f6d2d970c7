"""Pre-hook for token-classification transformers on texts longer than the
model's window: the task's text is tokenized by the host with the model's
own ``tokenizer.json`` into overlapping windows (``max_length`` tokens each,
``stride`` tokens shared by neighbours, padded to one length), fed to the
model as one batch ``[windows, tokens]``, and passed on to the post-hook
(``../ner-post-py``), which merges the windows' entities by word.

The Python twin of ``../ner-pre``. ``params.max_length`` (default 256) and
``params.stride`` (default 64) in the backend's config tune the windows.
"""

from cls_hooks import PreOutput, export_pre_hook
from cls_hooks.text import TokenizedText, Tokenizer, sliding


@export_pre_hook
def pre_hook(data, ctx):
    text = data.text(ctx).text()
    options = sliding(ctx.param("max_length", 256), ctx.param("stride", 64), pad=True)
    tokenized = TokenizedText.new(Tokenizer.open(), text, options)
    return PreOutput(tokenized.to_inputs(ctx.model_inputs), carry=tokenized.to_carry())
