"""`main.py video | live` argument definitions, and the helpers that turn arguments into a pipeline.

The app (``realtime.ui``) and the pipeline benchmark reuse :func:`add_pipeline_arguments`,
:func:`create_backend` and :func:`pipeline_options_from_args`, so every entry point takes the same flags.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOGGER = logging.getLogger(__name__)

DEFAULT_BACKEND = "onnxruntime"


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``video``, ``live`` and ``bench --pipeline``: backend, detection, tracking, smoothing."""
    group = parser.add_argument_group("pipeline")
    group.add_argument("--backend", default=DEFAULT_BACKEND, help=f"inference backend: onnxruntime, torch, tensorrt, teacher (default {DEFAULT_BACKEND})")
    group.add_argument("--max-faces", type=int, default=4, help="most faces tracked at once (default 4)")
    group.add_argument("--detect-every", type=int, default=10, metavar="N", help="run the face detector every N frames besides when a track is lost; 0 = only then (default 10)")
    group.add_argument("--detector-model", choices=("yunet", "blazeface"), default="yunet", help="face detector: yunet (OpenCV YuNet, multi-scale, profiles) or blazeface (MediaPipe Tasks, short range)")
    group.add_argument("--min-detection-confidence", type=float, default=0.5, help="detector score threshold (default 0.5)")
    group.add_argument("--no-smoothing", action="store_true", help="turn the One-Euro smoothing off")
    group.add_argument("--smooth-min-cutoff", type=float, default=None, metavar="HZ", help="One-Euro cutoff at rest for all parameter groups (lower = smoother)")
    group.add_argument("--smooth-beta", type=float, default=None, help="One-Euro speed coefficient for all groups (higher = less lag)")
    group.add_argument("--smooth-d-cutoff", type=float, default=None, metavar="HZ", help="One-Euro cutoff of the speed estimate")


def pipeline_options_from_args(args: argparse.Namespace, running_mode=None, result_callback=None):
    """:class:`realtime.pipeline.PipelineOptions` from the flags of :func:`add_pipeline_arguments`."""
    from realtime.detector import DetectorOptions
    from realtime.pipeline import PipelineOptions, RunningMode
    from realtime.smoothing import OneEuroConfig, SmoothingOptions
    from realtime.tracker import TrackerOptions

    smoothing = SmoothingOptions(enabled=not args.no_smoothing)
    overrides = {
        name: value
        for name, value in (("min_cutoff", args.smooth_min_cutoff), ("beta", args.smooth_beta), ("d_cutoff", args.smooth_d_cutoff))
        if value is not None
    }
    if overrides:
        smoothing = smoothing.with_all_groups(OneEuroConfig(**{**OneEuroConfig().__dict__, **overrides}))
    return PipelineOptions(
        running_mode=running_mode or RunningMode.VIDEO,
        assets_dir=getattr(args, "assets", None),
        detector=DetectorOptions(model=args.detector_model, min_confidence=args.min_detection_confidence),
        tracker=TrackerOptions(max_faces=args.max_faces, detect_every_n_frames=args.detect_every),
        smoothing=smoothing,
        result_callback=result_callback,
    )


def create_backend(kind: str, assets_dir: str | None = None, threads: int = 2):
    """The inference backend ``kind`` from :func:`export.backends.create_backend` (its bundled default model).

    Raises:
        ImportError: the export package's backends cannot be imported.
        ValueError, FileNotFoundError, export.backends.BackendUnavailableError: from the factory.
    """
    try:
        from export.backends import create_backend as factory
    except ImportError as error:
        raise ImportError(f"the inference backends are not available (export.backends: {error})") from error
    return factory(kind, assets=assets_dir, threads=threads)


def run_video_command(args: argparse.Namespace) -> int:
    """``main.py video``: annotated video + JSONL records."""
    from realtime.overlay import create_overlay
    from realtime.pipeline import FacePipeline
    from realtime.sources import open_source
    from realtime.threads import limit_blas_threads
    from realtime.video import process_video
    from realtime.vmc import VmcForwarder

    limit_blas_threads(1)
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames: expected >= 1, got {args.max_frames}")
    output = Path(args.output) if args.output else Path("out") / f"{Path(args.input).stem}_tracked.mp4"
    options = pipeline_options_from_args(args)
    with open_source(args.input, max_frames=args.max_frames) as source:
        backend = create_backend(args.backend, getattr(args, "assets", None))
        with FacePipeline(backend, options) as pipeline:
            overlay = create_overlay(args.renderer, pipeline, *source.frame_size)
            sender = _vmc_sender(args)
            try:
                summary = process_video(source, VmcForwarder(pipeline, sender) if sender else pipeline, output, args.records, overlay, progress=not args.no_progress)
            finally:
                overlay.close()
                if sender is not None:
                    sender.close()
    print(f"wrote {summary.frames} frames to {summary.output_path}" + (f", {summary.face_records} face records to {summary.records_path}" if summary.records_path else ""))
    return 0 if summary.playable or summary.frames == 0 else 1


