"""What a hook knows about the call: :class:`Context` (task, labeling
config, model metadata, the backend's params, the pre-hook's ``carry``) and,
for pre-hooks, the task's :class:`Datapoints`.

>>> parse_class_names("0\\n90\\n180\\n270")
['0', '90', '180', '270']
>>> parse_class_names('["cat", "dog"]')
['cat', 'dog']
>>> parse_class_names("{0: 'person', 1: \\"bicycle\\"}")
['person', 'bicycle']
"""

import json
from collections import namedtuple

from . import _wit
from .errors import BadConfig, BadInput
from .image import Image, Transform
from .labelconfig import LabelConfig
from .tensor import dtype_of

#: The model metadata keys :meth:`Context.class_names` looks in, in this
#: order: ultralytics' ``names``, the ``labels`` and ``classes`` of many
#: exporters, PaddleOCR's ``character``. The Rust SDK's list, key for key.
CLASS_NAME_KEYS = ("names", "labels", "classes", "character", "id2label")

TensorSpec = namedtuple("TensorSpec", "name dtype shape")
TensorSpec.__doc__ = "A declared model input/output: name, dtype (``f32``, …), shape (-1 = dynamic)."


def _spec(raw):
    return TensorSpec(raw.name, dtype_of(raw.element_type), list(raw.shape))


def nchw_size(spec):
    """``(width, height)`` of an image input laid out NCHW when both are fixed, else ``None``."""
    if len(spec.shape) == 4 and spec.shape[2] > 0 and spec.shape[3] > 0:
        return (spec.shape[3], spec.shape[2])
    return None


def parse_class_names(value):
    """Splits a metadata value into class names: a JSON list of strings, a
    Python list or dict literal (``{0: 'person', …}``, ultralytics' ``names``),
    or one name per line (PaddleOCR's ``character``). Exactly as the Rust SDK."""
    trimmed = value.strip()
    if trimmed.startswith("["):
        try:
            names = json.loads(trimmed)
        except ValueError:
            names = None
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
    if trimmed.startswith("{") or trimmed.startswith("["):
        # Python literal: quoted strings that are values (after ':') for
        # dicts, every quoted string for lists.
        is_dict = trimmed.startswith("{")
        names = []
        after_colon = not is_dict
        chars = iter(trimmed)
        for c in chars:
            if c == ":":
                after_colon = True
            elif c == "," and is_dict:
                after_colon = False
            elif c in "'\"":
                s = []
                for n in chars:
                    if n == "\\":
                        escaped = next(chars, None)
                        if escaped is not None:
                            s.append(escaped)
                    elif n == c:
                        break
                    else:
                        s.append(n)
                if after_colon:
                    names.append("".join(s))
        return names
    return [line.rstrip("\r") for line in value.split("\n") if line.rstrip("\r")]


def _parse_params(text):
    """The params text as a dict, or the :class:`BadConfig` to raise."""
    try:
        params = json.loads(text)
    except ValueError as e:
        return BadConfig("the host's params are not JSON: %s" % e)
    if not isinstance(params, dict):
        return BadConfig("the host's params are not a JSON object: %s" % text)
    return params


