"""The ``drtn`` command (``python main.py`` in a checkout): argument parsing only; each subcommand calls one
function of a package.

Installed with ``pip install .`` as the ``drtn`` console script. The options ``--assets``, ``-v`` and ``-q`` are
accepted before and after the subcommand. Third-party log noise (MediaPipe's glog/absl, OpenCV, PyOpenGL) is
turned down before those packages load (``-v`` shows the Python side again).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

# Before anything imports MediaPipe / OpenCV: their C++ loggers read these once, at load time.
_QUIET_NATIVE_LOGS = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2", "OPENCV_LOG_LEVEL": "ERROR"}
_NOISY_LOGGERS = ("OpenGL", "absl", "matplotlib", "PIL")
# a missing package -> the extra that installs it
_EXTRA_OF_MODULE = {
    "torch": "train",
    "scipy": "train",
    "matplotlib": "train",
    "onnx": "train",
    "onnxscript": "train",
    "PyQt6": "app",
    "tensorrt": "tensorrt",
}
for _key, _value in _QUIET_NATIVE_LOGS.items():
    os.environ.setdefault(_key, _value)  # set them yourself (e.g. GLOG_minloglevel=0) to see those logs

from export import cli as export_cli  # noqa: E402 - after the environment above, on purpose
from realtime import cli as realtime_cli  # noqa: E402
from training import cli as training_cli  # noqa: E402

ASSETS_HELP = "asset folder (bfm/, detectors/, teacher/); default $DRTN_ASSETS, then the user cache (drtn assets --fetch)"


def _add_common_options(parser: argparse.ArgumentParser, default) -> None:
    """``--assets``, ``-v``, ``-q``; on subcommands with ``default=SUPPRESS`` so that they override the values
    given before the subcommand only when given."""
    parser.add_argument("--assets", default=default if default is argparse.SUPPRESS else None, help=ASSETS_HELP)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default if default is argparse.SUPPRESS else False,
        help="debug logging (and third-party logs)",
    )
    verbosity.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default if default is argparse.SUPPRESS else False,
        help="warnings and errors only; no progress bar",
    )


def build_parser(prog: str = "drtn") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="DRTN real-time 3D face tracking")
    _add_common_options(parser, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    training_cli.register(commands)  # train, ablation, eval
    export_cli.register(commands)  # export, bench
    realtime_cli.register(commands)  # video, live, demo; and the handler of export's `bench --pipeline`
    register_assets(commands)  # assets
    for subparser in commands.choices.values():
        _add_common_options(subparser, argparse.SUPPRESS)
    return parser


# ---------------------------------------------------------------------------------------------- assets
def register_assets(commands: argparse._SubParsersAction) -> None:
    assets = commands.add_parser(
        "assets",
        help="check the asset folder (checksums); --fetch downloads missing files from their public origin",
        description="Check every file of the asset folder against its pinned SHA-256 and, with --fetch, download the "
        "missing or wrong ones from their public origin (3DDFA_V2 / 3DDFA on GitHub, OpenCV Zoo, MediaPipe), "
        "checked before they are moved into place. Default folder: --assets, $DRTN_ASSETS, else the user cache.",
    )
    assets.add_argument(
        "folder", nargs="?", default=None, help="asset folder (default: --assets / $DRTN_ASSETS / the user cache)"
    )
    assets.add_argument("--fetch", action="store_true", help="download missing or wrong files (needs internet)")
    assets.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help="fetch <URL>/<relative path> instead of each origin (e.g. file:///path/to/assets)",
    )
    assets.set_defaults(handler=run_assets)


def run_assets(args: argparse.Namespace) -> int:
    """``drtn assets``: one line per file (ok / missing / mismatch, and its origin); exit 1 if a required file is
    not ok."""
    from drtn.assets import check_asset_folder, fetch_assets, resolve_asset_dir

    root = resolve_asset_dir(args.folder or args.assets)
    if args.fetch or args.mirror:
        statuses = fetch_assets(root, mirror=args.mirror)
    else:
        statuses = check_asset_folder(root)
    print(f"asset folder {root}")
    for status in statuses:
        entry = status.file
        origin = entry.url or "no public origin known: copy it from the shared asset folder"
        need = "required" if entry.required else "optional"
        print(f"  {status.state:8s} {need:8s} {entry.relative}  ({origin})")
    bad = [s.file.relative for s in statuses if s.file.required and not s.ok]
    if bad:
        print(
            f"{len(bad)} required file(s) missing or wrong: {', '.join(bad)}"
            + ("" if args.fetch else " (drtn assets --fetch downloads those with an origin)"),
            file=sys.stderr,
        )
        return 1
    return 0


# ---------------------------------------------------------------------------------------------- entry
# Native log lines of MediaPipe's LiteRT / TFLite / absl, which no environment variable of mediapipe 1.x turns off:
# "INFO: [environment.cc:36] ...", "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
# "WARNING: Logging before InitGoogle() ...", "W0000 00:00:1795989871.099822    6497 inference_runner_litert.cc:1433] ..."
_NATIVE_NOISE = re.compile(
    rb"^(INFO: \[[\w.]+:\d+\]|INFO: Created TensorFlow Lite|WARNING: Logging before InitGoogle\(\)|[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\])"
)


def filter_native_stderr() -> None:
    """Drop MediaPipe's native INFO/WARNING lines (:data:`_NATIVE_NOISE`) from file descriptor 2, keep the rest.

    Python's own stderr (logging, progress bars, error lines) is moved to a duplicate of the original descriptor
    and is not filtered; only what C/C++ code writes to descriptor 2 passes through a line filter thread.
    """
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return
    sys.stderr.flush()
    sys.stderr = os.fdopen(
        os.dup(original), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace"
    )
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not _NATIVE_NOISE.match(line))
                if kept:
                    os.write(original, kept)

    import threading

    threading.Thread(target=forward, name="drtn-native-stderr", daemon=True).start()


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.quiet and hasattr(args, "no_progress"):
        args.no_progress = True


def main(argv: list[str] | None = None, prog: str = "drtn", quiet_native_logs: bool = False) -> int:
    """Run one command; returns the exit status. ``quiet_native_logs``: filter MediaPipe's native log lines out
    of stderr (:func:`filter_native_stderr`; the console script does, unless ``-v``)."""
    args = build_parser(prog).parse_args(argv)
    if quiet_native_logs and not args.verbose:
        filter_native_stderr()
    _configure_logging(args)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM / SIGHUP during `video` (realtime.video.StopRequested)
        logging.getLogger("drtn").warning("interrupted")
        return 128 + getattr(error, "signum", 2)  # 130 SIGINT, 143 SIGTERM, 129 SIGHUP
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        # one clear line for user errors; -v shows the traceback
        if args.verbose:
            raise
        extra = (
            _EXTRA_OF_MODULE.get((getattr(error, "name", None) or "").split(".")[0]) if isinstance(error, ImportError) else None
        )
        hint = f" (this command needs the [{extra}] extra: pip install 'drtn[{extra}]')" if extra else ""
        print(f"error: {error}{hint}", file=sys.stderr)
        return 2


def console_main() -> None:
    """The ``drtn`` console script."""
    sys.exit(main(quiet_native_logs=True))


if __name__ == "__main__":
    console_main()
