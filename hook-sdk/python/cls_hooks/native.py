"""The host's native ops: whole-tensor kernels that run in the server, so
a Python hook does not loop over model outputs in the interpreter.

They are the Rust SDK's own functions compiled natively (``hook_sdk::ops``,
``boxes``, ``ctc``, ``contours``, ``rle``): a Python hook calling them gets
exactly the numbers its Rust twin computes. A model output goes to the host
as the bytes it came in (never decoded into Python floats), so the
interpreter does no work per element.

Tensors are :class:`~cls_hooks.tensor.Tensor` objects (or raw WIT tensors)
of any numeric type; an ``axis`` counts from the end when negative, as in
numpy. A failing op raises :class:`~cls_hooks.errors.BadConfig` naming it.

Reading a text line with PaddleOCR's recognizer::

    from cls_hooks import native

    dictionary = ctx.metadata("character")
    line = native.ctc_greedy_decode(outputs.only(), paddle_dictionary=dictionary)[0]
    line.text, line.score
"""

from . import _wit
from .errors import BadConfig
from .tensor import Tensor, to_wit

_BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _call(op, fn, *args):
    return _wit.call(lambda message: BadConfig("%s: %s" % (op, message)), fn, *args)


def softmax(tensor, axis=-1):
    """Softmax along ``axis``: an ``f32`` :class:`Tensor` of the same name and shape."""
    return Tensor(_call("softmax", _wit.ops().softmax, to_wit(tensor), axis))


def sigmoid(tensor):
    """The logistic function of every element, as an ``f32`` :class:`Tensor`."""
    return Tensor(_call("sigmoid", _wit.ops().sigmoid, to_wit(tensor)))


def top_k(tensor, k, axis=-1):
    """The ``k`` largest elements along ``axis`` for every position of the
    other axes (row-major order): a list of ``[(index, value), …]`` lists,
    largest first; ties keep index order, NaNs are skipped."""
    rows = _call("top-k", _wit.ops().top_k, to_wit(tensor), axis, k)
    return [[(r.index, r.value) for r in row] for row in rows]


def argmax(tensor, axis=-1):
    """``(index, value)`` of the largest element along ``axis`` for every
    position of the other axes; ``None`` for a row of NaNs."""
    return [row[0] if row else None for row in top_k(tensor, 1, axis)]


def nms(boxes, scores, iou_threshold, score_threshold=0.0, box_format="xyxy", max_candidates=0, max_keep=0):
    """Hard non-maximum suppression per class. ``boxes`` is ``[n, 4]`` in
    ``box_format`` (``"xyxy"``, ``"xywh"`` or ``"cxcywh"``); ``scores`` is
    ``[n]`` or ``[n, classes]``; only scores above ``score_threshold`` are
    candidates. Returns the kept boxes ordered by class, then score, each
    with ``index`` (its row in ``boxes``), ``class_``, ``score`` and the
    corners ``x1``, ``y1``, ``x2``, ``y2``."""
    if box_format not in _BOX_FORMATS:
        raise BadConfig("nms: box_format %r is not one of %s" % (box_format, ", ".join(_BOX_FORMATS)))
    ops = _wit.ops()
    options = ops.NmsOptions(
        format=getattr(ops.BoxFormat, box_format.upper()),
        iou_threshold=float(iou_threshold),
        score_threshold=float(score_threshold),
        max_candidates=int(max_candidates),
        max_keep=int(max_keep),
    )
    return _call("nms", ops.nms, to_wit(boxes), to_wit(scores), options)


def paddle_alphabet(dictionary):
    """PaddleOCR's alphabet from its dictionary text (one character per
    line, as the recognizer's ``character`` metadata holds it): ``""`` for
    the blank at class 0, the characters, then ``" "``.

    >>> paddle_alphabet("a\\nb\\n")
    ['', 'a', 'b', ' ']
    """
    if dictionary.endswith("\n"):
        dictionary = dictionary[:-1]
    return [""] + [line[:-1] if line.endswith("\r") else line for line in dictionary.split("\n")] + [" "]


def ctc_greedy_decode(probs, alphabet=None, blank=0, paddle_dictionary=None):
    """Greedy CTC decoding of ``[steps, classes]`` or ``[lines, steps,
    classes]`` probabilities: one transcription per line with ``text`` and
    ``score`` (the mean probability of the kept characters, 0 when none).

    Give either ``alphabet`` (the text of each class, in order) or
    ``paddle_dictionary``: PaddleOCR's dictionary text as its recognizers'
    ``character`` metadata holds it, which the host turns into the blank,
    the lines, then a space (as :func:`paddle_alphabet`) without the hook
    building a list of thousands of strings."""
    ops = _wit.ops()
    if (alphabet is None) == (paddle_dictionary is None):
        raise BadConfig("ctc-greedy-decode: give either alphabet or paddle_dictionary")
    if paddle_dictionary is not None:
        which = ops.CtcAlphabet_PaddleDictionary(str(paddle_dictionary))
    else:
        which = ops.CtcAlphabet_Classes([str(a) for a in alphabet])
    return _call("ctc-greedy-decode", ops.ctc_greedy_decode, to_wit(probs), which, blank)


def regions(values, threshold, dilate=(0, 0), min_pixels=0, epsilon=0.0):
    """The 8-connected regions of ``values > threshold`` (a ``[height,
    width]`` map; leading dimensions of 1 allowed), after an optional
    ``dilate=(width, height)`` as OpenCV's. Each has ``outline`` (``(x, y)``
    corners along pixel edges, simplified within ``epsilon`` pixels),
    ``pixels``, ``mean`` (of ``values`` over its pixels) and ``bbox``
    (``x, y, width, height``)."""
    ops = _wit.ops()
    options = ops.RegionOptions(
        threshold=float(threshold),
        dilate_width=int(dilate[0]),
        dilate_height=int(dilate[1]),
        min_pixels=int(min_pixels),
        epsilon=float(epsilon),
    )
    return _call("regions", ops.regions, to_wit(values), options)


def brush_rle(values, threshold=0.5):
    """Label Studio's brush RLE (``bytes``) of the mask ``values > threshold``."""
    return _call("brush-rle", _wit.ops().brush_rle, to_wit(values), float(threshold))