def _is_kind(value, kind):
    """Whether a JSON value is of ``kind``; bool is not a number here."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _json_kind(value):
    """The JSON name of a value's type, for messages."""
    for kind, name in ((bool, "a boolean"), (str, "a string"), (list, "an array"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else "a number"


class Context:
    """The call's context. ``raw`` is the WIT record."""

    def __init__(self, raw):
        self.raw = raw
        self._label_config = None
        self._params = None

    def with_params(self, params):
        """This context with the given params (a dict, or JSON object text)
        instead of the backend's: for unit tests of a hook."""
        self._params = _parse_params(params if isinstance(params, str) else json.dumps(params))
        return self

    @property
    def params(self):
        """The backend's ``params`` object as a dict (empty when none are
        set), fetched from the host on first use. Prefer :meth:`param`."""
        if self._params is None:
            try:
                text = _wit.host().params()
            except (ImportError, NotImplementedError):
                text = "{}"  # plain CPython: no host
            self._params = _parse_params(text)
        if isinstance(self._params, BadConfig):
            raise BadConfig(self._params.message)
        return self._params

    def param(self, key, default=None, kind=None):
        """The parameter ``key``, or ``default`` when it is not set.

        The value must be of type ``kind`` (``float``, ``int``, ``str``,
        ``bool``, ``list`` or ``dict``; by default the type of ``default``
        when one is given), else :class:`BadConfig` names the key. An integer
        is accepted where a float is expected.

        >>> threshold = ctx.param("threshold", 0.5)  # doctest: +SKIP
        >>> names = ctx.param("names", kind=list) or ctx.class_names()  # doctest: +SKIP
        """
        params = self.params
        if key not in params:
            return default
        value = params[key]
        if kind is None and default is not None:
            kind = type(default)
        if kind is None or _is_kind(value, kind):
            return float(value) if kind is float else value
        raise BadConfig(
            "params.%s = %s cannot be used here: expected %s, got %s"
            % (key, json.dumps(value), kind.__name__, _json_kind(value))
        )

    @property
    def task_json(self):
        """The Label Studio task as JSON text."""
        return self.raw.task_json

    def task(self):
        """The Label Studio task, parsed (a dict)."""
        try:
            return json.loads(self.raw.task_json)
        except ValueError as e:
            raise BadInput("task is not JSON: %s" % e) from None

    @property
    def task_id(self):
        """The task id, or ``None``."""
        return self.raw.task_id

    def label_config(self):
        """The labeling config, parsed on first use (:class:`~cls_hooks.labelconfig.LabelConfig`);
        a broken config raises :class:`BadConfig` every time."""
        if self._label_config is None:
            try:
                self._label_config = LabelConfig.parse(self.raw.label_config)
            except BadConfig as e:
                self._label_config = e
        if isinstance(self._label_config, BadConfig):
            raise BadConfig(self._label_config.message)
        return self._label_config

    @property
    def label_config_xml(self):
        """The labeling config as XML."""
        return self.raw.label_config

    def choices_for_image(self):
        """Shorthand for ``label_config().choices_for_image()``."""
        return self.label_config().choices_for_image()

    def choices_for_text(self):
        """Shorthand for ``label_config().choices_for_text()``."""
        return self.label_config().choices_for_text()

    @property
    def model_version(self):
        """The model version the backend reports; predictions default to it."""
        return self.raw.model_version

    @property
    def interactive_context(self):
        """Interactive pre-annotation context (``params.context``) as JSON text, or ``None``."""
        return self.raw.interactive_context

    @property
    def model_inputs(self):
        """The model's declared inputs as :data:`TensorSpec`."""
        return [_spec(s) for s in self.raw.model_inputs]

    @property
    def model_outputs(self):
        """The model's declared outputs as :data:`TensorSpec`."""
        return [_spec(s) for s in self.raw.model_outputs]

    def first_input(self):
        """The model's first input: the image or text input of most models."""
        if not self.raw.model_inputs:
            raise BadConfig("the model declares no inputs")
        return _spec(self.raw.model_inputs[0])

    @property
    def model_metadata(self):
        """The model's custom metadata as ``(key, value)`` pairs."""
        return list(self.raw.model_metadata)

    def metadata(self, key):
        """A model metadata value (ONNX ``metadata_props``), or ``None``."""
        for k, v in self.raw.model_metadata:
            if k == key:
                return v
        return None

    def class_names(self):
        """The model's class names, from the first metadata key of
        :data:`CLASS_NAME_KEYS` that it has (see :meth:`class_names_in`)."""
        return self.class_names_in(CLASS_NAME_KEYS)

    def class_names_in(self, keys):
        """Class names stored in model metadata under the first of ``keys``
        that exists, in any usual encoding (see :func:`parse_class_names`)."""
        for key in keys:
            value = self.metadata(key)
            if value is not None:
                break
        else:
            present = [k for k, _ in self.raw.model_metadata]
            raise BadConfig(
                "the model has no class names in its metadata (looked for %s; it has: %s)"
                % (", ".join(keys), ", ".join(present) if present else "no metadata")
            )
        names = parse_class_names(value)
        if not names:
            raise BadConfig("model metadata '%s' lists no class names" % key)
        return names

    @property
    def datapoints(self):
        """The task's datapoints with image sizes and transforms (post-hook
        only): WIT ``datapoint-info`` records."""
        return self.raw.datapoints

    @property
    def carry(self):
        """Whatever the pre-hook returned as ``carry`` (post-hook only), or ``None``."""
        return self.raw.carry

    def image_transform(self):
        """How the image was mapped onto the model input: the pre-hook's
        ``carry`` when it holds a transform, else the transform the host's
        built-in pre-hook recorded for the first image datapoint."""
        if self.raw.carry is not None:
            try:
                return Transform.from_json(self.raw.carry)
            except Exception:
                pass
        for d in self.raw.datapoints:
            if d.transform is not None:
                return Transform.from_wit(d.transform)
        raise BadConfig(
            "no image transform: the pre-hook passed none in carry and the host recorded none "
            "(is the model input an image?)"
        )


class Datapoint:
    """One task field for the pre-hook: ``field``, ``uri``, ``content_type``, ``data`` (bytes)."""

    __slots__ = ("raw",)

    def __init__(self, raw):
        self.raw = raw

    def __repr__(self):
        return "Datapoint(%r, %s, %d bytes)" % (self.field, self.content_type, len(self.data))

    field = property(lambda self: self.raw.field)
    uri = property(lambda self: self.raw.uri)
    content_type = property(lambda self: self.raw.content_type)
    data = property(lambda self: self.raw.data)

    def text(self):
        """The data as UTF-8 text."""
        try:
            return bytes(self.raw.data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput("task field '%s' is not UTF-8 text: %s" % (self.field, e)) from None

    def decode_image(self):
        """Decodes the data as an image, upright as Label Studio shows it."""
        try:
            return Image.decode(self.raw.data, True)
        except BadInput as e:
            raise BadInput("task field '%s': %s" % (self.field, e.message)) from None


class Datapoints:
    """The task's datapoints as the pre-hook receives them."""

    def __init__(self, raw):
        self._items = [d if isinstance(d, Datapoint) else Datapoint(d) for d in raw]

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def __getitem__(self, i):
        return self._items[i]

    def get(self, field):
        """The datapoint for task data key ``field``, or ``None``."""
        return next((d for d in self._items if d.field == field), None)

    def image(self, ctx):
        """The image to run the model on: the field of the config's first
        ``<Image>``, else the first ``image/*`` datapoint."""
        field = None
        try:
            images = ctx.label_config().objects_of("Image")
            field = images[0].field if images else None
        except BadConfig:
            pass
        return self._pick(field, lambda d: d.content_type.startswith("image/"), "image")

    def text(self, ctx):
        """The text to run the model on: the field of the config's first
        text object, else the first ``text/*`` datapoint."""
        field = None
        try:
            texts = [o for o in ctx.label_config().objects if o.is_textual]
            field = texts[0].field if texts else None
        except BadConfig:
            pass
        return self._pick(field, lambda d: d.content_type.startswith("text/"), "text")

    def _pick(self, field, fallback, what):
        found = self.get(field) if field is not None else None
        if found is None:
            found = next((d for d in self._items if fallback(d)), None)
        if found is None:
            fields = ["%s (%s)" % (d.field, d.content_type) for d in self._items]
            raise BadInput(
                "the task has no %s to run the model on (datapoints: %s)" % (what, ", ".join(fields) if fields else "none")
            )
        return found
