"""The pipeline flags every entry point shares, and the helpers that turn them into a pipeline and a backend.

Used by the command line (:mod:`realtime.cli`: ``video``, ``demo``, ``live``), the app (:mod:`realtime.ui`) and the
pipeline benchmark (:mod:`realtime.bench`), so every entry point takes the same flags; none of them imports the
command line module. Nothing heavy is imported at module level (``drtn --help`` stays fast).
"""

from __future__ import annotations

import argparse
import logging
import math

LOGGER = logging.getLogger(__name__)

DEFAULT_BACKEND = "onnxruntime"
# export.backends.BACKEND_KINDS, spelled out so that building the parser imports nothing (a test keeps them equal)
BACKEND_CHOICES = ("onnxruntime", "torch", "tensorrt", "teacher")
SMOOTHING_CHOICES = ("offline", "causal", "off")


def smoothing_choice(args: argparse.Namespace, default: str = "causal") -> str:
    """``offline`` / ``causal`` / ``off`` from ``--smoothing`` and ``--no-smoothing`` (``default`` when neither).

    Raises:
        ValueError: ``--no-smoothing`` with another ``--smoothing``.
    """
    chosen = getattr(args, "smoothing", None)
    if getattr(args, "no_smoothing", False):
        if chosen not in (None, "off"):
            raise ValueError(f"--no-smoothing contradicts --smoothing {chosen}: pass one of them")
        return "off"
    return chosen or default


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``video``, ``demo``, ``live`` and ``bench --pipeline``: backend, model, detection, tracking,
    smoothing."""
    group = parser.add_argument_group("pipeline")
    group.add_argument(
        "--backend", choices=BACKEND_CHOICES, default=DEFAULT_BACKEND, help=f"inference backend (default {DEFAULT_BACKEND})"
    )
    group.add_argument(
        "--model",
        "--checkpoint",
        dest="model",
        default=None,
        metavar="PATH",
        help="DRTN model: an .onnx export or a .pt checkpoint (exported once to the cache; needs torch); default the "
        "bundled drtn_rt. With --backend teacher: another teacher .onnx",
    )
    group.add_argument("--max-faces", type=int, default=16, help="most faces tracked at once (default 16: a crowd)")
    group.add_argument(
        "--detect-every",
        type=int,
        default=5,
        metavar="N",
        help="run the face detector every N frames besides when a track is lost; 0 = only then (default 5: new faces within 5 frames)",
    )
    group.add_argument(
        "--detector-model",
        choices=("yunet", "blazeface", "blazeface-onnx"),
        default="yunet",
        help="face detector: yunet (OpenCV YuNet, multi-scale, profiles; fastest at equal recall), blazeface (MediaPipe "
        "Tasks, short range: one close face) or blazeface-onnx (teacher/blazeface_320.onnx on ONNX Runtime, two scales)",
    )
    group.add_argument(
        "--detector-tiles",
        action="store_true",
        help="on frames larger than 800 px also detect on 2x2 tiles: more small faces, ~5x the detection cost",
    )
    group.add_argument("--min-detection-confidence", type=float, default=0.5, help="detector score threshold (default 0.5)")
    group.add_argument(
        "--smoothing",
        choices=SMOOTHING_CHOICES,
        default=None,
        help="temporal smoothing: offline (two-sided, zero lag, outputs held back --smooth-lag frames; video's default), "
        "causal (live's default, the only choice there) or off",
    )
    group.add_argument("--no-smoothing", action="store_true", help="turn the temporal smoothing off (= --smoothing off)")
    group.add_argument(
        "--smooth-lag",
        type=int,
        default=None,
        metavar="FRAMES",
        help="--smoothing offline: frames each side of a frame in its window, i.e. the output delay (default: the "
        "benchmark's winner)",
    )
    group.add_argument(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mirror-averaged inference: each face's crop and its mirror in one batch, predictions averaged "
        "(~2x the network time per face; default on for video and demo, which process files, off for live)",
    )
    group.add_argument(
        "--smooth-min-cutoff",
        type=float,
        default=None,
        metavar="HZ",
        help="pose filter cutoff of a still head, every pose part (lower = smoother; default: the benchmark's winners)",
    )
    group.add_argument(
        "--smooth-beta",
        type=float,
        default=None,
        help="pose filter cutoff increase per unit of head speed, every pose part (higher = follows sooner)",
    )


def pipeline_options_from_args(
    args: argparse.Namespace,
    running_mode=None,
    result_callback=None,
    default_smoothing: str = "causal",
    default_flip_average: bool = False,
):
    """:class:`realtime.pipeline.PipelineOptions` from the flags of :func:`add_pipeline_arguments`.

    Args:
        default_smoothing: the smoothing without ``--smoothing`` / ``--no-smoothing``: ``video`` passes
            ``"offline"``; ``live`` and the API keep ``"causal"``.
        default_flip_average: mirror averaging without ``--[no-]flip-average``: ``video`` and ``demo`` (files, not
            latency bound) pass ``True``, it wins the tracking benchmark there (docs/realtime.md); ``live`` keeps
            ``False`` (one network pass per face: the per-face latency rule).
    """
    from dataclasses import replace

    from realtime.detector import DetectorOptions
    from realtime.pipeline import PipelineOptions, RunningMode
    from realtime.smoothing import MotionFilterConfig, SmoothingOptions
    from realtime.tracker import TrackerOptions

    for flag in ("smooth_min_cutoff", "smooth_beta", "min_detection_confidence"):
        value = getattr(args, flag, None)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"--{flag.replace('_', '-')}: expected a finite number, got {value}")
    choice = smoothing_choice(args, default_smoothing)
    smoothing = SmoothingOptions(enabled=choice != "off", mode="offline" if choice == "offline" else "causal")
    lag = getattr(args, "smooth_lag", None)
    causal_flags = [
        f"--smooth-{n}" for n in ("min-cutoff", "beta") if getattr(args, f"smooth_{n.replace('-', '_')}", None) is not None
    ]
    if causal_flags and choice != "causal":
        LOGGER.warning(
            "%s set the causal filter; smoothing is %s here (--smoothing causal to use them)", ", ".join(causal_flags), choice
        )
    if lag is not None and choice != "offline":
        LOGGER.warning("--smooth-lag sets the offline smoother; smoothing is %s here", choice)
    if lag is not None:
        if lag < 0:
            raise ValueError(f"--smooth-lag: expected >= 0 frames, got {lag}")
        smoothing = replace(smoothing, offline=replace(smoothing.offline, lag_frames=lag))
    overrides = {
        name: value for name, value in (("min_cutoff", args.smooth_min_cutoff), ("beta", args.smooth_beta)) if value is not None
    }
    if overrides:
        smoothing = smoothing.with_pose(MotionFilterConfig(**{**MotionFilterConfig().__dict__, **overrides}))
    return PipelineOptions(
        running_mode=running_mode or RunningMode.VIDEO,
        assets_dir=getattr(args, "assets", None),
        detector=DetectorOptions(
            model=args.detector_model,
            min_confidence=args.min_detection_confidence,
            tiles=getattr(args, "detector_tiles", False),
        ),
        tracker=TrackerOptions(max_faces=args.max_faces, detect_every_n_frames=args.detect_every),
        smoothing=smoothing,
        flip_average=default_flip_average if getattr(args, "flip_average", None) is None else bool(args.flip_average),
        result_callback=result_callback,
    )


def create_backend(kind: str, assets_dir: str | None = None, threads: int = 2, model: str | None = None):
    """The inference backend ``kind`` from :func:`export.backends.create_backend`.

    Args:
        kind: one of :data:`BACKEND_CHOICES`.
        assets_dir: asset folder (statistics, the teacher).
        threads: CPU threads of the backend.
        model: ``.onnx`` / ``.pt`` file (``--model``); None: the bundled model (``drtn/weights/drtn_rt.onnx``).
    Raises:
        ImportError: the export package's backends cannot be imported.
        ValueError, FileNotFoundError, export.backends.BackendUnavailableError: from the factory.
    """
    try:
        from export.backends import create_backend as factory
    except ImportError as error:
        raise ImportError(f"the inference backends are not available (export.backends: {error})") from error
    return factory(kind, model, assets=assets_dir, threads=threads)
