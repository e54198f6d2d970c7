"""The reference the host tokenizer is checked against: the Hugging Face
`tokenizers` Python package on the same tokenizer.json.

Reads {"tokenizer": path, "cases": [{"text", "pair"?, "add_special_tokens",
"max_length"?, "stride"?, "pad_to_max_length"}]} as JSON on stdin and
writes, for each case, its windows (the encoding, then its overflowing
windows when a stride is given) with ids, type ids, masks, word ids,
character offsets and tokens, as JSON on stdout.
"""

import json
import sys

from tokenizers import Tokenizer


def window(encoding):
    return {
        "ids": encoding.ids,
        "type_ids": encoding.type_ids,
        "attention_mask": encoding.attention_mask,
        "special_tokens_mask": encoding.special_tokens_mask,
        "word_ids": encoding.word_ids,
        "offsets": [list(o) for o in encoding.offsets],
        "tokens": encoding.tokens,
    }


def encode(tokenizer, case):
    # Options come only from the case, as on the host: settings saved in
    # the file (often padding to 512) are cleared first.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    max_length = case.get("max_length")
    stride = case.get("stride")
    if max_length is not None:
        tokenizer.enable_truncation(max_length=max_length, stride=stride or 0)
        if case.get("pad_to_max_length"):
            tokenizer.enable_padding(length=max_length)
    encoding = tokenizer.encode(
        case["text"], case.get("pair"), add_special_tokens=case["add_special_tokens"]
    )
    windows = [encoding] + (list(encoding.overflowing) if stride is not None else [])
    return [window(w) for w in windows]


def main():
    request = json.load(sys.stdin)
    tokenizer = Tokenizer.from_file(request["tokenizer"])
    json.dump([encode(tokenizer, case) for case in request["cases"]], sys.stdout)


if __name__ == "__main__":
    main()
