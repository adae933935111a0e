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
    """``main.py video``: annotated video (``--render mesh|depth|pncc``) + records (JSONL / CSV) + meshes."""
    from realtime.file_outputs import MeshSequenceWriter
    from realtime.outputs import check_output_paths
    from realtime.pipeline import FacePipeline
    from realtime.prefetch import PrefetchedSource
    from realtime.render_modes import create_drawer
    from realtime.sources import CameraSource, open_source
    from realtime.threads import limit_blas_threads
    from realtime.video import process_video, video_outputs
    from realtime.vmc import forward_results

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
    output = (
        None
        if args.records_only
        else Path(args.output)
        if args.output
        else Path("out") / f"{Path(args.input).stem}_tracked.mp4"
    )
    check_output_paths(video_outputs(output, args.records), [args.input])  # before anything is opened
    options = pipeline_options_from_args(args, default_smoothing="offline", default_flip_average=True)
    # files and folders decode ahead in a thread; a camera is read live. The prefetcher is closed first (it stops
    # its thread), then the file: releasing a capture another thread is decoding aborts the process.
    with (
        open_source(args.input, max_frames=args.max_frames) as opened,
        opened if isinstance(opened, CameraSource) else PrefetchedSource(opened).start() as source,
    ):
        backend = create_backend(args.backend, getattr(args, "assets", None), model=args.model)
        with FacePipeline(backend, options) as pipeline:
            overlay = (
                None if output is None else create_drawer(args.render, pipeline, *source.frame_size, renderer=args.renderer)
            )
            meshes = (
                MeshSequenceWriter(pipeline, args.mesh_dir, args.mesh_every, args.mesh_format, Path(str(args.input)).stem)
                if args.mesh_dir
                else None
            )
            sender = _vmc_sender(args)
            on_result = meshes.write if meshes is not None else None
            if sender is not None:  # the results as written (the offline smoother's when it smooths)
                on_result = forward_results(sender, then=on_result)
            try:
                summary = process_video(source, pipeline, output, args.records, overlay, progress=not args.no_progress,
                                        records_format=args.records_format, source_name=str(args.input),
                                        on_result=on_result)  # fmt: skip
            finally:
                if overlay is not None:
                    overlay.close()
                if sender is not None:
                    sender.close()
    written = [
        f"{summary.frames} frames" + (f" to {summary.output_path}" if summary.output_path else " (no video: --records-only)")
    ]
    if summary.records_path:
        written.append(f"{summary.face_records} face records to {summary.records_path}")
    if meshes is not None:
        written.append(f"{meshes.files} meshes to {meshes.out_dir}")
    print("wrote " + ", ".join(written))
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
    """``main.py demo``: every face of one image -- or of each photo of a folder, photo by photo -- to
    render(s), a JSON naming the source, and meshes on request (:mod:`realtime.file_outputs`). Output paths are
    checked before anything is written and files are written under a temporary name (:mod:`realtime.outputs`)."""
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
    backend = create_backend(args.backend, getattr(args, "assets", None), model=args.model)
    options = pipeline_options_from_args(args, running_mode=RunningMode.IMAGE, default_flip_average=True)
    with FacePipeline(backend, options) as pipeline, \
            PhotoProcessor(pipeline, modes, args.renderer, texture=args.texture) as processor:  # fmt: skip
        if folder:
            out_dir = Path(args.out_dir) if args.out_dir else Path("out") / image_path.name
            summary = process_folder(processor, image_path, out_dir, mesh_formats)
            for path, reason in summary.skipped:
                print(f"skipped {path}: {reason}")
            faces = sum(photo.faces for photo in summary.photos)
            print(
                f"{len(summary.photos)} photo(s), {faces} face(s) from {image_path}: wrote {out_dir}"
                + (f"; skipped {len(summary.skipped)} file(s)" if summary.skipped else "")
            )
            return 0 if summary.photos else 1
        output = Path(args.output)
        photo = processor.process(image_path, output, output.with_suffix(".json"), args.obj, args.ply)
    print(f"{photo.faces} face(s) in {image_path}: wrote " + ", ".join(str(path) for path in photo.files))
    return 0


def run_live_command(args: argparse.Namespace) -> int:
    """``main.py live``: the PyQt6 app (imported only here, so headless use never needs Qt)."""
    from realtime.arguments import smoothing_choice
    from realtime.threads import limit_blas_threads

    if smoothing_choice(args) == "offline":
        raise ValueError("--smoothing offline holds results back for frames still to come; live needs causal or off")
    limit_blas_threads(1)
    try:
        from realtime import ui
    except ImportError as error:
        raise ImportError(f"the live app needs PyQt6 and PyOpenGL (pip install 'drtn[app]'): {error}") from error
    return int(ui.run_live(args) or 0)


