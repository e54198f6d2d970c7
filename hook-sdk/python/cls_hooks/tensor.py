"""Tensors in and out of the model: reading model outputs as flat Python
lists (:class:`Tensor`, :class:`Array`), finding an output by name
(:class:`Outputs`) and building model inputs (:func:`tensor`,
:func:`string_tensor`).

The wire format is the WIT ``tensor``: little-endian bytes (or strings) plus
a shape. Bytes are decoded with the :mod:`array` module (one C-level copy,
no per-element Python work), so reading a large output is cheap.

>>> t = tensor("probs", [1, 3], [0.25, 0.5, 0.25])
>>> t.dtype, t.shape, t.to_list()
('f32', [1, 3], [0.25, 0.5, 0.25])
>>> t.to_f32().outer(0)
[0.25, 0.5, 0.25]
"""

import sys
from array import array

from . import _wit
from .errors import BadConfig, Failed

# dtype → (array typecode, bytes per element, numpy/ONNX name, WIT enum member)
_DTYPES = {
    "f32": ("f", 4, "float32", "F32"),
    "f64": ("d", 8, "float64", "F64"),
    "i64": ("q", 8, "int64", "I64"),
    "i32": ("i", 4, "int32", "I32"),
    "u8": ("B", 1, "uint8", "U8"),
    "i8": ("b", 1, "int8", "I8"),
    "bool": ("B", 1, "bool", "BOOL"),
    "string": (None, 0, "string", "STRING"),
    "unsupported": (None, 0, "unsupported", "UNSUPPORTED"),
}
_BY_MEMBER = {v[3]: k for k, v in _DTYPES.items()}
_BIG_ENDIAN = sys.byteorder == "big"


def dtype_of(element_type):
    """The short dtype name (``"f32"``, ``"i64"``, …) of a WIT ``element-type``."""
    return _BY_MEMBER[element_type.name]


def element_type(dtype):
    """The WIT ``element-type`` of a short dtype name."""
    if dtype not in _DTYPES:
        raise Failed("unknown element type %r (one of: %s)" % (dtype, ", ".join(_DTYPES)))
    return getattr(_wit.types().ElementType, _DTYPES[dtype][3])


