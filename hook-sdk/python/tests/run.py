"""Runs the SDK's unit tests and doctests on plain CPython.

The SDK imports the componentize-py bindings (``wit_world``) lazily; here
they are generated with ``componentize-py bindings`` into a temporary
directory (host functions are stubs there: logging falls back to stderr).

    python3 hook-sdk/python/tests/run.py [--componentize-py PATH] [--write-reference PATH]

``--write-reference docs/python-sdk.md`` regenerates the SDK reference
(``reference.py``) instead; ``test_reference.py`` fails when it is stale.

Exits non-zero on any failure; prints unittest's summary.
"""

import argparse
import doctest
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
# The WIT the Rust SDK builds against, beside this package in hook-sdk/.
WIT = os.path.join(os.path.dirname(SDK), "wit")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--componentize-py", default=shutil.which("componentize-py") or "componentize-py")
    parser.add_argument("--write-reference", metavar="PATH", help="write the SDK reference (Markdown) and exit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as bindings:
        subprocess.run(
            [args.componentize_py, "-q", "-d", WIT, "-w", "pre-hook", "bindings", bindings],
            check=True,
        )
        sys.path[:0] = [bindings, SDK, HERE]
        if args.write_reference:
            import reference

            with open(args.write_reference, "w", encoding="utf-8") as f:
                f.write(reference.render())
            print("wrote " + args.write_reference)
            return 0
        suite = unittest.defaultTestLoader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
        for name in ("context", "entities", "errors", "image", "jsonenc", "labelconfig", "native", "ops", "polygon", "results", "rle", "tensor", "text"):
            suite.addTests(doctest.DocTestSuite(importlib.import_module("cls_hooks." + name)))
        result = unittest.TextTestRunner(verbosity=1).run(suite)
        passed = result.testsRun - len(result.failures) - len(result.errors)
        print("%d passed, %d failed" % (passed, len(result.failures) + len(result.errors)))
        return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
