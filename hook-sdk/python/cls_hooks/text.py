"""Text models: the model's own tokenizer, held by the host
(:class:`Tokenizer`, from the ``tokenizer.json`` in the model folder), and
its windows as model inputs. Tokenizing runs natively in the host; the
vocabulary is loaded once per backend, not once per call.

Offsets are characters (Unicode code points) of the original text: Python
``str`` indices, the unit Label Studio counts a span's ``start``/``end`` in.

>>> # in a pre-hook:
>>> # tok = Tokenizer.open()
>>> # windows = tok.encode(text, sliding(512, 128))
>>> # inputs = to_inputs(windows[0], ctx.model_inputs)
>>> o = sliding(512, 128)
>>> (o.max_length, o.stride, o.add_special_tokens)
(512, 128, True)
>>> truncated(64, pad=True).pad_to_max_length
True
"""

from . import _wit
from .errors import BadConfig, Failed
from .tensor import tensor

#: The model inputs a tokenizer fills, by the names Hugging Face exports use.
INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS = "input_ids", "attention_mask", "token_type_ids"


def encode_options(max_length=None, stride=None, pad=False, add_special_tokens=True):
    """The WIT ``encode-options``: ``max_length`` tokens per window (special
    tokens included; ``None`` = the whole text), ``stride`` tokens repeated
    between windows (``None`` = only the first window), ``pad`` every window
    to ``max_length``."""
    return _wit.host().EncodeOptions(bool(add_special_tokens), max_length, stride, bool(pad))


def whole():
    """The whole text in one window, with special tokens."""
    return encode_options()


def truncated(max_length, pad=False):
    """One window of at most ``max_length`` tokens; the rest is dropped."""
    return encode_options(max_length=max_length, pad=pad)


def sliding(max_length, stride, pad=False):
    """Every window of a long text, each repeating ``stride`` tokens of the
    one before, so an entity cut by a border is whole in the next window."""
    return encode_options(max_length=max_length, stride=stride, pad=pad)


def tokenizer_error(err):
    """The SDK error for a WIT ``tokenizer-error`` (as the Rust SDK maps it)."""
    if isinstance(err, _wit.host().TokenizerError_NotFound):
        # A missing tokenizer is the backend's setup, not the task.
        return BadConfig(err.value)
    return Failed("tokenizer: %s" % getattr(err, "value", err))


def _call(fn, *args):
    return _wit.call(tokenizer_error, fn, *args)


class Tokenizer:
    """The backend's tokenizer, held by the host."""

    __slots__ = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    @classmethod
    def open(cls):
        """The model's tokenizer; :class:`BadConfig` saying what to add when
        the model folder has no ``tokenizer.json``."""
        return cls(_call(_wit.host().open_tokenizer))

    def encode(self, text, options=None):
        """Tokenizes ``text``: a list of windows (one unless ``options`` ask
        for :func:`sliding` windows), each with ``ids``, ``type_ids``,
        ``attention_mask``, ``special_tokens_mask``, ``word_ids``, ``offsets``
        and ``tokens``."""
        return _call(self.inner.encode, str(text), options or whole())

    def encode_pair(self, text, pair, options=None):
        """Tokenizes two texts as the two segments of one input."""
        return _call(self.inner.encode_pair, str(text), str(pair), options or whole())

    def encode_batch(self, texts, options=None):
        """Tokenizes several texts in one host call; one list of windows each."""
        return _call(self.inner.encode_batch, [str(t) for t in texts], options or whole())

    def decode(self, ids, skip_special_tokens=True):
        """Turns ids back into text."""
        return _call(self.inner.decode, [int(i) for i in ids], bool(skip_special_tokens))

    def token_to_id(self, token):
        """The id of ``token``, or ``None``."""
        return self.inner.token_to_id(str(token))

    def id_to_token(self, id):
        """The token of ``id``, or ``None``."""
        return self.inner.id_to_token(int(id))

    @property
    def vocab_size(self):
        """Tokens in the vocabulary, added tokens included."""
        return self.inner.vocab_size()


def span(encoding, index):
    """``(start, end)`` in characters of the token at ``index``; ``None`` for
    special and padding tokens."""
    if index >= len(encoding.offsets) or encoding.special_tokens_mask[index]:
        return None
    start, end = encoding.offsets[index]
    return (start, end) if end > start else None


def windows_from_carry(carry):
    """The windows a pre-hook passed on as its carry (``{"windows": [...]}``,
    fields named as in the WIT ``encoding``): what the built-in pre-hook sends
    when it tokenizes a task's text. Each window is a ``SimpleNamespace``.

    >>> w = windows_from_carry('{"windows": [{"ids": [101, 7592, 102], "special_tokens_mask": [1, 0, 1], '
    ...                        '"word_ids": [null, 0, null], "offsets": [[0, 0], [0, 5], [0, 0]]}]}')
    >>> span(w[0], 1)
    (0, 5)
    """
    return _windows_in(_parse_carry(carry))


