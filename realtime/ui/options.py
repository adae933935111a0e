"""Options of the live app and the choices it offers (no Qt here: importable and testable anywhere)."""

from __future__ import annotations

import argparse
import importlib.util
import os
from dataclasses import dataclass, fields
from pathlib import Path

from drtn.assets import TEACHER_FILE, resolve_asset_dir
from export.backends import BACKEND_KINDS

SHARED_ENV = "DRTN_SHARED"
BUNDLED_CLIP = Path("samples/video/liveportrait/d0.mp4")  # inside the shared folder
AVATAR_MESHES = ("ict", "dense", "display")  # ICT FaceKit face driven by the blendshapes; the 3DMM meshes


@dataclass(frozen=True)
class LiveOptions:
    """What ``main.py live`` was asked for.

    Attributes:
        source: webcam index (int), a video file, an image folder, or None: webcam 0 (without one, the window
            says so and offers File > Open).
        backend: inference backend kind (``export.backends``).
        smoothing: One-Euro smoothing on.
        assets: asset folder (None: ``$DRTN_ASSETS``, then the user cache).
        screenshot: headless test mode: after ``frames`` processed frames save a screenshot of the window
            here (PNG) plus a JSON sidecar (``.json``: face boxes in window pixels, timings, Qt warnings), quit.
        frames: frames to process before the screenshot (default 30).
        loop: restart video files at their end (the default in interactive mode).
        record_dir: where the record button writes annotated mp4 files (changeable in the window).
        window_size: initial window size in pixels.
        vmc: ``'HOST:PORT'`` to stream VMC to from the start (the window's VMC toggle), or None.
        seconds: benchmark mode: play in real time (as interactively) for this many seconds, then save the
            ``screenshot`` with its sidecar (display / processing FPS, drops, time to first frame) and quit.
        pipeline: :class:`realtime.pipeline.PipelineOptions` (detector, tracker, smoothing settings); None:
            the defaults. Its running mode and smoothing on/off are set by the app.
        model: ``--model``: an .onnx export or .pt checkpoint for the DRTN backends (None: the bundled model).
    """

    source: int | str | None = None
    backend: str = "onnxruntime"
    smoothing: bool = True
    assets: str | None = None
    screenshot: Path | None = None
    frames: int | None = None
    loop: bool | None = None
    record_dir: Path = Path("recordings")
    window_size: tuple[int, int] = (1280, 720)
    pipeline: object | None = None
    vmc: str | None = None
    seconds: float | None = None
    model: str | None = None

    def __post_init__(self):
        if self.backend not in BACKEND_KINDS:
            raise ValueError(f"unknown backend {self.backend!r}; expected one of {', '.join(BACKEND_KINDS)}")
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"--frames must be at least 1, got {self.frames}")
        if self.frames is not None and self.screenshot is None:
            raise ValueError("--frames is the screenshot test mode's frame count: give --screenshot PATH too")
        if self.screenshot is not None and self.screenshot.suffix.lower() != ".png":
            raise ValueError(f"--screenshot must name a .png file, got {self.screenshot}")
        if self.seconds is not None and (self.screenshot is None or self.seconds <= 0):
            raise ValueError(
                f"--seconds is the benchmark mode's duration: give a positive number and --screenshot PATH (got {self.seconds})"
            )
        if self.vmc:
            from realtime.vmc import parse_host_port

            parse_host_port(self.vmc)

    @property
    def screenshot_frames(self) -> int:
        return self.frames if self.frames is not None else 30

    @property
    def should_loop(self) -> bool:
        return self.loop if self.loop is not None else (self.screenshot is None or self.seconds is not None)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "LiveOptions":
        """From ``main.py live`` arguments (missing attributes take the defaults)."""
        known = {f.name for f in fields(cls)}
        values = {}
        source = getattr(args, "source", None)
        if isinstance(source, str) and source.strip().isdigit():
            source = int(source)
        values["source"] = source
        if getattr(args, "backend", None):
            values["backend"] = args.backend
        if getattr(args, "no_smoothing", False) or getattr(args, "smoothing", None) == "off":
            values["smoothing"] = False
        for name in ("assets", "frames", "loop", "vmc", "seconds", "model"):
            if getattr(args, name, None) is not None:
                values[name] = getattr(args, name)
        if getattr(args, "screenshot", None):
            values["screenshot"] = Path(args.screenshot)
        if getattr(args, "record_dir", None):
            values["record_dir"] = Path(args.record_dir)
        if hasattr(args, "max_faces"):  # the pipeline flags of realtime.arguments: detector, tracker, smoothing settings
            from realtime.arguments import pipeline_options_from_args

            values["pipeline"] = pipeline_options_from_args(args)
        assert set(values) <= known
        return cls(**values)


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """The app's own ``main.py live`` flags.

    ``realtime.cli`` calls this on the ``live`` parser next to its positional ``source`` and its pipeline
    flags (``--backend``, ``--no-smoothing``, detector / tracker / smoothing settings), which the app reads too.
    """
    group = parser.add_argument_group("app")
    group.add_argument(
        "--record-dir", default=None, metavar="DIR", help="folder for the record button's mp4 files (default ./recordings)"
    )
    group.add_argument(
        "--loop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="restart video files at their end (default: on; off with --screenshot)",
    )
    group.add_argument(
        "--screenshot",
        default=None,
        metavar="PATH.png",
        help="test mode: process --frames frames, save a window screenshot (and PATH.json), quit",
    )
    group.add_argument(
        "--frames", type=int, default=None, metavar="N", help="frames to process before --screenshot (default 30)"
    )
    group.add_argument(
        "--seconds",
        type=float,
        default=None,
        metavar="S",
        help="benchmark mode: play in real time for S seconds, then --screenshot (its .json has display/processing FPS) and quit",
    )
    group.add_argument(
        "--vmc",
        default=None,
        metavar="HOST:PORT",
        help="stream head pose + ARKit blendshapes over VMC from the start (e.g. 127.0.0.1:39539; also a toggle in the window)",
    )


