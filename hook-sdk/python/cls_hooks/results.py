"""Label Studio predictions: :class:`Region` builders for each result type,
in the exact JSON shapes Label Studio stores (coordinates in percent of the
original image, ``original_width``/``original_height`` set), and
:class:`Prediction`, which a post-hook returns. The JSON is the Rust SDK's,
key for key, and region ids are given out the same way (:class:`RegionIds`).

>>> dog = Region.rectangle_labels(("label", "image"), BBox.from_xywh(64, 48, 320, 240), (640, 480), ["Dog"]).with_score(0.9)
>>> p = Prediction([dog]).with_score(0.9).to_json(RegionIds(7), "v1")
>>> p["model_version"], p["result"][0]["id"], p["result"][0]["value"]["x"]
('v1', 't7-r1', 10.0)
"""

from collections import namedtuple

from . import log, ops, rle
from .labelconfig import Binding

ImageSize = namedtuple("ImageSize", "width height")
ImageSize.__doc__ = "Width and height of an image in pixels."


def _size(size):
    if isinstance(size, ImageSize):
        return size
    if hasattr(size, "width") and hasattr(size, "height") and not isinstance(size, tuple):
        w, h = size.width, size.height
        return ImageSize(int(w() if callable(w) else w), int(h() if callable(h) else h))
    w, h = size
    return ImageSize(int(w), int(h))


def _clamp(v, lo, hi):
    # As Rust's f64::clamp: NaN stays NaN.
    return lo if v < lo else hi if v > hi else v


class Target:
    """Where a region goes: the control (``from_name``) and the object (``to_name``)."""

    __slots__ = ("from_name", "to_name")

    def __init__(self, from_name, to_name):
        self.from_name, self.to_name = from_name, to_name

    def __repr__(self):
        return "Target(%r, %r)" % (self.from_name, self.to_name)

    def __eq__(self, other):
        return isinstance(other, Target) and (self.from_name, self.to_name) == (other.from_name, other.to_name)

    @classmethod
    def of(cls, target):
        """A target from a :class:`Target`, a :class:`~cls_hooks.labelconfig.Binding`
        or a ``(from_name, to_name)`` pair."""
        if isinstance(target, Target):
            return target
        if isinstance(target, Binding):
            return cls(target.from_name, target.to_name)
        from_name, to_name = target
        return cls(from_name, to_name)


class BBox:
    """A box in pixels, corners ``x1, y1, x2, y2``. Coordinates are ``f32``
    as in the Rust SDK (rounded on construction), so boxes serialise alike."""

    __slots__ = ("x1", "y1", "x2", "y2")

    def __init__(self, x1, y1, x2, y2):
        f = ops.f32
        self.x1, self.y1, self.x2, self.y2 = f(x1), f(y1), f(x2), f(y2)

    def __repr__(self):
        return "BBox(%r, %r, %r, %r)" % (self.x1, self.y1, self.x2, self.y2)

    def __eq__(self, other):
        return isinstance(other, BBox) and self.to_xyxy() == other.to_xyxy()

    @classmethod
    def from_xyxy(cls, x1, y1, x2, y2):
        """From corners."""
        return cls(x1, y1, x2, y2)

    @classmethod
    def from_xywh(cls, x, y, width, height):
        """From top-left corner and size."""
        f = ops.f32
        x, y = f(x), f(y)
        return cls(x, y, f(x + f(width)), f(y + f(height)))

    @classmethod
    def from_cxcywh(cls, cx, cy, width, height):
        """From centre and size (YOLO's layout)."""
        f = ops.f32
        width, height = f(width), f(height)
        return cls.from_xywh(f(f(cx) - f(width / 2)), f(f(cy) - f(height / 2)), width, height)

    def to_xyxy(self):
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self):
        return ops.f32(self.x2 - self.x1)

    @property
    def height(self):
        return ops.f32(self.y2 - self.y1)

    def to_original(self, transform):
        """Maps a box in model pixels to original-image pixels (see
        :class:`~cls_hooks.image.Transform`), clipped to the original image."""
        x1, y1 = transform.to_original(self.x1, self.y1)
        x2, y2 = transform.to_original(self.x2, self.y2)
        w, h = ops.f32(transform.original_width), ops.f32(transform.original_height)
        return BBox(_clamp(x1, 0.0, w), _clamp(y1, 0.0, h), _clamp(x2, 0.0, w), _clamp(y2, 0.0, h))

    def to_percent(self, size):
        """``(x, y, width, height)`` in percent of ``size``, clipped to the image."""
        size = _size(size)
        w, h = float(max(size.width, 1)), float(max(size.height, 1))
        x1 = _clamp(self.x1 / w * 100.0, 0.0, 100.0)
        y1 = _clamp(self.y1 / h * 100.0, 0.0, 100.0)
        x2 = _clamp(self.x2 / w * 100.0, x1, 100.0)
        y2 = _clamp(self.y2 / h * 100.0, y1, 100.0)
        return (x1, y1, x2 - x1, y2 - y1)


