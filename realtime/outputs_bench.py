"""Cost of the file outputs, as a table: ``python -m realtime.outputs_bench [--assets DIR] [--photo P] [--clip C]``.

Times (mean of ``--repeats`` calls after one warm-up) the one-off set-up (display-mesh weights, UV topology and
texel map) and, per face, the mesh, its visibility, the texture, OBJ / PLY writing and reading; per frame, the
depth and PNCC maps against the mesh overlay at the clip's size. Bundled model on ONNX Runtime.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2


def _mean_ms(function, repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1000


def run(assets: str | None, photo: Path, clip: Path, repeats: int = 5) -> list[tuple[str, float]]:
    """``(what, milliseconds)`` rows (see the module docstring)."""
    from export.backends import create_backend
    from realtime.meshio import (
        MeshTopology,
        face_mesh,
        read_obj,
        read_ply,
        sample_texture,
        sample_vertex_colors,
        visible_vertices,
        write_obj,
        write_ply,
    )
    from realtime.overlay import create_overlay
    from realtime.pipeline import FacePipeline, PipelineOptions, RunningMode
    from realtime.render_modes import MapDrawer
    from realtime.sources import VideoFileSource

    rows: list[tuple[str, float]] = []
    image = cv2.imread(str(photo))
    if image is None:
        raise FileNotFoundError(f"cannot read photo {photo}")
    with FacePipeline(
        create_backend("onnxruntime", assets=assets, threads=2),
        PipelineOptions(running_mode=RunningMode.IMAGE, assets_dir=assets),
    ) as pipeline:
        faces = pipeline.process(image).faces
        if not faces:
            raise ValueError(f"no face found in {photo}")
        face, size = faces[0], (image.shape[1], image.shape[0])
        start = time.perf_counter()
        pipeline.morphable.display_vertices(face.params[None].astype("float64"))
        rows.append(("once: display-mesh weights", (time.perf_counter() - start) * 1000))
        start = time.perf_counter()
        topology = MeshTopology.load(pipeline.morphable, assets)
        topology.texel_map()
        rows.append(("once: UV topology + 512² texel map", (time.perf_counter() - start) * 1000))
        mesh = face_mesh(pipeline.morphable, face, pipeline.crop_size, size, topology)
        texture = sample_texture(image, mesh, topology)
        with tempfile.TemporaryDirectory() as folder:
            obj, ply = Path(folder) / "f.obj", Path(folder) / "f.ply"
            for name, function in (
                (
                    "face: mesh (38,365 vertices)",
                    lambda: face_mesh(pipeline.morphable, face, pipeline.crop_size, size, topology),
                ),
                ("face: visibility", lambda: visible_vertices(mesh)),
                ("face: 512² texture (with visibility)", lambda: sample_texture(image, mesh, topology)),
                ("face: write OBJ + texture", lambda: write_obj(obj, mesh, texture)),
                (
                    "face: write PLY + colours (with visibility)",
                    lambda: write_ply(ply, mesh, sample_vertex_colors(image, mesh)),
                ),
                ("face: read OBJ", lambda: read_obj(obj)),
                ("face: read PLY", lambda: read_ply(ply)),
            ):
                rows.append((name, _mean_ms(function, repeats)))
        with VideoFileSource(clip, max_frames=1) as source:
            frame = next(iter(source)).image_bgr
        clip_faces = pipeline.process(frame).faces
        height, width = frame.shape[:2]
        for mode in ("depth", "pncc"):
            drawer = MapDrawer(mode, pipeline.morphable, pipeline.crop_size, width, height, assets)
            rows.append(
                (
                    f"frame {width}x{height}, {len(clip_faces)} face: {mode} map",
                    _mean_ms(lambda drawer=drawer: drawer.draw(frame, clip_faces), 2 * repeats),
                )
            )
            drawer.close()
        overlay = create_overlay("gl", pipeline, width, height)
        rows.append(
            (
                f"frame {width}x{height}, {len(clip_faces)} face: mesh overlay ({overlay.name})",
                _mean_ms(lambda: overlay.draw(frame, clip_faces), 2 * repeats),
            )
        )
        overlay.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    from drtn.assets import resolve_asset_dir

    parser = argparse.ArgumentParser(prog="python -m realtime.outputs_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=None, help="asset folder (default $DRTN_ASSETS)")
    parser.add_argument("--photo", default=None, help="photo (default samples/images/trump_hillary.jpg beside the assets)")
    parser.add_argument("--clip", default=None, help="clip (default samples/video/liveportrait/d0.mp4 beside the assets)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    samples = resolve_asset_dir(args.assets).parent / "samples"
    photo = Path(args.photo) if args.photo else samples / "images" / "trump_hillary.jpg"
    clip = Path(args.clip) if args.clip else samples / "video" / "liveportrait" / "d0.mp4"
    rows = run(args.assets, photo, clip, args.repeats)
    print(f"| {photo.name} / {clip.name} | ms |\n|---|---:|")
    for name, milliseconds in rows:
        print(f"| {name} | {milliseconds:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
