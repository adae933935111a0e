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
    """``main.py video``: annotated video (``--render mesh|depth|pncc``) + records (JSONL / CSV) + meshes."""
    from realtime.file_outputs import MeshSequenceWriter
    from realtime.pipeline import FacePipeline
    from realtime.render_modes import create_drawer
    from realtime.sources import open_source
    from realtime.threads import limit_blas_threads
    from realtime.video import process_video

    limit_blas_threads(1)
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames: expected >= 1, got {args.max_frames}")
    if args.records_only and not args.records:
        raise ValueError("--records-only needs --records FILE")
    if args.records_only and args.output:
        raise ValueError("--records-only writes no video: drop -o/--output")
    if Path(str(args.input)).is_dir():
        LOGGER.warning("%s is processed as one clip: tracking and smoothing carry from image to image; for unrelated "
                       "photos use `demo %s --out-dir DIR` (each photo on its own)", args.input, args.input)  # fmt: skip
    output = None if args.records_only else Path(args.output) if args.output else Path("out") / f"{Path(args.input).stem}_tracked.mp4"
    options = pipeline_options_from_args(args)
    with open_source(args.input, max_frames=args.max_frames) as source:
        backend = create_backend(args.backend, getattr(args, "assets", None))
        with FacePipeline(backend, options) as pipeline:
            drawer = None if output is None else create_drawer(args.render, pipeline, *source.frame_size, renderer=args.renderer)
            meshes = MeshSequenceWriter(pipeline, args.mesh_dir, args.mesh_every, args.mesh_format, Path(str(args.input)).stem) if args.mesh_dir else None
            try:
                summary = process_video(source, pipeline, output, args.records, drawer, progress=not args.no_progress,
                                        records_format=args.records_format, source_name=str(args.input),
                                        on_result=meshes.write if meshes is not None else None)  # fmt: skip
            finally:
                if drawer is not None:
                    drawer.close()
    written = [f"{summary.frames} frames" + (f" to {summary.output_path}" if summary.output_path else " (no video: --records-only)")]
    if summary.records_path:
        written.append(f"{summary.face_records} face records to {summary.records_path}")
    if meshes is not None:
        written.append(f"{meshes.files} meshes to {meshes.out_dir}")
    print("wrote " + ", ".join(written))
    return 0 if summary.playable or summary.frames == 0 else 1


def default_demo_image(assets_dir: str | None) -> Path:
    """The bundled demo photo: ``samples/images/emma.jpg`` beside the asset folder (the shared layout)."""
    from drtn.assets import resolve_asset_dir

    return resolve_asset_dir(assets_dir).parent / "samples" / "images" / "emma.jpg"


