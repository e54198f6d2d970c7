"""Small numeric helpers for model outputs: softmax, sigmoid, argmax, top-k.

They reproduce the Rust SDK (``hook_sdk::ops``) bit for bit: values are
``f32`` and every arithmetic step is rounded to ``f32`` as Rust does, so a
Python hook and its Rust twin produce the same scores. NaNs never win a
comparison, so a broken model yields "no class" rather than a random one.
"""

import math
import struct
from decimal import Decimal

_F32 = struct.Struct("<f")
_F32_TOLERANCE = _F32.unpack(_F32.pack(1e-3))[0]


def f32(x):
    """``x`` rounded to the nearest ``f32`` (as a Python float)."""
    try:
        return _F32.unpack(_F32.pack(x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def softmax(logits):
    """Numerically stable softmax (the maximum is subtracted first), in ``f32``.

    >>> p = softmax([1.0, 1.0, 1000.0])
    >>> abs(sum(p) - 1.0) < 1e-6 and p[2] > 0.999
    True
    """
    logits = [f32(x) for x in logits]
    top = -math.inf
    for x in logits:
        if x > top:  # f32::max ignores NaN
            top = x
    if not math.isfinite(top):
        # All -inf or empty: no information, spread evenly.
        return [f32(1.0 / max(len(logits), 1))] * len(logits)
    exps = [f32(math.exp(f32(x - top))) for x in logits]
    total = -0.0
    for e in exps:
        total = f32(total + e)
    # total >= 1 (the maximum contributes exp(0)) unless NaN.
    return [f32(e / total) for e in exps]


def as_probabilities(values):
    """``values`` unchanged when they already are a probability distribution
    (each in 0–1, summing to 1 within 1e-3, in ``f32``), else their softmax.
    Many exported classifiers end in a Softmax node; a second one would
    flatten the scores.

    >>> as_probabilities([0.25, 0.75])
    [0.25, 0.75]
    >>> round(as_probabilities([2.0, 0.0])[0], 4)
    0.8808
    """
    values = [f32(v) for v in values]
    in_range = all(0.0 <= v <= 1.0 for v in values)
    total = -0.0
    for v in values:
        total = f32(total + v)
    if in_range and abs(f32(total - 1.0)) <= _F32_TOLERANCE:
        return values
    return softmax(values)


def _shortest_f32_digits(x):
    """The shortest decimal string that reads back as the ``f32`` ``x``, as
    Rust's ``f32`` ``Display`` prints it: among equally short candidates the
    one closest to ``x``, and of two equally close the larger in magnitude."""
    exact = Decimal(x)
    sign = "-" if x < 0 else ""
    for p in range(1, 10):
        mantissa, exponent = ("%.*e" % (p - 1, abs(x))).split("e")
        scaled = int(mantissa.replace(".", ""))
        power = int(exponent) - (p - 1)
        best = None
        # The nearest p-digit number, and its neighbours: at a power of two
        # the rounding interval is lopsided, and at a tie Python rounds to
        # even where Rust rounds up.
        for candidate in (scaled - 1, scaled, scaled + 1):
            if candidate <= 0:
                continue
            text = "%s%de%d" % (sign, candidate, power)
            if f32(float(text)) != x:
                continue
            key = (abs(Decimal(text) - exact), -candidate)
            if best is None or key < best[0]:
                best = (key, text)
        if best is not None:
            return best[1]
    return repr(x)


def widen(x):
    """An ``f32`` score as the ``f64`` of its shortest decimal form, so
    ``0.8`` in ``f32`` is written to JSON as ``0.8``, not ``0.800000011920929``.

    >>> widen(0.800000011920929)
    0.8
    """
    x = f32(x)
    if not math.isfinite(x) or x == 0.0:
        return x
    return float(_shortest_f32_digits(x))


def sigmoid(x):
    """The logistic function, in ``f32``."""
    x = f32(x)
    try:
        e = f32(math.exp(-x))
    except OverflowError:
        e = math.inf
    return f32(1.0 / f32(1.0 + e))


def argmax(values):
    """``(index, value)`` of the largest element; ``None`` when empty or all
    NaN. The first of equal maxima wins, as in numpy.

    >>> argmax([0.1, 0.7, 0.2, 0.7])
    (1, 0.7)
    """
    best = None
    for i, v in enumerate(values):
        if v != v:
            continue
        if best is None or not best[1] >= v:
            best = (i, v)
    return best


def _descending(item):
    v = item[1]
    # Rust's total_cmp puts +0.0 above -0.0.
    return (-v, -math.copysign(1.0, v) if v == 0 else 0.0)


def top_k(values, k):
    """The ``k`` largest elements as ``(index, value)``, largest first; ties
    keep index order. NaNs are skipped.

    >>> top_k([0.1, 0.7, 0.2], 2)
    [(1, 0.7), (2, 0.2)]
    """
    indexed = [(i, v) for i, v in enumerate(values) if v == v]
    indexed.sort(key=_descending)  # stable: equal scores keep their order
    return indexed[:k]
