"""Why a hook gave up on a task.

Raise :class:`BadInput`, :class:`BadConfig` or :class:`Failed` (all
:class:`HookError`) from a hook: the SDK turns them into the WIT
``hook-error`` variant, whose message reaches the Label Studio user, so say
what to fix. Any other exception becomes ``failed`` with its type, message
and where it was raised.

>>> str(BadConfig("model has 3 outputs, expected 1"))
'bad config: model has 3 outputs, expected 1'
>>> BadConfig("model has 3 outputs, expected 1").message
'model has 3 outputs, expected 1'
"""


class HookError(Exception):
    """Base class; raise a subclass. ``message`` is the text without the kind."""

    #: Prefix of ``str(error)``, as the Rust SDK's ``Display``.
    prefix = ""

    def __init__(self, message):
        self.message = str(message)
        super().__init__(self.message)

    def __str__(self):
        return self.prefix + self.message

    def to_wit(self):
        """The WIT ``hook-error`` value."""
        from . import _wit

        t = _wit.types()
        return t.HookError_Failed(self.message)


class BadInput(HookError):
    """The task's data is not what the hook can handle (not an image, empty text, …)."""

    prefix = "bad input: "

    def to_wit(self):
        from . import _wit

        return _wit.types().HookError_BadInput(self.message)


class BadConfig(HookError):
    """The model output or the labeling config is not what the hook expects."""

    prefix = "bad config: "

    def to_wit(self):
        from . import _wit

        return _wit.types().HookError_BadConfig(self.message)


class Failed(HookError):
    """Anything else."""
