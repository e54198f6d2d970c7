"""Images for pre-hooks: the host decodes and transforms pixels natively
(:class:`Image` wraps the WIT ``image`` resource, so pixels never enter the
Python heap), while :class:`Transform` tracks how the original image maps
onto what the model sees, so a post-hook can map model coordinates back.

>>> # in a pre-hook:
>>> # img = Image.decode(data, True).resize_short_side(256, "lanczos3").center_crop(224, 224)
>>> # x = img.to_tensor(imagenet("x"))
>>> t = Transform.identity(640, 480).then_resize(341, 256).then_crop(58, 16, 224, 224)
>>> (t.target_width, t.target_height)
(224, 224)
"""

from . import _wit, jsonenc, ops
from .errors import BadInput, Failed
from .tensor import Tensor, element_type

#: ImageNet channel means and standard deviations (RGB), for ``scale = 1/255`` inputs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_FIELDS = ("original_width", "original_height", "target_width", "target_height", "scale_x", "scale_y", "pad_x", "pad_y")


class Transform:
    """How an image was mapped onto a model input: ``original = (model - pad) / scale``.
    Arithmetic is ``f32``, as in the Rust SDK and the host."""

    __slots__ = _FIELDS

    def __init__(self, original_width, original_height, target_width, target_height, scale_x, scale_y, pad_x, pad_y):
        self.original_width, self.original_height = int(original_width), int(original_height)
        self.target_width, self.target_height = int(target_width), int(target_height)
        f = ops.f32
        self.scale_x, self.scale_y, self.pad_x, self.pad_y = f(scale_x), f(scale_y), f(pad_x), f(pad_y)

    def __repr__(self):
        return "Transform(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in _FIELDS)

    def __eq__(self, other):
        return isinstance(other, Transform) and all(getattr(self, k) == getattr(other, k) for k in _FIELDS)

    @classmethod
    def identity(cls, width, height):
        """The transform of an image onto itself."""
        return cls(width, height, width, height, 1.0, 1.0, 0.0, 0.0)

    @classmethod
    def from_wit(cls, t):
        """From a WIT ``image-transform``."""
        return cls(*(getattr(t, k) for k in _FIELDS))

    def to_wit(self):
        """As a WIT ``image-transform``."""
        return _wit.types().ImageTransform(*(getattr(self, k) for k in _FIELDS))

    @property
    def original_size(self):
        """``(width, height)`` of the original: Label Studio's ``original_width``/``original_height``."""
        from .results import ImageSize

        return ImageSize(self.original_width, self.original_height)

    def to_original(self, x, y):
        """A point in model pixels mapped to original pixels."""
        f = ops.f32
        return (f(f(f(x) - self.pad_x) / self.scale_x), f(f(f(y) - self.pad_y) / self.scale_y))

    def to_model(self, x, y):
        """A point in original pixels mapped to model pixels."""
        f = ops.f32
        return (f(f(f(x) * self.scale_x) + self.pad_x), f(f(f(y) * self.scale_y) + self.pad_y))

    def then(self, nxt):
        """This transform followed by ``nxt`` (which starts where this one ends)."""
        f = ops.f32
        return Transform(
            self.original_width, self.original_height, nxt.target_width, nxt.target_height,
            f(self.scale_x * nxt.scale_x), f(self.scale_y * nxt.scale_y),
            f(f(self.pad_x * nxt.scale_x) + nxt.pad_x), f(f(self.pad_y * nxt.scale_y) + nxt.pad_y),
        )  # fmt: skip

    def then_resize(self, width, height):
        """Followed by a resize of the target to ``width × height``."""
        f = ops.f32
        step = Transform(
            self.target_width, self.target_height, width, height,
            f(f(width) / f(max(self.target_width, 1))), f(f(height) / f(max(self.target_height, 1))), 0.0, 0.0,
        )  # fmt: skip
        return self.then(step)

    def then_crop(self, x, y, width, height):
        """Followed by cropping the target to the rectangle at ``(x, y)``."""
        return self.then(Transform(self.target_width, self.target_height, width, height, 1.0, 1.0, -float(x), -float(y)))

    def to_json(self):
        """As JSON (for a pre-hook's ``carry``), the Rust SDK's field order and number format."""
        parts = []
        for k in _FIELDS:
            v = getattr(self, k)
            parts.append('"%s":%s' % (k, jsonenc.dumps(ops.widen(v) if isinstance(v, float) else v)))
        return "{" + ",".join(parts) + "}"

    @classmethod
    def from_json(cls, text):
        """Parses :meth:`to_json` output; :class:`Failed` when it is not a transform."""
        import json

        try:
            d = json.loads(text)
            return cls(*(d[k] for k in _FIELDS))
        except Exception as e:
            raise Failed("carry is not an image transform: %s" % e) from None


