"""DRTN command-line entry in a source checkout: ``python main.py COMMAND ...`` = the installed ``drtn COMMAND ...``
(the parser and handlers live in :mod:`drtn_cli`)."""

from __future__ import annotations

import sys

from drtn_cli import build_parser, main  # noqa: F401 (build_parser: for tests and tools)

if __name__ == "__main__":
    sys.exit(main(prog="main.py", quiet_native_logs=True))
