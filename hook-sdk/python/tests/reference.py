"""Renders the API reference of ``cls_hooks`` as Markdown, from the code:
every public module, class, method and function with its signature and
docstring (doctest examples become code blocks). ``run.py`` checks that
``docs/python-sdk.md`` is current and ``run.py --write-reference`` rewrites
it, so the reference cannot drift from the SDK."""

import importlib
import inspect

# In the order a hook author meets them.
MODULES = (
    "export", "context", "tensor", "labelconfig", "results", "ops", "native", "polygon", "image",
    "text", "entities", "rle", "log", "errors",
)  # fmt: skip

HEADER = """# `cls_hooks` reference

The Python SDK for configurable-ls-backend hooks, generated from its code by
`hook-sdk/python/tests/run.py --write-reference docs/python-sdk.md` (the
SDK's tests fail when this file is stale). The SDK itself: `hook-sdk/python`,
or `configurable-ls-backend hook sdk --python <dir>` to write it out for an
editor. Examples in `>>>` blocks run as the SDK's doctests.

"""


def _doc(obj):
    # The object's own docstring: an inherited one (object.__init__'s)
    # says nothing about this SDK.
    text = inspect.cleandoc(obj.__doc__) if obj.__doc__ else ""
    out, in_code = [], False
    for line in text.splitlines():
        code_line = line.startswith(">>>") or line.startswith("...")
        if code_line and not in_code:
            out.append("```python")
            in_code = True
        elif in_code and not line.strip():
            out.append("```")
            in_code = False
        out.append(line)
    if in_code:
        out.append("```")
    return "\n".join(out).strip()


def _signature(obj):
    """``obj``'s parameters as written, without a method's ``self``/``cls``."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(…)"
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls"):
        sig = sig.replace(parameters=params[1:])
    return str(sig)


def _public(module, obj):
    return getattr(obj, "__module__", None) == module.__name__


def _members(cls):
    """``(name, member, heading prefix)`` of a class's public members."""
    for name, member in cls.__dict__.items():
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(member, staticmethod):
            yield name, member.__func__, "static method "
        elif isinstance(member, classmethod):
            yield name, member.__func__, "class method "
        elif isinstance(member, property):
            yield name, member, "property "
        elif inspect.isfunction(member):
            yield name, member, ""


def _render_class(name, cls):
    parts = ["### class `%s`" % name, _doc(cls)]
    for member_name, member, kind in _members(cls):
        if member_name == "__init__":
            parts.append("#### `%s%s`" % (name, _signature(member)))
        elif kind == "property ":
            parts.append("#### property `%s.%s`" % (name, member_name))
        else:
            parts.append("#### %s`%s.%s%s`" % (kind, name, member_name, _signature(member)))
        doc = _doc(member)
        if doc:
            parts.append(doc)
    return parts


def render():
    """The whole reference, as Markdown."""
    parts = [HEADER.rstrip()]
    for short in MODULES:
        module = importlib.import_module("cls_hooks." + short)
        parts.append("## `cls_hooks.%s`" % short)
        parts.append(_doc(module))
        for name, obj in vars(module).items():
            if name.startswith("_") or not _public(module, obj):
                continue
            if inspect.isclass(obj):
                parts.extend(_render_class(name, obj))
            elif inspect.isfunction(obj):
                parts.append("### `%s%s`" % (name, _signature(obj)))
                doc = _doc(obj)
                if doc:
                    parts.append(doc)
    return "\n\n".join(p for p in parts if p) + "\n"
