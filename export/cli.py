"""`main.py export | bench` argument definitions."""
from __future__ import annotations

import argparse


def _not_built(name: str):
    def handler(args: argparse.Namespace) -> int:
        raise RuntimeError(f"'{name}' is not built yet (see the open issues)")

    return handler


def register(commands: argparse._SubParsersAction) -> None:
    for name, text in (("export", "export the model to ONNX (and TensorRT)"), ("bench", "latency benchmark of backends / pipeline")):
        sub = commands.add_parser(name, help=text)
        sub.set_defaults(handler=_not_built(name))