def run_demo_command(args: argparse.Namespace) -> int:
    """``main.py demo``: every face of one image -- or of each photo of a folder, photo by photo -- to
    render(s), a JSON naming the source, and meshes on request (:mod:`realtime.file_outputs`)."""
    from realtime.file_outputs import MESH_FORMATS, PhotoProcessor, process_folder
    from realtime.pipeline import FacePipeline, RunningMode
    from realtime.render_modes import parse_render_modes

    modes = parse_render_modes(args.render)
    image_path = Path(args.image) if args.image else default_demo_image(getattr(args, "assets", None))
    folder = image_path.is_dir()
    if not folder and not image_path.is_file():
        raise FileNotFoundError(f"image not found: {image_path} (pass an image file or a folder of photos)")
    mesh_formats = tuple(part.strip() for part in (args.meshes or "").split(",") if part.strip())
    if any(kind not in MESH_FORMATS for kind in mesh_formats):
        raise ValueError(f"--meshes: expected a comma-separated list of {', '.join(MESH_FORMATS)}, got {args.meshes!r}")
    if folder and (args.obj or args.ply):
        raise ValueError("--obj / --ply name the mesh files of one image; for a folder use --meshes obj,ply")
    if not folder and (args.out_dir or mesh_formats):
        raise ValueError("--out-dir / --meshes are for a folder of photos; for one image use -o, --obj, --ply")
    backend = create_backend(args.backend, getattr(args, "assets", None))
    with FacePipeline(backend, pipeline_options_from_args(args, running_mode=RunningMode.IMAGE)) as pipeline, \
            PhotoProcessor(pipeline, modes, args.renderer, texture=args.texture) as processor:  # fmt: skip
        if folder:
            out_dir = Path(args.out_dir) if args.out_dir else Path("out") / image_path.name
            summary = process_folder(processor, image_path, out_dir, mesh_formats)
            for path, reason in summary.skipped:
                print(f"skipped {path}: {reason}")
            faces = sum(photo.faces for photo in summary.photos)
            print(f"{len(summary.photos)} photo(s), {faces} face(s) from {image_path}: wrote {out_dir}" + (f"; skipped {len(summary.skipped)} file(s)" if summary.skipped else ""))
            return 0 if summary.photos else 1
        output = Path(args.output)
        photo = processor.process(image_path, output, output.with_suffix(".json"), args.obj, args.ply)
    print(f"{photo.faces} face(s) in {image_path}: wrote " + ", ".join(str(path) for path in photo.files))
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
    video.add_argument("--render", choices=("mesh", "depth", "pncc"), default="mesh", help="what the video shows: the mesh overlay (default), a depth map or a PNCC map (OpenGL)")
    video.add_argument("--records-only", action="store_true", help="write the --records file only, no video")
    video.add_argument("--records-format", choices=("jsonl", "csv"), default=None, help="records file format (default: csv for a .csv name, else jsonl)")
    video.add_argument("--mesh-dir", default=None, metavar="DIR", help="write each face's mesh every --mesh-every frames here (DIR/<input>_f<frame>_t<track>.obj)")
    video.add_argument("--mesh-every", type=int, default=1, metavar="N", help="with --mesh-dir: every N-th frame (default 1)")
    video.add_argument("--mesh-format", choices=("obj", "ply"), default="obj", help="with --mesh-dir: obj (default, with UVs) or ply")
    video.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    video.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pipeline_arguments(video)
    video.set_defaults(handler=run_video_command)

    demo = commands.add_parser("demo", help="reconstruct the faces of one image or of each photo of a folder (default: the bundled sample)", description="Detect, reconstruct and draw every face of one image, or of each photo of a folder on its own (no tracking between photos).")
    demo.add_argument("image", nargs="?", default=None, help="image file or folder of photos (default: samples/images/emma.jpg beside the asset folder)")
    demo.add_argument("-o", "--output", default="out/demo.png", help="annotated image to write (default out/demo.png; faces as JSON beside it)")
    demo.add_argument("--out-dir", default=None, metavar="DIR", help="folder input: write DIR/<name>.png and DIR/<name>.json per photo (default out/<folder name>)")
    demo.add_argument("--render", default="mesh", metavar="MODES", help="comma-separated renders: mesh (overlay), depth, pncc; the first goes to the output, others to <name>_<mode>.png (default mesh)")
    demo.add_argument("--obj", default=None, metavar="F.obj", help="one image: write each face's mesh as OBJ with UVs (F.obj, F_1.obj, ...)")
    demo.add_argument("--ply", default=None, metavar="F.ply", help="one image: write each face's mesh as PLY (F.ply, F_1.ply, ...)")
    demo.add_argument("--meshes", default=None, metavar="FORMATS", help="folder input: also write meshes, obj and/or ply (e.g. obj,ply)")
    demo.add_argument("--texture", action="store_true", help="with meshes: sample a UV texture (OBJ: .mtl + .png) / vertex colours (PLY) from the photo")
    demo.add_argument("--renderer", choices=("gl", "cv"), default="gl", help="mesh overlay: OpenGL (falls back to cv) or OpenCV wireframe")
    add_pipeline_arguments(demo)
    demo.set_defaults(handler=run_demo_command)

    from realtime.ui.options import add_live_arguments  # Qt-free: the app's own flags

    live = commands.add_parser("live", help="open the webcam / video app", description="The PyQt6 + OpenGL tracking app.")
    live.add_argument("source", nargs="?", default=None, help="camera index, video file or image folder (default: camera 0, else the bundled clip)")
    add_pipeline_arguments(live)
    add_live_arguments(live)
    live.set_defaults(handler=run_live_command)


def run_pipeline_bench_command(args: argparse.Namespace) -> int:
    """`main.py bench --pipeline`: reads assets, source, frames, backends (first), threads (largest), renderer,
    no_smoothing, output."""
    from realtime.bench import run_pipeline_bench

    return int(run_pipeline_bench(args) or 0)