def _vmc_sender(args: argparse.Namespace):
    """A :class:`realtime.vmc.VmcSender` for ``--vmc HOST:PORT``, or None."""
    if not getattr(args, "vmc", None):
        return None
    from realtime.vmc import VmcSender

    return VmcSender.from_address(args.vmc)


def default_demo_image(assets_dir: str | None) -> Path:
    """The bundled demo photo: ``samples/images/emma.jpg`` beside the asset folder (the shared layout)."""
    from drtn.assets import resolve_asset_dir

    return resolve_asset_dir(assets_dir).parent / "samples" / "images" / "emma.jpg"


def run_demo_command(args: argparse.Namespace) -> int:
    """``main.py demo``: reconstruct every face of one image; write the overlay PNG and a JSON of the faces."""
    import json

    import cv2

    from realtime.overlay import create_overlay
    from realtime.pipeline import FacePipeline, RunningMode
    from realtime.sources import Frame
    from realtime.video import face_record

    image_path = Path(args.image) if args.image else default_demo_image(getattr(args, "assets", None))
    if not image_path.is_file():
        raise FileNotFoundError(f"image not found: {image_path} (pass an image path)")
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode image {image_path}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    backend = create_backend(args.backend, getattr(args, "assets", None))
    with FacePipeline(backend, pipeline_options_from_args(args, running_mode=RunningMode.IMAGE)) as pipeline:
        frame = Frame(image, 0.0, 0)
        result = pipeline.process(frame)
        overlay = create_overlay(args.renderer, pipeline, image.shape[1], image.shape[0])
        try:
            annotated = overlay.draw(image, result.faces)
        finally:
            overlay.close()
    if not cv2.imwrite(str(output), annotated):
        raise ValueError(f"cannot write {output} (use a .png or .jpg name)")
    records = output.with_suffix(".json")
    records.write_text(json.dumps([face_record(frame, face) for face in result.faces]))
    print(f"{len(result.faces)} face(s) in {image_path}: wrote {output} and {records}")
    return 0


def run_live_command(args: argparse.Namespace) -> int:
    """``main.py live``: the PyQt6 app (imported only here, so headless use never needs Qt)."""
    from realtime.threads import limit_blas_threads

    limit_blas_threads(1)
    try:
        from realtime import ui
    except ImportError as error:
        raise ImportError(f"the live app needs PyQt6 and PyOpenGL (pip install PyQt6 PyOpenGL): {error}") from error
    return int(ui.run_live(args) or 0)


def register(commands: argparse._SubParsersAction) -> None:
    if "bench" in commands.choices:  # export's `bench --pipeline` runs our benchmark
        commands.choices["bench"].set_defaults(pipeline_handler=run_pipeline_bench_command)
    video = commands.add_parser("video", help="process a video file headlessly", description="Track faces in a video file (or an image folder): annotated video + one JSON record per face per frame.")
    video.add_argument("input", help="video file, image folder, or camera index (Ctrl-C ends a camera recording)")
    video.add_argument("-o", "--output", default=None, help="annotated .mp4 to write (default out/<input>_tracked.mp4)")
    video.add_argument("--records", default=None, metavar="JSONL", help="write one JSON record per face per frame here")
    video.add_argument("--renderer", choices=("gl", "cv"), default="gl", help="mesh overlay: OpenGL (default; falls back to cv when no GL context) or OpenCV wireframe")
    video.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    video.add_argument("--no-progress", action="store_true", help="no progress bar")
    video.add_argument("--vmc", default=None, metavar="HOST:PORT", help="stream head pose + ARKit blendshapes over the VMC protocol (e.g. 127.0.0.1:39539)")
    add_pipeline_arguments(video)
    video.set_defaults(handler=run_video_command)

    demo = commands.add_parser("demo", help="reconstruct the faces of one image (default: the bundled sample) to a PNG", description="Detect, reconstruct and draw every face of one image.")
    demo.add_argument("image", nargs="?", default=None, help="image file (default: samples/images/emma.jpg beside the asset folder)")
    demo.add_argument("-o", "--output", default="out/demo.png", help="annotated image to write (default out/demo.png; faces as JSON beside it)")
    demo.add_argument("--renderer", choices=("gl", "cv"), default="gl", help="mesh overlay: OpenGL (falls back to cv) or OpenCV wireframe")
    add_pipeline_arguments(demo)
    demo.set_defaults(handler=run_demo_command)

    from realtime.ui.options import add_live_arguments  # Qt-free: the app's own flags

    live = commands.add_parser("live", help="open the webcam / video app", description="The PyQt6 + OpenGL tracking app.")
    live.add_argument("source", nargs="?", default=None, help="camera index, video file or image folder (default: camera 0; without one the window says so)")
    add_pipeline_arguments(live)
    add_live_arguments(live)
    live.set_defaults(handler=run_live_command)


def run_pipeline_bench_command(args: argparse.Namespace) -> int:
    """`main.py bench --pipeline`: reads assets, source, frames, backends (first), threads (largest), renderer,
    no_smoothing, output."""
    from realtime.bench import run_pipeline_bench

    return int(run_pipeline_bench(args) or 0)
