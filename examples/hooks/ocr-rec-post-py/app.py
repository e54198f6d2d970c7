"""Post-hook for PaddleOCR text recognizers (``ch_PP-OCRv4_rec_infer.onnx``):
greedy CTC decoding of the ``[1, steps, classes]`` probabilities with the
dictionary from the model's ``character`` metadata (blank at 0, a space
last), as rapidocr's ``CTCLabelDecode`` does; the line becomes a
``textarea`` result on the config's ``<Image>``.

The Python twin of ``../ocr-rec-post`` (same JSON). The decoding runs in
the host (:func:`cls_hooks.native.ctc_greedy_decode`): 6,625 classes at
each of dozens of steps would take tens of milliseconds in the interpreter.
"""

from cls_hooks import BadConfig, Prediction, Region, export_post_hook, native, ops


@export_post_hook
def post_hook(outputs, ctx):
    target = ctx.label_config().textarea_for("Image")
    dictionary = ctx.metadata("character")
    if dictionary is None:
        raise BadConfig("the recognizer has no `character` metadata (its dictionary)")
    line = native.ctc_greedy_decode(outputs.only(), paddle_dictionary=dictionary)[0]
    score = ops.widen(line.score)
    return Prediction([Region.textarea(target, [line.text]).with_score(score)], score=score)