def type_name(dtype):
    """The numpy/ONNX name of a dtype, for messages (``"float32"``)."""
    return _DTYPES[dtype][2]


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _shape_repr(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _decode(dtype, data):
    code = _DTYPES[dtype][0]
    values = array(code)
    values.frombytes(data)
    if _BIG_ENDIAN and values.itemsize > 1:
        values.byteswap()
    if dtype == "bool":
        return [v != 0 for v in values]
    return values.tolist()


def _encode(dtype, values):
    if dtype == "bool":
        return bytes(1 if v else 0 for v in values)
    code = _DTYPES[dtype][0]
    try:
        packed = array(code, values)
    except (OverflowError, TypeError) as e:
        raise Failed("cannot store these values as %s: %s" % (type_name(dtype), e)) from None
    if _BIG_ENDIAN and packed.itemsize > 1:
        packed.byteswap()
    return packed.tobytes()


class Array:
    """A dense row-major array read from a tensor: ``shape`` and flat ``data``."""

    __slots__ = ("shape", "data")

    def __init__(self, shape, data):
        shape = [int(d) for d in shape]
        if _count(shape) != len(data):
            raise Failed(
                "tensor 'array': %d elements do not fill shape %s" % (len(data), _shape_repr(shape))
            )
        self.shape = shape
        self.data = data

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        return iter(self.data)

    def __repr__(self):
        return "Array(shape=%r, data=%r)" % (self.shape, self.data[:8] + (["…"] if len(self.data) > 8 else []))

    def __eq__(self, other):
        return isinstance(other, Array) and self.shape == other.shape and self.data == other.data

    def get(self, index):
        """The element at a multi-dimensional index; ``None`` when out of range.

        >>> Array([2, 3], list(range(6))).get((1, 2))
        5
        """
        if len(index) != len(self.shape):
            return None
        flat = 0
        for i, d in zip(index, self.shape):
            if not 0 <= i < d:
                return None
            flat = flat * d + i
        return self.data[flat]

    def outer(self, i):
        """The ``i``-th sub-array along the first axis, flattened (one batch
        item, one row of a matrix); ``None`` when out of range.

        >>> a = Array([2, 3], [1, 2, 3, 4, 5, 6])
        >>> a.outer(1), a.outer(2)
        ([4, 5, 6], None)
        """
        if not self.shape:
            return None
        first = self.shape[0]
        if not 0 <= i < first:
            return None
        stride = len(self.data) // max(first, 1)
        return self.data[i * stride : (i + 1) * stride]

    def first_item(self):
        """The first batch item: ``outer(0)`` when the array has a batch
        axis, else all of its data. Hooks get one task per call, so a
        classifier's ``[1, classes]`` output and a bare ``[classes]`` vector
        both give the class scores.

        >>> Array([1, 3], [0.2, 0.7, 0.1]).first_item(), Array([], [0.5]).first_item()
        ([0.2, 0.7, 0.1], [0.5])
        """
        item = self.outer(0)
        return self.data if item is None else item

    def rows(self):
        """Consecutive runs of the last dimension (the rows of a ``[…, n]`` array).

        >>> list(Array([2, 2], [1, 2, 3, 4]).rows())
        [[1, 2], [3, 4]]
        """
        last = max(self.shape[-1] if self.shape else 1, 1)
        data = self.data
        return (data[i : i + last] for i in range(0, len(data) - last + 1, last))


class Tensor:
    """A model input or output: ``name``, ``dtype`` (``"f32"``, ``"i64"``,
    ``"string"``, …), ``shape`` (list of ints) and the WIT tensor as ``raw``."""

    __slots__ = ("raw", "name", "dtype", "shape")

    def __init__(self, raw):
        self.raw = raw
        self.name = raw.name
        self.dtype = dtype_of(raw.element_type)
        self.shape = list(raw.shape)

    def __repr__(self):
        return "Tensor(%r, %s, %s)" % (self.name, self.dtype, _shape_repr(self.shape))

    def _bytes(self, dtype):
        data = self.raw.data
        if not isinstance(data, _wit.types().TensorData_Bytes):
            raise BadConfig("model output '%s' holds strings, not numbers" % self.name)
        data = data.value
        count = _count(self.shape)
        size = _DTYPES[dtype][1]
        if count * size != len(data):
            raise BadConfig(
                "model output '%s' has %d bytes for shape %s of %s (expected %d × %d)"
                % (self.name, len(data), _shape_repr(self.shape), type_name(dtype), count, size)
            )
        return data

    def to_list(self):
        """All elements, flat in row-major order, as Python floats, ints,
        bools or strings according to the dtype."""
        if self.dtype == "string":
            return list(self.strings())
        if self.dtype == "unsupported":
            raise BadConfig("model output '%s' has an element type the hook cannot read" % self.name)
        return _decode(self.dtype, self._bytes(self.dtype))

    def to_array(self, dtype=None):
        """The elements as an :class:`Array`; with ``dtype`` the tensor must
        be exactly that type (a :class:`BadConfig` naming both otherwise)."""
        if dtype is not None and dtype != self.dtype:
            raise BadConfig(
                "model output '%s' is %s, the hook expects %s"
                % (self.name, type_name(self.dtype), type_name(dtype))
            )
        return Array(self.shape, self.to_list())

    def to_f32(self):
        """The elements as ``f32`` values (Python floats), whatever the numeric
        dtype: models disagree on float32/float64/int64 outputs. Like the Rust
        SDK, wide types are rounded to ``f32``."""
        if self.dtype in ("string", "unsupported"):
            raise BadConfig(
                "model output '%s' is %s, the hook expects numbers" % (self.name, type_name(self.dtype))
            )
        values = _decode(self.dtype, self._bytes(self.dtype))
        if self.dtype == "f32":
            return Array(self.shape, values)
        if self.dtype == "bool":
            values = [1.0 if v else 0.0 for v in values]
        return Array(self.shape, array("f", values).tolist())

    def strings(self):
        """The elements of a string tensor."""
        data = self.raw.data
        if not isinstance(data, _wit.types().TensorData_Strings):
            raise BadConfig(
                "model output '%s' is %s, the hook expects strings" % (self.name, type_name(self.dtype))
            )
        return data.value

    def outer(self, i):
        """Shorthand for ``to_array().outer(i)``."""
        return self.to_array().outer(i)

    def rows(self):
        """Shorthand for ``to_array().rows()``."""
        return self.to_array().rows()


def _check_count(name, shape, n):
    if _count(shape) != n:
        raise Failed("tensor '%s': %d elements do not fill shape %s" % (name, n, _shape_repr(shape)))


def tensor(name, shape, values, dtype="f32"):
    """A numeric model input from a flat list (row-major) of ``values``.

    >>> tensor("x", [1, 2], [1, 2], dtype="i64").to_list()
    [1, 2]
    """
    shape = [int(d) for d in shape]
    values = list(values)
    _check_count(name, shape, len(values))
    if dtype not in _DTYPES or dtype in ("string", "unsupported"):
        raise Failed("tensor '%s': cannot build a %s tensor from numbers" % (name, dtype))
    t = _wit.types()
    return Tensor(t.Tensor(name, element_type(dtype), shape, t.TensorData_Bytes(_encode(dtype, values))))


def tensor_from_bytes(name, shape, data, dtype):
    """A numeric model input from little-endian element bytes."""
    shape = [int(d) for d in shape]
    size = _DTYPES[dtype][1]
    if size == 0 or _count(shape) * size != len(data):
        raise Failed("tensor '%s': %d bytes do not fill shape %s of %s" % (name, len(data), _shape_repr(shape), dtype))
    t = _wit.types()
    return Tensor(t.Tensor(name, element_type(dtype), shape, t.TensorData_Bytes(bytes(data))))


def string_tensor(name, shape, values):
    """A string model input (e.g. the ``text`` input of a text classifier).

    >>> string_tensor("text", [1, 1], ["great movie"]).strings()
    ['great movie']
    """
    shape = [int(d) for d in shape]
    values = [str(v) for v in values]
    _check_count(name, shape, len(values))
    t = _wit.types()
    return Tensor(t.Tensor(name, t.ElementType.STRING, shape, t.TensorData_Strings(values)))


def to_wit(value):
    """The WIT tensor of a :class:`Tensor` (or a WIT tensor unchanged)."""
    return value.raw if isinstance(value, Tensor) else value


class Outputs:
    """The model outputs a post-hook receives, in the model's output order.
    Iterate it, index it, or look outputs up by name."""

    __slots__ = ("_tensors",)

    def __init__(self, tensors):
        self._tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]

    def __len__(self):
        return len(self._tensors)

    def __iter__(self):
        return iter(self._tensors)

    def __getitem__(self, i):
        return self._tensors[i]

    def __repr__(self):
        return "Outputs(%r)" % self._tensors

    def names(self):
        """Output names in model order."""
        return [t.name for t in self._tensors]

    def get(self, name):
        """The output called ``name``; the error lists the outputs there are."""
        for t in self._tensors:
            if t.name == name:
                return t
        raise BadConfig("the model has no output '%s' (outputs: %s)" % (name, ", ".join(self.names())))

    def first_of(self, names):
        """The first of ``names`` that exists, for hooks that support several exports of a model."""
        for n in names:
            for t in self._tensors:
                if t.name == n:
                    return t
        raise BadConfig(
            "the model has none of the outputs %s (outputs: %s)" % (", ".join(names), ", ".join(self.names()))
        )

    def only(self):
        """The only output; fails when there are several or none."""
        if len(self._tensors) != 1:
            raise BadConfig(
                "the hook expects a model with one output, this one has %d (%s)"
                % (len(self._tensors), ", ".join(self.names()))
            )
        return self._tensors[0]
