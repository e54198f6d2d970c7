"""Lazy access to the componentize-py bindings (``wit_world``).

componentize-py generates the ``wit_world`` package for the world being
built (``pre-hook`` or ``post-hook``). Both worlds share ``types`` and
``host``; only the pre-hook world has ``PreOutput``. Importing lazily keeps
the SDK importable in either world and on plain CPython (for unit tests
against bindings generated with ``componentize-py bindings``).
"""


def types():
    """``wit_world.imports.types``: tensors, context, hook errors."""
    from wit_world.imports import types as t

    return t


def host():
    """``wit_world.imports.host``: log and the image resource."""
    from wit_world.imports import host as h

    return h


def ops():
    """``wit_world.imports.ops``: the host's native ops on tensors."""
    from wit_world.imports import ops as o

    return o


def world():
    """``wit_world`` itself (``WitWorld`` protocol, ``PreOutput``)."""
    import wit_world

    return wit_world


def err(value):
    """``componentize_py_types.Err(value)``: raising it returns ``result::err``."""
    from componentize_py_types import Err

    return Err(value)


def call(to_error, fn, *args):
    """``fn(*args)``, with a WIT ``result::err`` raised as the SDK error
    ``to_error(value)`` makes of it."""
    from componentize_py_types import Err

    try:
        return fn(*args)
    except Err as e:
        raise to_error(e.value) from None
