"""Label Studio's brush RLE (the bit-packed format of ``@thi.ng/rle-pack``,
written as ``label_studio_converter.brush.encode_rle`` writes it: word size
8, run fields of 3, 4, 8 and 16 bits), byte for byte as the Rust SDK.

>>> rgba = decode(encode_mask([False, True, False, False, False, False]))
>>> len(rgba), rgba[4:8]
(24, [255, 255, 255, 255])
"""

from .errors import BadInput

_RUN_BITS = (3, 4, 8, 16)
_WORD_BITS = 8


class _BitWriter:
    def __init__(self):
        self.bytes = bytearray()
        self.bits = 0

    def write(self, value, n):
        for i in range(n - 1, -1, -1):
            if self.bits % 8 == 0:
                self.bytes.append(0)
            self.bytes[-1] |= ((value >> i) & 1) << (7 - self.bits % 8)
            self.bits += 1

    def finish(self):
        # The converter always appends 8 - len % 8 zero bits: a full byte when aligned.
        if self.bits % 8 == 0:
            self.bytes.append(0)
        return bytes(self.bytes)


def _encode_runs(length, runs):
    w = _BitWriter()
    w.write(length, 32)
    w.write(_WORD_BITS - 1, 5)
    for bits in _RUN_BITS:
        w.write(bits - 1, 4)
    for n, value in runs:
        if n == 1:
            w.write(0, 1)
            w.write(0, 2)
            w.write(0, _RUN_BITS[0])
            w.write(value, _WORD_BITS)
            continue
        while n > 1 << 16:
            w.write(1, 1)
            w.write(3, 2)
            w.write((1 << 16) - 1, 16)
            w.write(value, _WORD_BITS)
            n -= 1 << 16
        index = 0 if n <= 8 else 1 if n <= 16 else 2 if n <= 256 else 3
        w.write(1, 1)
        w.write(index, 2)
        w.write(n - 1, _RUN_BITS[index])
        w.write(value, _WORD_BITS)
    return w.finish()


def encode(values):
    """Encodes a flat sequence of bytes (``encode_rle``)."""
    runs = []
    for v in values:
        if runs and runs[-1][1] == v:
            runs[-1][0] += 1
        else:
            runs.append([1, v])
    return _encode_runs(len(values), runs)


def encode_mask(mask):
    """Encodes a mask (truthy = set, row-major) as Label Studio's brush
    value: every pixel as four equal RGBA bytes, 255 where set."""
    runs = []
    count = 0
    for set_ in mask:
        v = 255 if set_ else 0
        count += 1
        if runs and runs[-1][1] == v:
            runs[-1][0] += 4
        else:
            runs.append([4, v])
    return _encode_runs(count * 4, runs)


def decode(data):
    """Decodes Label Studio RLE into its values (RGBA bytes for brush masks)."""
    pos = [0]

    def read(n):
        v = 0
        for _ in range(n):
            i = pos[0] // 8
            if i >= len(data):
                raise BadInput("brush RLE ends early")
            v = (v << 1) | ((data[i] >> (7 - pos[0] % 8)) & 1)
            pos[0] += 1
        return v

    count = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = []
    while len(out) < count:
        repeat = read(1) == 1
        index = read(2)
        n = min(read(sizes[index]) + 1, count - len(out))
        if repeat:
            out.extend([read(word)] * n)
        else:
            out.extend(read(word) for _ in range(n))
    return out
