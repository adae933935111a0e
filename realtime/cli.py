"""`main.py video | live` argument definitions."""
from __future__ import annotations

import argparse


def _not_built(name: str):
    def handler(args: argparse.Namespace) -> int:
        raise RuntimeError(f"'{name}' is not built yet (see the open issues)")

    return handler


def register(commands: argparse._SubParsersAction) -> None:
    for name, text in (("video", "process a video file headlessly"), ("live", "open the webcam / video app")):
        sub = commands.add_parser(name, help=text)
        sub.set_defaults(handler=_not_built(name))