def _bad_carry(why):
    return BadConfig(
        'the carry holds no tokenizer windows (%s); the pre-hook must pass them on as {"text": ..., '
        '"windows": [...]} (TokenizedText.to_carry), as the built-in pre-hook does' % why
    )


def _parse_carry(carry):
    import json

    try:
        return json.loads(carry)
    except (TypeError, ValueError):
        raise _bad_carry("not JSON") from None


def _windows_in(carry):
    from types import SimpleNamespace

    try:
        return [
            SimpleNamespace(**{k: (list(map(tuple, v)) if k == "offsets" else v) for k, v in w.items()})
            for w in carry["windows"]
        ]
    except (TypeError, KeyError, AttributeError):
        raise _bad_carry('no "windows" list') from None


_WINDOW_FIELDS = ("ids", "type_ids", "attention_mask", "special_tokens_mask", "word_ids", "offsets", "tokens")


class TokenizedText:
    """A text and the windows of tokens it was cut into: what a text pre-hook
    passes on to its post-hook as the carry (:meth:`to_carry`), so token
    outputs map back to characters of this text. The built-in pre-hook
    passes the same on when it tokenizes a task.

    >>> # in a pre-hook:
    >>> # t = TokenizedText.new(Tokenizer.open(), text, sliding(256, 64, pad=True))
    >>> # return PreOutput(t.to_inputs(ctx.model_inputs), carry=t.to_carry())
    >>> t = TokenizedText.from_carry('{"text": "hello", "windows": [{"ids": [101, 7592, 102], '
    ...     '"special_tokens_mask": [1, 0, 1], "word_ids": [null, 0, null], "offsets": [[0, 0], [0, 5], [0, 0]]}]}')
    >>> (t.text, span(t.windows[0], 1))
    ('hello', (0, 5))
    """

    def __init__(self, text, windows):
        self.text = text
        self.windows = list(windows)

    @classmethod
    def new(cls, tokenizer, text, options=None):
        """Tokenizes ``text`` with ``tokenizer``."""
        return cls(text, tokenizer.encode(text, options))

    @classmethod
    def from_context(cls, ctx):
        """What the pre-hook passed on to this post-hook (see :meth:`from_carry`)."""
        if ctx.carry is None:
            raise _bad_carry("the pre-hook passed no carry")
        return cls.from_carry(ctx.carry)

    @classmethod
    def from_carry(cls, carry):
        """What :meth:`to_carry` (or the built-in pre-hook) passed on."""
        value = _parse_carry(carry)
        text = value.get("text") if isinstance(value, dict) else None
        if not isinstance(text, str):
            raise _bad_carry('no "text"')
        return cls(text, _windows_in(value))

    def to_carry(self):
        """The carry for the post-hook: ``{"text": ..., "windows": [...]}``."""
        import json

        windows = [{k: list(getattr(w, k)) for k in _WINDOW_FIELDS if hasattr(w, k)} for w in self.windows]
        return json.dumps({"text": self.text, "windows": windows})

    def to_inputs(self, model_inputs):
        """Every window as the model's inputs, stacked ``[windows, tokens]``
        (see :func:`to_inputs`); the windows must be padded to one length."""
        return _stacked_inputs(self.windows, model_inputs)


def to_inputs(encoding, model_inputs):
    """One window as the model's inputs, shape ``[1, tokens]``: a tensor per
    declared input named ``input_ids``, ``attention_mask`` or
    ``token_type_ids``, in the integer dtype the model declares for it.

    >>> from collections import namedtuple
    >>> E = namedtuple("E", "ids type_ids attention_mask")
    >>> from cls_hooks.context import TensorSpec
    >>> inputs = to_inputs(E([101, 7592, 102], [0, 0, 0], [1, 1, 1]),
    ...                    [TensorSpec("input_ids", "i64", [-1, -1]), TensorSpec("attention_mask", "i32", [-1, -1])])
    >>> [t.to_list() for t in inputs]
    [[101, 7592, 102], [1, 1, 1]]
    """
    return _stacked_inputs([encoding], model_inputs)


def _stacked_inputs(windows, model_inputs):
    width = len(windows[0].ids) if windows else 0
    for w in windows:
        if len(w.ids) != width:
            raise BadConfig(
                "tokenizer windows of %d and %d tokens cannot be stacked into one input; "
                "pad them to one length (pad=True)" % (width, len(w.ids))
            )
    out = []
    for spec in model_inputs:
        field = {INPUT_IDS: "ids", ATTENTION_MASK: "attention_mask", TOKEN_TYPE_IDS: "type_ids"}.get(spec.name)
        if field is None:
            raise BadConfig(
                "the model input '%s' is not one a tokenizer fills (%s, %s, %s); fill it in the pre-hook"
                % (spec.name, INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)
            )
        if spec.dtype not in ("i64", "i32"):
            raise BadConfig("the model input '%s' is %s; token inputs are int64 or int32" % (spec.name, spec.dtype))
        values = [v for w in windows for v in getattr(w, field)]
        out.append(tensor(spec.name, [len(windows), width], values, dtype=spec.dtype))
    return out
