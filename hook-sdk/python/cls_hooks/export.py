"""Turning a plain function into the component's export.

componentize-py 0.25 looks for a class named ``WitWorld`` in the app module
(the module named on its command line) and calls its ``post_hook`` or
``pre_hook`` method. :func:`export_post_hook` / :func:`export_pre_hook`
define that class in the module of the function they are given::

    from cls_hooks import export_post_hook, Prediction

    @export_post_hook
    def post_hook(outputs, ctx):
        return [Prediction([])]

The wrapper converts the host's WIT records into SDK objects, the return
value into what the world expects, and exceptions into the WIT
``hook-error``: :class:`~cls_hooks.errors.HookError` subclasses keep their
kind, anything else becomes ``failed`` with the exception and where it was
raised.
"""

import sys
import traceback

from . import _wit, jsonenc
from .context import Context, Datapoints
from .errors import Failed, HookError
from .image import Transform
from .results import Prediction, RegionIds
from .tensor import Outputs, to_wit

#: Longest traceback summary put into a ``failed`` message.
MAX_TRACEBACK_CHARS = 2000


class RawJson(str):
    """Prediction JSON the hook wrote itself, passed to the host unchanged
    (the host still validates it). A plain ``str`` return is treated alike."""


class PreOutput:
    """What a pre-hook returns: model ``inputs`` (tensors) and an optional
    ``carry`` string for the post-hook (``ctx.carry``)."""

    __slots__ = ("inputs", "carry")

    def __init__(self, inputs, carry=None):
        self.inputs, self.carry = list(inputs), carry

    @classmethod
    def from_image(cls, image, options):
        """The usual pre-hook result for one image: ``image`` as the model's
        only input (handed to the host with
        :meth:`~cls_hooks.image.Image.set_input`, never copied into the
        interpreter) and its transform passed to the post-hook (see
        :meth:`with_transform`), so boxes and outlines map back onto the
        original."""
        image.set_input(options)
        return cls([]).with_transform(image.transform)

    def with_carry(self, carry):
        """Passes ``carry`` to the post-hook."""
        self.carry = str(carry)
        return self

    def with_transform(self, transform):
        """Passes an image :class:`~cls_hooks.image.Transform` to the post-hook,
        where ``ctx.image_transform()`` finds it."""
        if not isinstance(transform, Transform):
            transform = Transform.from_wit(transform)
        return self.with_carry(transform.to_json())


def describe_exception(exc):
    """``Type: message`` and a short traceback (innermost frames last)."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = traceback.extract_tb(exc.__traceback__)
    # The SDK's own wrapper frame says nothing to the hook author.
    frames = [f for f in frames if not f.filename.endswith("cls_hooks/export.py")]
    if frames:
        summary = "".join(traceback.format_list(frames[-8:])).rstrip()
        text = "%s\nTraceback (most recent call last):\n%s" % (text, summary)
    if len(text) > MAX_TRACEBACK_CHARS:
        text = text[: MAX_TRACEBACK_CHARS - 1] + "…"
    return text


def _wit_error(exc):
    if isinstance(exc, HookError):
        return exc.to_wit()
    return _wit.types().HookError_Failed(describe_exception(exc))


def post_json(value, ctx):
    """The JSON text for what a post-hook returned: predictions (region ids
    and the backend's model version filled in), JSON-ready dicts/lists, or
    raw JSON text (:class:`RawJson` or ``str``)."""
    if isinstance(value, str):
        return str(value)
    if value is None:
        raise Failed("post_hook returned None: return a list of predictions ([] for none)")
    if isinstance(value, Prediction):
        value = [value]
    if isinstance(value, (list, tuple)):
        ids = RegionIds(ctx.task_id)
        value = [p.to_json(ids, ctx.model_version) if isinstance(p, Prediction) else p for p in value]
    try:
        return jsonenc.dumps(value)
    except (TypeError, ValueError) as e:
        raise Failed("the post-hook's result is not JSON: %s" % e) from None


def pre_output(value):
    """The WIT ``pre-output`` for what a pre-hook returned: a :class:`PreOutput`,
    a list of tensors, or an ``(inputs, carry)`` pair."""
    world = _wit.world()
    if isinstance(value, world.PreOutput):
        return value
    if isinstance(value, PreOutput):
        inputs, carry = value.inputs, value.carry
    elif isinstance(value, tuple) and len(value) == 2 and (value[1] is None or isinstance(value[1], str)):
        inputs, carry = value
    elif isinstance(value, (list, tuple)):
        inputs, carry = value, None
    else:
        raise Failed("pre_hook returned %s: return a PreOutput or a list of tensors" % type(value).__name__)
    return world.PreOutput([to_wit(t) for t in inputs], carry)


def run_post_hook(func, outputs, ctx):
    """Calls ``func(Outputs, Context)`` and returns the JSON text, raising
    ``Err(hook-error)`` on failure; used by :func:`export_post_hook`."""
    try:
        context = Context(ctx)
        return post_json(func(Outputs(outputs), context), context)
    except BaseException as e:  # noqa: BLE001 - everything (even SystemExit) must become a hook-error
        error = _wit_error(e)
    raise _wit.err(error)


def run_pre_hook(func, datapoints, ctx):
    """Calls ``func(Datapoints, Context)`` and returns the WIT ``pre-output``,
    raising ``Err(hook-error)`` on failure; used by :func:`export_pre_hook`."""
    try:
        return pre_output(func(Datapoints(datapoints), Context(ctx)))
    except BaseException as e:  # noqa: BLE001
        error = _wit_error(e)
    raise _wit.err(error)


def _install(func, cls):
    module = sys.modules.get(func.__module__)
    if module is not None:
        module.WitWorld = cls
    func.WitWorld = cls
    return func


def export_post_hook(func):
    """Exports ``func(outputs, ctx)`` as the component's ``post-hook``:
    defines ``WitWorld`` in ``func``'s module. ``func`` returns a list of
    :class:`~cls_hooks.results.Prediction` (or one), JSON-ready dicts, or
    raw JSON text; it is returned unchanged, so it stays testable."""

    class WitWorld:
        def post_hook(self, outputs, ctx):
            return run_post_hook(func, outputs, ctx)

    return _install(func, WitWorld)


def export_pre_hook(func):
    """Exports ``func(datapoints, ctx)`` as the component's ``pre-hook``:
    defines ``WitWorld`` in ``func``'s module. ``func`` returns a
    :class:`PreOutput` or a list of tensors."""

    class WitWorld:
        def pre_hook(self, datapoints, ctx):
            return run_pre_hook(func, datapoints, ctx)

    return _install(func, WitWorld)
