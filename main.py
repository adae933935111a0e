"""DRTN command-line entry: argument parsing only; each subcommand calls one function of a package."""
from __future__ import annotations

import argparse
import logging
import sys

from export import cli as export_cli
from realtime import cli as realtime_cli
from training import cli as training_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="DRTN real-time 3D face tracking")
    parser.add_argument("--assets", default=None, help="asset folder (bfm/, teacher/); default $DRTN_ASSETS or ~/.cache/drtn/assets")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    training_cli.register(commands)   # train, ablation, eval
    export_cli.register(commands)     # export, bench
    realtime_cli.register(commands)   # video, live, demo; and the handler of export's `bench --pipeline`
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM / SIGHUP during `video` (realtime.video.StopRequested)
        logging.getLogger("drtn").warning("interrupted")
        return 128 + getattr(error, "signum", 2)  # 130 SIGINT, 143 SIGTERM, 129 SIGHUP
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        # one clear line for user errors; -v shows the traceback
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
