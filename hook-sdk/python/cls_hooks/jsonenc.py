"""JSON text exactly as the Rust SDK (``serde_json``) writes it: compact,
object keys sorted, floats in ``ryu`` form (``1e-7``, ``0.00001``,
``1e16``, ``5.0``), NaN and infinities as ``null``, non-ASCII unescaped.

>>> dumps({"b": 1.0, "a": [0.5, 1e-7, True, None, "é"]})
'{"a":[0.5,1e-7,true,null,"é"],"b":1.0}'
"""

import json
import math

_encode_string = json.encoder.encode_basestring  # escapes like serde_json with ensure_ascii off


def format_float(x):
    """A finite float as ``serde_json`` (``ryu``) prints an ``f64``.

    >>> [format_float(v) for v in (0.0, -0.0, 1.5, 100.0, 1e16, 1e17, 1.25e-5, 1e-7, 123456.789)]
    ['0.0', '-0.0', '1.5', '100.0', '1e+16', '1e+17', '0.0000125', '1e-7', '123456.789']
    """
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    r = repr(x)
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    mantissa, _, exp = r.partition("e")
    exp = int(exp) if exp else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = digits × 10^k
    k = exp - len(frac)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    n = len(digits)
    kk = n + k  # position of the decimal point relative to the first digit
    if 0 <= k and kk <= 16:
        out = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        out = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        out = "0." + "0" * (-kk) + digits
    else:
        e = kk - 1
        out = (digits[0] + "." + digits[1:] if n > 1 else digits) + ("e+%d" % e if e > 0 else "e%d" % e)
    return sign + out


def _key(k):
    if isinstance(k, str):
        return k
    if isinstance(k, bool):
        return "true" if k else "false"
    if isinstance(k, int):
        return str(k)
    raise TypeError("JSON object keys must be strings, not %s" % type(k).__name__)


def _write(value, out):
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(format_float(value) if math.isfinite(value) else "null")
    elif isinstance(value, dict):
        items = sorted((_key(k), v) for k, v in value.items()) if value else ()
        out.append("{")
        first = True
        for k, v in items:
            if not first:
                out.append(",")
            first = False
            out.append(_encode_string(k))
            out.append(":")
            _write(v, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _write(v, out)
        out.append("]")
    elif isinstance(value, (bytes, bytearray)):
        _write(list(value), out)
    elif hasattr(value, "to_json_value"):
        _write(value.to_json_value(), out)
    else:
        raise TypeError("%s is not JSON serialisable" % type(value).__name__)


def dumps(value):
    """``value`` (dicts, lists, str, int, float, bool, None) as compact JSON."""
    out = []
    _write(value, out)
    return "".join(out)
