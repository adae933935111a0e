"""`drtn video | demo | live` argument definitions and handlers.

The flags shared with the app and the pipeline benchmark live in :mod:`realtime.arguments` (re-exported here);
nothing else imports this module but the command-line entry (:mod:`drtn_cli`).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from realtime.arguments import (  # noqa: F401 (re-exported: the flags of every entry point)
    DEFAULT_BACKEND,
    add_pipeline_arguments,
    create_backend,
    pipeline_options_from_args,
)

LOGGER = logging.getLogger(__name__)

def run_video_command(args: argparse.Namespace) -> int:
    """``main.py video``: annotated video + JSONL records."""
    from realtime.overlay import create_overlay
    from realtime.pipeline import FacePipeline
    from realtime.prefetch import PrefetchedSource
    from realtime.sources import CameraSource, open_source
    from realtime.threads import limit_blas_threads
    from realtime.outputs import check_output_paths
    from realtime.video import process_video, video_outputs
    from realtime.vmc import VmcForwarder

    limit_blas_threads(1)
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames: expected >= 1, got {args.max_frames}")
    output = Path(args.output) if args.output else Path("out") / f"{Path(args.input).stem}_tracked.mp4"
    check_output_paths(video_outputs(output, args.records), [args.input])  # before anything is opened
    options = pipeline_options_from_args(args)
    # files and folders decode ahead in a thread; a camera is read live. The prefetcher is closed first (it stops
    # its thread), then the file: releasing a capture another thread is decoding aborts the process.
    with open_source(args.input, max_frames=args.max_frames) as opened, (opened if isinstance(opened, CameraSource) else PrefetchedSource(opened).start()) as source:
        backend = create_backend(args.backend, getattr(args, "assets", None), model=args.model)
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

    from export.cache import atomic_write_bytes, atomic_write_text
    from realtime.outputs import IMAGE_SUFFIXES, Output, check_output_paths

    image_path = Path(args.image) if args.image else default_demo_image(getattr(args, "assets", None))
    output = Path(args.output)
    records = output.with_suffix(".json")
    check_output_paths([Output(output, "-o", IMAGE_SUFFIXES), Output(records, "-o (its .json)")], [image_path])
    if not image_path.is_file():
        raise FileNotFoundError(f"image not found: {image_path} (pass an image path)")
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode image {image_path}: not an image or a corrupt file")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    backend = create_backend(args.backend, getattr(args, "assets", None), model=args.model)
    with FacePipeline(backend, pipeline_options_from_args(args, running_mode=RunningMode.IMAGE)) as pipeline:
        frame = Frame(image, 0.0, 0)
        result = pipeline.process(frame)
        overlay = create_overlay(args.renderer, pipeline, image.shape[1], image.shape[0])
        try:
            annotated = overlay.draw(image, result.faces)
        finally:
            overlay.close()
    ok, encoded = cv2.imencode(output.suffix, annotated)
    if not ok:
        raise ValueError(f"cannot encode {output} (use a .png or .jpg name)")
    atomic_write_bytes(output, encoded.tobytes())  # temporary name, then renamed into place
    atomic_write_text(records, json.dumps([face_record(frame, face) for face in result.faces]))
    print(f"{len(result.faces)} face(s) in {image_path}: wrote {output} and {records}")
    return 0


def run_live_command(args: argparse.Namespace) -> int:
    """``main.py live``: the PyQt6 app (imported only here, so headless use never needs Qt)."""
    from realtime.threads import limit_blas_threads

    limit_blas_threads(1)
    try:
        from realtime import ui
    except ImportError as error:
        raise ImportError(f"the live app needs PyQt6 and PyOpenGL (pip install 'drtn[app]'): {error}") from error
    return int(ui.run_live(args) or 0)


def register(commands: argparse._SubParsersAction) -> None:
    if "bench" in commands.choices:  # export's `bench --pipeline` runs our benchmark; `--tracking` and `--soak` are ours
        bench = commands.choices["bench"]
        bench.add_argument("--tracking", action="store_true", help="tracking benchmark with exact ground truth (realtime.tracking_bench): ours vs the per-frame peer")
        bench.add_argument("--tiny", action="store_true", help="--tracking: a small quick version (seconds)")
        bench.add_argument("--data", default=None, help="--tracking: the data folder with the held-out 300W faces (default: data beside the asset folder)")
        # `bench --soak N`: the memory soak of the whole video path (realtime.soak)
        bench.add_argument("--soak", type=int, default=None, metavar="N", help="soak: N frames through `video` (looping --source), memory printed")
        bench.set_defaults(pipeline_handler=run_pipeline_bench_command, handler=_tracking_or_soak_or(bench.get_default("handler")))
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


def _tracking_or_soak_or(handler):
    """The bench handler: ``--tracking`` runs :func:`realtime.tracking_bench.run_tracking_bench`, ``--soak N``
    :func:`realtime.soak.run_soak_command`, else ``handler`` (export's backend benchmark)."""

    def run(args: argparse.Namespace) -> int:
        if getattr(args, "tracking", False):
            from realtime.tracking_bench import run_tracking_bench

            return int(run_tracking_bench(args) or 0)
        if getattr(args, "soak", None) is not None:
            from realtime.soak import run_soak_command

            return int(run_soak_command(args) or 0)
        return int(handler(args) or 0)

    return run


def run_pipeline_bench_command(args: argparse.Namespace) -> int:
    """`main.py bench --pipeline`: reads assets, source, frames, backends (first), threads (largest), renderer,
    no_smoothing, output."""
    from realtime.bench import run_pipeline_bench

    return int(run_pipeline_bench(args) or 0)
