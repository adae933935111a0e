"""`main.py train | eval | demo` argument definitions; the work lives in training.* modules."""
from __future__ import annotations

import argparse


def _not_built(name: str):
    def handler(args: argparse.Namespace) -> int:
        raise RuntimeError(f"'{name}' is not built yet (see the open issues)")

    return handler


def register(commands: argparse._SubParsersAction) -> None:
    for name, text in (("train", "train a DRTN model"), ("eval", "evaluate models (Table I layout, CED)"), ("demo", "reconstruct a sample image to a file")):
        sub = commands.add_parser(name, help=text)
        sub.set_defaults(handler=_not_built(name))