def _point_percent(point, size):
    x, y = point
    return [
        _clamp(float(x) / float(max(size.width, 1)) * 100.0, 0.0, 100.0),
        _clamp(float(y) / float(max(size.height, 1)) * 100.0, 0.0, 100.0),
    ]


class Region:
    """One result item of a prediction. Build it with a typed constructor
    (:meth:`choices`, :meth:`rectangle_labels`, …), then chain
    :meth:`with_score`, :meth:`with_id`, :meth:`with_value`."""

    __slots__ = ("id", "target", "kind", "value", "score", "original_size")

    def __init__(self, target, kind, value):
        self.id = None
        self.target = Target.of(target)
        self.kind = kind
        self.value = dict(value)
        self.score = None
        self.original_size = None

    def __repr__(self):
        return "Region(%s %r → %r: %r)" % (self.kind, self.target.from_name, self.target.to_name, self.value)

    @classmethod
    def choices(cls, target, choices):
        """``choices``: classification of the whole object.

        >>> Region.choices(("sentiment", "text"), ["positive"]).value
        {'choices': ['positive']}
        """
        return cls(target, "choices", {"choices": [str(c) for c in choices]})

    @classmethod
    def top_choice(cls, binding, class_names, probabilities):
        """The most probable class that the control knows, as a ``choices``
        region scored with its probability; classes the config lacks are
        skipped (looked up with ``binding.resolve_label``). ``None`` when the
        config knows none of them."""
        for index, p in ops.top_k(probabilities, len(probabilities)):
            if index >= len(class_names):
                continue
            label = binding.resolve_label(class_names[index])
            if label is not None:
                return cls.choices(binding, [label]).with_score(ops.widen(p))
        return None

    @classmethod
    def choices_above(cls, binding, class_names, probabilities, threshold):
        """Every class the control knows whose probability is at least
        ``threshold``, most probable first, as one ``choices`` region
        (multi-label classification), scored with the highest of them;
        ``None`` when no known class reaches the threshold."""
        chosen = []
        for index, p in ops.top_k(probabilities, len(probabilities)):
            if p < ops.f32(threshold) or index >= len(class_names):
                continue
            label = binding.resolve_label(class_names[index])
            if label is not None:
                chosen.append((label, p))
        if not chosen:
            return None
        return cls.choices(binding, [label for label, _ in chosen]).with_score(ops.widen(chosen[0][1]))

    @classmethod
    def text_span(cls, target, start, end, text, labels):
        """``labels`` on text: characters ``start..end`` (code points, as
        Label Studio counts them in ``<Text>``), with the span's text."""
        return cls(target, "labels", {"start": int(start), "end": int(end), "text": str(text), "labels": [str(l) for l in labels]})

    #: Alias of :meth:`text_span`, named after the ``<Labels>`` control.
    labels = text_span

    @classmethod
    def rectangle_labels(cls, target, bbox, size, labels):
        """``rectanglelabels``: ``bbox`` (a :class:`BBox` or ``(x1, y1, x2, y2)``)
        in original-image pixels, stored in percent of ``size``."""
        if not isinstance(bbox, BBox):
            bbox = BBox(*bbox)
        size = _size(size)
        x, y, w, h = bbox.to_percent(size)
        value = {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [str(l) for l in labels]}
        return cls(target, "rectanglelabels", value).with_original_size(size)

    @classmethod
    def polygon_labels(cls, target, points, size, labels):
        """``polygonlabels``: ``points`` (``(x, y)`` pairs) in original-image
        pixels, stored in percent of ``size``."""
        size = _size(size)
        value = {"points": [_point_percent(p, size) for p in points], "polygonlabels": [str(l) for l in labels]}
        return cls(target, "polygonlabels", value).with_original_size(size)

    @classmethod
    def keypoint_labels(cls, target, point, width, size, labels):
        """``keypointlabels``: ``point`` in original-image pixels; ``width`` is
        the point's display size in percent (Label Studio's default ~0.5)."""
        size = _size(size)
        x, y = _point_percent(point, size)
        value = {"x": x, "y": y, "width": float(width), "keypointlabels": [str(l) for l in labels]}
        return cls(target, "keypointlabels", value).with_original_size(size)

    @classmethod
    def brush_labels(cls, target, mask, width, height, labels):
        """``brushlabels``: ``mask`` (``width × height`` truthy/falsy values,
        row-major, the original image's size) RLE-encoded as Label Studio's
        brush tool expects."""
        value = {"format": "rle", "rle": list(rle.encode_mask(mask)), "brushlabels": [str(l) for l in labels]}
        return cls(target, "brushlabels", value).with_original_size(ImageSize(int(width), int(height)))

    @classmethod
    def textarea(cls, target, texts):
        """``textarea``: free text (captions, transcriptions)."""
        return cls(target, "textarea", {"text": [str(t) for t in texts]})

    def with_score(self, score):
        """Sets the region's confidence."""
        self.score = float(score)
        return self

    def with_id(self, region_id):
        """Sets the id; regions of different controls describing the same
        thing (an OCR box and its transcription) share one."""
        self.id = str(region_id)
        return self

    def with_original_size(self, size):
        """Sets ``original_width``/``original_height``."""
        self.original_size = _size(size)
        return self

    def with_value(self, key, value):
        """Adds or replaces a key of the value object."""
        self.value[key] = value
        return self

    def to_json(self, ids):
        """The region as a JSON-ready dict; ``ids`` supplies an id when none was set."""
        out = {
            "id": self.id if self.id is not None else ids.next_id(),
            "from_name": self.target.from_name,
            "to_name": self.target.to_name,
            "type": self.kind,
        }
        if self.original_size is not None:
            out["original_width"] = self.original_size.width
            out["original_height"] = self.original_size.height
            out["image_rotation"] = 0
        out["value"] = self.value
        if self.score is not None and self.score - self.score == 0:
            out["score"] = self.score
        return out


