"""Token classification (NER) to Label Studio spans: per-token logits of one
or more tokenizer windows become :class:`Entity` spans with character
offsets in the original text, then ``labels`` regions (the twin of the Rust
SDK's ``entities`` module, with the same results).

Words are labelled by their first sub-token. A word seen in several
overlapping windows takes its label from the window where it has the most
context (the most tokens on its nearer side; ties go to the more
confident), so an entity cut by a window border comes out whole. Tags follow BIO/IOB2 (``B-PER``,
``I-PER``, ``O``), BILOU/BIOES (``U-``/``S-`` single, ``L-``/``E-`` last) or
plain IO (``PER``).

>>> from collections import namedtuple
>>> W = namedtuple("W", "ids special_tokens_mask word_ids offsets")
>>> # "Ada Lovelace wrote": [CLS] ada love ##lace wrote [SEP]
>>> w = W([101, 1, 2, 3, 4, 102], [1, 0, 0, 0, 0, 1], [None, 0, 1, 1, 2, None],
...       [(0, 0), (0, 3), (4, 8), (8, 12), (13, 18), (0, 0)])
>>> logits = [0, 0, 0,  0, 5, 0,  0, 0, 5,  5, 0, 0,  5, 0, 0,  0, 0, 0]
>>> [(e.label, e.start, e.end) for e in entities([(w, logits)], ["O", "B-PER", "I-PER"])]
[('PER', 0, 12)]
"""

from . import ops
from .errors import BadConfig
from .results import Region


class Entity:
    """A span of the text with one label; ``start``/``end`` in characters."""

    __slots__ = ("label", "start", "end", "score")

    def __init__(self, label, start, end, score):
        self.label, self.start, self.end, self.score = label, start, end, score

    def __repr__(self):
        return "Entity(%r, %d, %d, %.3f)" % (self.label, self.start, self.end, self.score)

    def to_region(self, binding, text):
        """A ``labels`` region on ``text``, the label resolved against the
        control; ``None`` when the labeling config does not know it."""
        label = binding.resolve_label(self.label)
        if label is None:
            return None
        # As JSON the Rust SDK writes the f32 score's shortest form.
        return Region.text_span(binding, self.start, self.end, text[self.start : self.end], [label]).with_score(
            ops.widen(self.score)
        )


def regions(found, binding, text):
    """``labels`` regions for every entity the labeling config knows."""
    return [r for r in (e.to_region(binding, text) for e in found) if r is not None]


def window_scores(windows, logits):
    """Pairs each window with its rows of a token-classification output
    (an :class:`~cls_hooks.tensor.Array`, ``[windows, tokens, labels]`` or
    ``[tokens, labels]``): the step between the model's logits and
    :func:`entities`.

    >>> from collections import namedtuple
    >>> from cls_hooks.tensor import Array
    >>> W = namedtuple("W", "ids")
    >>> [len(rows) for _, rows in window_scores([W([1, 2, 3])], Array([1, 3, 2], [0.0] * 6))]
    [6]
    """
    n_labels = logits.shape[-1] if logits.shape else 0
    tokens = sum(len(w.ids) for w in windows)
    if n_labels == 0 or len(logits.data) != tokens * n_labels:
        raise BadConfig(
            "token logits of shape %s do not fit %d tokenizer windows of %d tokens in all; "
            "expected [windows, tokens, labels]" % (list(logits.shape), len(windows), tokens)
        )
    pairs, at = [], 0
    for w in windows:
        size = len(w.ids) * n_labels
        pairs.append((w, logits.data[at : at + size]))
        at += size
    return pairs


def _parse_tag(tag):
    if tag in ("O", ""):
        return "outside", ""
    if len(tag) > 2 and tag[1] in "-_":
        position = {"B": "begin", "I": "inside", "L": "last", "E": "last", "U": "single", "S": "single"}.get(tag[0])
        if position:
            return position, tag[2:]
    return "inside", tag


def _span(window, index):
    if index >= len(window.offsets) or window.special_tokens_mask[index]:
        return None
    start, end = window.offsets[index]
    return (start, end) if end > start else None


def _word_labels(windows, n_labels):
    words = {}
    for window, logits in windows:
        tokens = len(window.ids)
        if n_labels == 0 or len(logits) != tokens * n_labels:
            raise BadConfig(
                "token logits hold %d values for %d tokens and %d labels; expected [tokens, labels] per window"
                % (len(logits), tokens, n_labels)
            )
        text_tokens = [i for i in range(tokens) if _span(window, i) is not None]
        first_text, last_text = (text_tokens[0], text_tokens[-1]) if text_tokens else (0, 0)
        previous = None
        for index in range(tokens):
            span = _span(window, index)
            if span is None:
                previous = None
                continue
            word = window.word_ids[index]
            if word is None:
                continue
            first = previous != word
            previous = word
            if first:
                label, score = ops.argmax(ops.softmax(logits[index * n_labels : (index + 1) * n_labels]))
                context = min(index - first_text, last_text - index)
                best = words.get(word)
                if best is None:
                    words[word] = [span[0], span[1], label, score, context]
                elif (context, score) > (best[4], best[3]):
                    words[word] = [min(best[0], span[0]), max(best[1], span[1]), label, score, context]
            elif word in words:
                words[word][1] = max(words[word][1], span[1])
    return [words[w] for w in sorted(words)]


def entities(windows, labels):
    """Entities in ``windows`` (pairs of a tokenizer window and its flat
    ``tokens × labels`` logits), in text order."""
    found, open_ = [], None

    def close():
        nonlocal open_
        if open_ is not None:
            entity, n = open_
            entity.score = ops.f32(entity.score / n)
            found.append(entity)
            open_ = None

    for start, end, label, score, _ in _word_labels(windows, len(labels)):
        tag = labels[label] if label < len(labels) else "O"
        position, kind = _parse_tag(tag)
        if position in ("inside", "last") and open_ is not None and open_[0].label == kind:
            open_[0].end = end
            open_[0].score = ops.f32(open_[0].score + score)
            open_ = (open_[0], open_[1] + 1)
        else:
            close()
            if position != "outside":
                open_ = (Entity(kind, start, end, score), 1)
        if position in ("last", "single"):
            close()
    close()
    return found
