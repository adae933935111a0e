"""Our blendshapes against MediaPipe Face Landmarker's, frame by frame (the yardstick, never the source).

``python -m realtime.blendshape_compare VIDEO... [--backend B] [--max-frames N] [--save NPZ]`` prints the
Markdown table of docs/blendshapes.md: per ARKit blendshape, Pearson r between the product's weights
(:mod:`realtime.blendshapes` through the pipeline) and MediaPipe's, with both sides' mean and spread.
Kept apart from :mod:`realtime.blendshapes` because it runs the pipeline, which imports that module.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np

from realtime.blendshapes import ARKIT_NAMES, NUM_BLENDSHAPES

LOGGER = logging.getLogger(__name__)


def mediapipe_blendshapes(video: Path, model_path: Path, max_frames: int | None = None) -> tuple[list[float], np.ndarray]:
    """MediaPipe Face Landmarker's 52 blendshapes per decoded frame of ``video`` (the yardstick, never the source).

    Returns:
        ``(timestamps_ms, weights (F, 52))`` in :data:`ARKIT_NAMES` order (``tongueOut`` NaN: MediaPipe has none;
        frames without a face are NaN rows).
    """
    import mediapipe as mp

    from realtime.sources import open_source

    options = mp.tasks.vision.FaceLandmarkerOptions(
        base_options=mp.tasks.BaseOptions(model_asset_path=str(model_path)),
        running_mode=mp.tasks.vision.RunningMode.VIDEO,
        output_face_blendshapes=True,
        num_faces=1,
    )
    timestamps, rows = [], []
    with mp.tasks.vision.FaceLandmarker.create_from_options(options) as landmarker, open_source(str(video)) as source:
        for frame in source:
            if max_frames is not None and len(rows) >= max_frames:
                break
            rgb = np.ascontiguousarray(frame.image_bgr[:, :, ::-1])
            result = landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), int(frame.timestamp_ms))
            row = np.full(NUM_BLENDSHAPES, np.nan)
            if result.face_blendshapes:
                for category in result.face_blendshapes[0]:
                    if category.category_name in ARKIT_NAMES:
                        row[ARKIT_NAMES.index(category.category_name)] = category.score
            timestamps.append(frame.timestamp_ms)
            rows.append(row)
    return timestamps, np.array(rows).reshape(-1, NUM_BLENDSHAPES)


def ours_blendshapes(
    video: Path, backend_kind: str = "onnxruntime", assets_dir: str | None = None, max_frames: int | None = None
) -> np.ndarray:
    """The product's 52 blendshapes per decoded frame of ``video`` (first face; NaN rows without a face)."""
    from export.backends import create_backend
    from realtime.pipeline import FacePipeline, PipelineOptions, RunningMode
    from realtime.sources import open_source

    rows = []
    backend = create_backend(backend_kind, assets=assets_dir)
    try:
        options = PipelineOptions(running_mode=RunningMode.VIDEO, assets_dir=assets_dir, compute_dense=False)
        with FacePipeline(backend, options) as pipeline, open_source(str(video)) as source:
            for frame in source:
                if max_frames is not None and len(rows) >= max_frames:
                    break
                faces = pipeline.process(frame).faces
                if faces and faces[0].blendshapes is not None:
                    rows.append([faces[0].blendshapes[name] for name in ARKIT_NAMES])
                else:
                    rows.append([np.nan] * NUM_BLENDSHAPES)
    finally:
        backend.close()
    return np.array(rows, dtype=np.float64).reshape(-1, NUM_BLENDSHAPES)


def correlation_table(ours: np.ndarray, reference: np.ndarray) -> list[dict]:
    """Per blendshape: Pearson r over frames where both have a face, and each side's mean / std.

    ``r`` is NaN where either side is constant (e.g. a shape that never moves).
    """
    both = (
        np.isfinite(ours).all(1) & np.isfinite(np.nan_to_num(reference, nan=0.0)).all(1) & ~np.isnan(reference[:, :-1]).any(1)
    )
    ours, reference = ours[both], reference[both]
    rows = []
    for column, name in enumerate(ARKIT_NAMES):
        x, y = ours[:, column], reference[:, column]
        valid = np.isfinite(y)
        x, y = x[valid], y[valid]
        r = float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 1e-6 and y.std() > 1e-6 else float("nan")
        rows.append(
            {
                "name": name,
                "r": r,
                "ours_mean": float(x.mean()) if len(x) else float("nan"),
                "ours_std": float(x.std()) if len(x) else float("nan"),
                "mp_mean": float(y.mean()) if len(y) else float("nan"),
                "mp_std": float(y.std()) if len(y) else float("nan"),
                "frames": int(len(x)),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m realtime.blendshape_compare VIDEO... [--max-frames N]``: the correlation table vs MediaPipe (Markdown)."""
    from drtn.assets import resolve_asset_dir

    parser = argparse.ArgumentParser(prog="python -m realtime.blendshape_compare", description=main.__doc__)
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--assets", default=None)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--max-frames", type=int, default=None, help="per clip")
    parser.add_argument("--save", type=Path, default=None, metavar="NPZ", help="also save both (F, 52) arrays here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    model = resolve_asset_dir(args.assets) / "mediapipe/face_landmarker.task"
    ours_all, reference_all = [], []
    for video in args.videos:
        tick = time.perf_counter()
        _, reference = mediapipe_blendshapes(video, model, args.max_frames)
        ours = ours_blendshapes(video, args.backend, args.assets, args.max_frames)
        count = min(len(ours), len(reference))
        ours_all.append(ours[:count])
        reference_all.append(reference[:count])
        LOGGER.warning("%s: %d frames (%.0f s)", video.name, count, time.perf_counter() - tick)
    ours, reference = np.concatenate(ours_all), np.concatenate(reference_all)
    if args.save is not None:
        np.savez(args.save, ours=ours, mediapipe=reference, names=np.array(ARKIT_NAMES))
    rows = correlation_table(ours, reference)
    print(f"{rows[0]['frames']} frames with a face on both sides, {len(args.videos)} clips\n")
    print("| blendshape | r (ours vs MediaPipe) | ours mean ± std | MediaPipe mean ± std |")
    print("|---|---:|---:|---:|")
    for row in rows:
        r = "—" if math.isnan(row["r"]) else f"{row['r']:+.2f}"
        print(
            f"| {row['name']} | {r} | {row['ours_mean']:.3f} ± {row['ours_std']:.3f} | {row['mp_mean']:.3f} ± {row['mp_std']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