class RegionIds:
    """Region ids for one call: ``t<task>-r<n>`` (``r<n>`` without a task
    id), unique within the task's predictions and stable across runs.

    >>> ids = RegionIds(42); ids.next_id(), ids.next_id(), RegionIds(None).next_id()
    ('t42-r1', 't42-r2', 'r1')
    """

    __slots__ = ("prefix", "next")

    def __init__(self, task_id):
        self.prefix = "" if task_id is None else "t%d-" % task_id
        self.next = 0

    def next_id(self):
        """The next id."""
        self.next += 1
        return "%sr%d" % (self.prefix, self.next)


class Prediction:
    """One Label Studio prediction: regions, an overall score, the model
    version (``None``: the backend's, which you should keep)."""

    __slots__ = ("result", "score", "model_version")

    def __init__(self, result=(), score=None, model_version=None):
        self.result = list(result)
        self.score = None if score is None else float(score)
        self.model_version = model_version

    def __repr__(self):
        return "Prediction(%r, score=%r)" % (self.result, self.score)

    @classmethod
    def empty(cls):
        """A prediction with no regions: what a post-hook returns when the
        model found nothing the labeling config can show."""
        return cls([])

    @classmethod
    def top_choice(cls, binding, class_names, probabilities):
        """The classifier's answer: :meth:`Region.top_choice` as the only
        region, the prediction scored like it. When the config knows none of
        the classes, a warning naming them goes to the server log and the
        prediction is :meth:`empty`.

        >>> from cls_hooks.labelconfig import LabelConfig
        >>> config = LabelConfig.parse('<View><Image name="image" value="$image"/>'
        ...     '<Choices name="rotation" toName="image"><Choice value="0"/><Choice value="180"/></Choices></View>')
        >>> p = Prediction.top_choice(config.choices_for_image(), ["0", "90", "180", "270"], [0.1, 0.6, 0.25, 0.05])
        >>> p.result[0].value, p.score
        ({'choices': ['180']}, 0.25)
        """
        region = Region.top_choice(binding, class_names, probabilities)
        if region is None:
            log.warn(_no_known_choice(binding, class_names))
            return cls.empty()
        return cls([region]).with_mean_region_score()

    def with_score(self, score):
        """Sets the overall score."""
        self.score = float(score)
        return self

    def with_mean_region_score(self):
        """Sets the overall score to the mean of the region scores, if any region has one."""
        scores = [r.score for r in self.result if r.score is not None]
        if scores:
            total = -0.0
            for s in scores:  # plain left-to-right sum, as Rust (not math.fsum)
                total += s
            self.score = total / len(scores)
        return self

    def with_model_version(self, version):
        """Overrides the model version."""
        self.model_version = str(version)
        return self

    def to_json(self, ids, default_model_version):
        """The prediction as a JSON-ready dict."""
        out = {"result": [r.to_json(ids) for r in self.result]}
        if self.score is not None and self.score - self.score == 0:
            out["score"] = self.score
        out["model_version"] = self.model_version if self.model_version is not None else default_model_version
        return out


def _no_known_choice(binding, class_names):
    """Why :meth:`Prediction.top_choice` came back empty, for the server log."""
    return "none of the model's classes (%s) is a choice of '%s'" % (", ".join(class_names), binding.from_name)