def register(commands: argparse._SubParsersAction) -> None:
    if "bench" in commands.choices:  # export's `bench --pipeline` runs our benchmark; `--tracking` and `--soak` are ours
        bench = commands.choices["bench"]
        bench.add_argument(
            "--tracking",
            action="store_true",
            help="tracking benchmark with exact ground truth (realtime.tracking_bench): ours vs the per-frame peer",
        )
        bench.add_argument("--tiny", action="store_true", help="--tracking: a small quick version (seconds)")
        bench.add_argument(
            "--scene-seed",
            type=int,
            default=0,
            metavar="N",
            help="--tracking: seed of the generated scenes (default 0: the reported tables; defaults were tuned on 1 and 2)",
        )
        bench.add_argument(
            "--data",
            default=None,
            help="--tracking: the data folder with the held-out 300W faces (default: data beside the asset folder)",
        )
        # `bench --soak N`: the memory soak of the whole video path (realtime.soak)
        bench.add_argument(
            "--soak",
            type=int,
            default=None,
            metavar="N",
            help="soak: N frames through `video` (looping --source), memory printed",
        )
        bench.set_defaults(
            pipeline_handler=run_pipeline_bench_command, handler=_tracking_or_soak_or(bench.get_default("handler"))
        )
    video = commands.add_parser(
        "video",
        help="process a video file headlessly",
        description="Track faces in a video file (or an image folder): annotated video + one JSON record per face per frame.",
    )
    video.add_argument("input", help="video file, image folder, or camera index (Ctrl-C ends a camera recording)")
    video.add_argument("-o", "--output", default=None, help="annotated .mp4 to write (default out/<input>_tracked.mp4)")
    video.add_argument("--records", default=None, metavar="JSONL", help="write one JSON record per face per frame here")
    video.add_argument(
        "--renderer",
        choices=("gl", "cv"),
        default="gl",
        help="mesh overlay: OpenGL (default; falls back to cv when no GL context) or OpenCV wireframe",
    )
    video.add_argument(
        "--render",
        choices=("mesh", "depth", "pncc"),
        default="mesh",
        help="what the video shows: the mesh overlay (default), a depth map or a PNCC map (OpenGL)",
    )
    video.add_argument("--records-only", action="store_true", help="write the --records file only, no video")
    video.add_argument(
        "--records-format",
        choices=("jsonl", "csv"),
        default=None,
        help="records file format (default: csv for a .csv name, else jsonl)",
    )
    video.add_argument(
        "--mesh-dir",
        default=None,
        metavar="DIR",
        help="write each face's mesh every --mesh-every frames here (DIR/<input>_f<frame>_t<track>.obj)",
    )
    video.add_argument("--mesh-every", type=int, default=1, metavar="N", help="with --mesh-dir: every N-th frame (default 1)")
    video.add_argument(
        "--mesh-format", choices=("obj", "ply"), default="obj", help="with --mesh-dir: obj (default, with UVs) or ply"
    )
    video.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    video.add_argument("--no-progress", action="store_true", help="no progress bar")
    video.add_argument(
        "--vmc",
        default=None,
        metavar="HOST:PORT",
        help="stream head pose + ARKit blendshapes over the VMC protocol (e.g. 127.0.0.1:39539)",
    )
    add_pipeline_arguments(video)
    video.set_defaults(handler=run_video_command)

    demo = commands.add_parser(
        "demo",
        help="reconstruct the faces of one image or of each photo of a folder (default: the bundled sample)",
        description="Detect, reconstruct and draw every face of one image, or of each photo of a folder on its own (no tracking between photos).",
    )
    demo.add_argument(
        "image",
        nargs="?",
        default=None,
        help="image file or folder of photos (default: samples/images/emma.jpg beside the asset folder)",
    )
    demo.add_argument(
        "-o",
        "--output",
        default="out/demo.png",
        help="annotated image to write (default out/demo.png; faces as JSON beside it)",
    )
    demo.add_argument(
        "--out-dir",
        default=None,
        metavar="DIR",
        help="folder input: write DIR/<name>.png and DIR/<name>.json per photo (default out/<folder name>)",
    )
    demo.add_argument(
        "--render",
        default="mesh",
        metavar="MODES",
        help="comma-separated renders: mesh (overlay), depth, pncc; the first goes to the output, others to <name>_<mode>.png (default mesh)",
    )
    demo.add_argument(
        "--obj", default=None, metavar="F.obj", help="one image: write each face's mesh as OBJ with UVs (F.obj, F_1.obj, ...)"
    )
    demo.add_argument(
        "--ply", default=None, metavar="F.ply", help="one image: write each face's mesh as PLY (F.ply, F_1.ply, ...)"
    )
    demo.add_argument(
        "--meshes", default=None, metavar="FORMATS", help="folder input: also write meshes, obj and/or ply (e.g. obj,ply)"
    )
    demo.add_argument(
        "--texture",
        action="store_true",
        help="with meshes: sample a UV texture (OBJ: .mtl + .png) / vertex colours (PLY) from the photo",
    )
    demo.add_argument(
        "--renderer", choices=("gl", "cv"), default="gl", help="mesh overlay: OpenGL (falls back to cv) or OpenCV wireframe"
    )
    add_pipeline_arguments(demo)
    demo.set_defaults(handler=run_demo_command)

    from realtime.ui.options import add_live_arguments  # Qt-free: the app's own flags

    live = commands.add_parser("live", help="open the webcam / video app", description="The PyQt6 + OpenGL tracking app.")
    live.add_argument(
        "source",
        nargs="?",
        default=None,
        help="camera index, video file or image folder (default: camera 0; without one the window says so)",
    )
    add_pipeline_arguments(live)
    add_live_arguments(live)
    live.set_defaults(handler=run_live_command)


def _tracking_or_soak_or(handler):
    """The bench handler: ``--tracking`` runs :func:`realtime.tracking_bench.run_tracking_bench`, ``--soak N``
    :func:`realtime.soak.run_soak_command`, else ``handler`` (export's backend benchmark)."""

    def run(args: argparse.Namespace) -> int:
        from export.cli import check_bench_output

        check_bench_output(args)  # -o refused before any mode runs (one line, exit 2)
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
