"""The generated SDK reference (``docs/python-sdk.md``) matches the code."""

import os
import unittest

import reference

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs", "python-sdk.md")


class ReferenceTest(unittest.TestCase):
    def test_the_reference_in_docs_is_current(self):
        with open(DOC, encoding="utf-8") as f:
            written = f.read()
        self.assertTrue(
            written == reference.render(),
            "docs/python-sdk.md is stale: run "
            "hook-sdk/python/tests/run.py --write-reference docs/python-sdk.md",
        )

    def test_every_public_function_is_in_the_reference(self):
        text = reference.render()
        for name in ("ctc_greedy_decode", "as_probabilities", "top_choice", "textarea", "decode_image"):
            self.assertIn(name, text)


if __name__ == "__main__":
    unittest.main()
