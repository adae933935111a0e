"""The PyQt6 live app (``main.py live``). Qt is imported only when the app runs.

Entry points: :func:`run_live` (from parsed ``main.py live`` arguments) and :func:`add_live_arguments`.
"""

from __future__ import annotations

import argparse

from realtime.ui.options import LiveOptions, add_live_arguments

__all__ = ["LiveOptions", "add_live_arguments", "run_live"]


def run_live(args: argparse.Namespace | LiveOptions) -> int:
    """Open the app on ``args.source`` (default: webcam 0; without one the window says so) and run until it closes.

    Args:
        args: ``main.py live`` arguments (see :func:`add_live_arguments`; ``assets`` comes from the main
            parser) or a :class:`LiveOptions`.
    Returns:
        The exit status (0).
    Raises:
        ImportError: PyQt6 / PyOpenGL missing (the message names the install command).
        RuntimeError: no display, OpenGL too old, or the source / backend could not start.
    """
    options = args if isinstance(args, LiveOptions) else LiveOptions.from_args(args)
    try:
        from realtime.ui.app import run_live as run_app
    except ImportError as error:
        raise ImportError(
            f"the live app needs PyQt6 and PyOpenGL ({error}): pip install PyQt6==6.11.0 PyOpenGL==3.1.10"
        ) from error
    return run_app(options)
