"""Logging to the server log through the host's ``log`` import; the host
tags each line with backend, hook and task, truncates it to 1 KiB and
rate-limits calls, so log decisions, not data.

>>> from cls_hooks import log
>>> log.warn("label %r is not in the config, skipped", "cat")  # doctest: +SKIP

Outside a component (plain CPython, unit tests) lines go to stderr.
"""

import sys

from . import _wit

LEVELS = ("trace", "debug", "info", "warn", "error")


def log(level, message, *args):
    """Writes one line at ``level`` (``"trace"`` … ``"error"``); ``args`` are
    ``%``-formatted into ``message``."""
    if args:
        message = message % args
    message = str(message)
    try:
        host = _wit.host()
        host.log(getattr(host.Level, level.upper()), message)
    except (ImportError, NotImplementedError):
        print("[%s] %s" % (level, message), file=sys.stderr)


def trace(message, *args):
    """Logs at trace level."""
    log("trace", message, *args)


def debug(message, *args):
    """Logs at debug level."""
    log("debug", message, *args)


def info(message, *args):
    """Logs at info level."""
    log("info", message, *args)


def warn(message, *args):
    """Logs at warn level."""
    log("warn", message, *args)


warning = warn


def error(message, *args):
    """Logs at error level."""
    log("error", message, *args)