def image_error(err):
    """The SDK error for a WIT ``image-error`` (as the Rust SDK maps it)."""
    h = _wit.host()
    if isinstance(err, h.ImageError_UnsupportedFormat):
        return BadInput("unsupported image format: %s" % err.value)
    if isinstance(err, h.ImageError_DecodeFailed):
        return BadInput("cannot decode image: %s" % err.value)
    # Out-of-range arguments come from the hook's own arithmetic.
    return Failed("image operation: %s" % getattr(err, "value", err))


def _call(fn, *args):
    return _wit.call(image_error, fn, *args)


def _enum(enum, value):
    return getattr(enum, value.upper()) if isinstance(value, str) else value


def tensor_options(name, layout="nchw", channels="rgb", dtype="f32", scale=1.0 / 255.0, mean=(), std=()):
    """How to turn pixels into a tensor: ``layout`` ``"nchw"``/``"nhwc"``,
    ``channels`` ``"rgb"``/``"bgr"``/``"gray"``, ``dtype`` ``"f32"``/``"u8"``;
    for ``f32`` a value is ``(pixel * scale - mean[c]) / std[c]``."""
    h = _wit.host()
    if dtype == "u8":
        scale, mean, std = 1.0, (), ()
    return h.TensorOptions(
        name, _enum(h.Layout, layout), _enum(h.Channels, channels), element_type(dtype),
        float(scale), [float(m) for m in mean], [float(s) for s in std],
    )  # fmt: skip


def imagenet(name, **kwargs):
    """NCHW, RGB, ``f32``, ImageNet mean/std: most torchvision-style classifiers."""
    return tensor_options(name, mean=IMAGENET_MEAN, std=IMAGENET_STD, **kwargs)


class Image:
    """A decoded image held by the host, with the :class:`Transform` from the original."""

    __slots__ = ("inner", "transform")

    def __init__(self, inner, transform):
        self.inner, self.transform = inner, transform

    @classmethod
    def decode(cls, data, apply_orientation=True):
        """Decodes PNG, JPEG, WebP, BMP or TIFF bytes; with ``apply_orientation``
        the EXIF orientation is applied, so pixels (and the original size)
        match what Label Studio displays."""
        inner = _call(_wit.host().decode_image, bytes(data), bool(apply_orientation))
        return cls(inner, Transform.identity(inner.width(), inner.height()))

    @property
    def width(self):
        return self.transform.target_width

    @property
    def height(self):
        return self.transform.target_height

    @property
    def original_size(self):
        return self.transform.original_size

    def resize(self, width, height, filter="bilinear"):
        """A copy resized to exactly ``width × height`` (``filter``:
        ``"nearest"``, ``"bilinear"``, ``"cubic"``, ``"lanczos3"``)."""
        f = _enum(_wit.host().Filter, filter)
        return Image(_call(self.inner.resize, int(width), int(height), f), self.transform.then_resize(width, height))

    def resize_short_side(self, short, filter="bilinear"):
        """A copy whose shorter side is ``short`` pixels, the other scaled
        proportionally and rounded half to even."""
        w, h = self.width, self.height
        ratio = float(short) / float(max(min(w, h), 1))
        return self.resize(max(round(w * ratio), 1), max(round(h * ratio), 1), filter)

    def crop(self, x, y, width, height):
        """A copy of the rectangle at ``(x, y)``."""
        inner = _call(self.inner.crop, int(x), int(y), int(width), int(height))
        return Image(inner, self.transform.then_crop(x, y, width, height))

    def center_crop(self, width, height):
        """The centred ``width × height`` rectangle (offset rounded down)."""
        if self.width < width or self.height < height:
            raise BadInput("image is %d×%d, too small to crop %d×%d" % (self.width, self.height, width, height))
        return self.crop((self.width - width) // 2, (self.height - height) // 2, width, height)

    def letterbox(self, width, height, fill=114):
        """Scaled to fit ``width × height`` keeping the aspect ratio, padded with grey ``fill``."""
        inner, step = _call(self.inner.letterbox, int(width), int(height), int(fill))
        return Image(inner, self.transform.then(Transform.from_wit(step)))

    def to_tensor(self, options):
        """The pixels as a :class:`~cls_hooks.tensor.Tensor` with a batch
        dimension of 1; ``options`` from :func:`tensor_options` or :func:`imagenet`."""
        return Tensor(_call(self.inner.to_tensor, options))

    def set_input(self, options):
        """The tensor :meth:`to_tensor` would return, handed to the host as
        the model input ``options.name`` without being copied into the
        interpreter and back (the faster way when the hook does not change
        the tensor). Leave that input out of the
        :class:`~cls_hooks.export.PreOutput`'s inputs: a name given both
        ways fails the call. Pre-hooks only."""
        _call(self.inner.set_input, options)