def backend_availability(assets: str | None = None) -> dict[str, str | None]:
    """For each backend kind: None if it can be chosen here, else why not (shown as a tooltip).

    Cheap checks only (packages importable, teacher file present); a backend may still fail to start, e.g.
    TensorRT without a GPU, and the app then says why.
    """

    def missing(module: str, install: str) -> str | None:
        return None if importlib.util.find_spec(module) is not None else f"needs {module}: {install}"

    availability = {
        "onnxruntime": missing("onnxruntime", "pip install onnxruntime"),
        "torch": missing("torch", "pip install torch==2.13.0"),
        "tensorrt": missing("tensorrt", "pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12 (NVIDIA GPU)"),
        "teacher": missing("onnxruntime", "pip install onnxruntime"),
    }
    teacher = resolve_asset_dir(assets) / TEACHER_FILE
    if availability["teacher"] is None and not teacher.is_file():
        availability["teacher"] = f"teacher model not found at {teacher} (set --assets / DRTN_ASSETS)"
    return availability


def bundled_clip_candidates(assets: str | None = None) -> list[Path]:
    """Where the bundled sample clip may be: ``$DRTN_SHARED``, beside the asset folder, beside the checkout."""
    roots = []
    if os.environ.get(SHARED_ENV):
        roots.append(Path(os.environ[SHARED_ENV]).expanduser())
    roots.append(resolve_asset_dir(assets).parent)  # assets usually live in the shared folder
    roots.append(Path(__file__).resolve().parents[3] / "shared")  # a development checkout beside ../shared
    unique = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return [root / BUNDLED_CLIP for root in unique]


def find_bundled_clip(assets: str | None = None) -> Path:
    """The bundled clip; FileNotFoundError lists where it was looked for."""
    candidates = bundled_clip_candidates(assets)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "bundled sample clip not found (looked at " + ", ".join(str(p) for p in candidates) + f"); set {SHARED_ENV} "
        "to the shared folder or pass --source"
    )
