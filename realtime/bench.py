"""Pipeline benchmark: FPS per stage and end to end on a sample clip at 640x480 with one face.

``main.py bench --pipeline`` calls :func:`run_pipeline_bench`. Every frame goes the whole product path:
decode (+ fit to 640x480), detect (when the tracker asks), track/crop, infer, reconstruct, smooth, render
the overlay, encode to mp4. End to end is wall time per frame over the measured frames, so it includes
everything (and anything else the machine was doing).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from realtime.pipeline import STAGES, FacePipeline, PipelineOptions
from realtime.sources import SourceError, open_source

LOGGER = logging.getLogger(__name__)

BENCH_SIZE = (640, 480)
DEFAULT_CLIP = "samples/video/liveportrait/d6.mp4"  # one face, 1008 frames at 30 fps, in the shared folder
TABLE_STAGES = ("decode",) + STAGES + ("render", "encode")


def fit_frame(image_bgr: np.ndarray, size: tuple[int, int] = BENCH_SIZE) -> np.ndarray:
    """Scale ``image_bgr`` to fit ``size`` = (width, height), keeping its aspect, and pad with black."""
    width, height = size
    scale = min(width / image_bgr.shape[1], height / image_bgr.shape[0])
    new_w, new_h = max(1, round(image_bgr.shape[1] * scale)), max(1, round(image_bgr.shape[0] * scale))
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if (new_w, new_h) == (width, height):
        return resized
    out = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    out[y0 : y0 + new_h, x0 : x0 + new_w] = resized
    return out


@dataclass
class BenchReport:
    """Per-stage milliseconds per frame and the end-to-end rate."""

    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in TABLE_STAGES})
    end_to_end_s: float = 0.0
    frames: int = 0
    faces_per_frame: float = 0.0
    backend: str = ""
    renderer: str = ""
    clip: str = ""
    size: tuple[int, int] = BENCH_SIZE

    @property
    def end_to_end_fps(self) -> float:
        return self.frames / self.end_to_end_s if self.end_to_end_s > 0 else 0.0

    def markdown(self) -> str:
        """The result as a markdown table."""
        lines = [
            f"Pipeline benchmark: {self.frames} frames of {Path(self.clip).name} at {self.size[0]}x{self.size[1]}, "
            f"{self.faces_per_frame:.2f} faces/frame, backend `{self.backend}`, renderer `{self.renderer}`, {os.cpu_count()} CPU cores",
            "",
            "| stage | mean ms | p95 ms | FPS (1000 / mean) |",
            "|---|---:|---:|---:|",
        ]
        for stage in TABLE_STAGES:
            values = np.asarray(self.stage_ms[stage]) if self.stage_ms[stage] else np.zeros(1)
            mean = float(values.mean())
            fps = f"{1000.0 / mean:.0f}" if mean > 1e-3 else "-"
            note = " (runs on some frames)" if stage == "detect" else ""
            lines.append(f"| {stage}{note} | {mean:.2f} | {np.percentile(values, 95):.2f} | {fps} |")
        per_frame = 1000.0 / self.end_to_end_fps if self.end_to_end_fps else 0.0
        lines.append(f"| **end to end** | **{per_frame:.2f}** | | **{self.end_to_end_fps:.1f}** |")
        return "\n".join(lines)


def _frames(clip: str | Path, count: int, size: tuple[int, int]):
    """Yield ``(decode_ms, image)`` for ``count`` frames of ``clip`` (a file loops when shorter; a camera index works)."""
    produced = 0
    while produced < count:
        with open_source(clip) as source:
            iterator = iter(source)
            before = produced
            while produced < count:
                tick = time.perf_counter()
                frame = next(iterator, None)
                if frame is None:
                    break
                image = fit_frame(frame.image_bgr, size)
                yield (time.perf_counter() - tick) * 1000, image
                produced += 1
            if produced == before:
                raise SourceError(f"{clip} gave no frames")


def bench_pipeline(
    backend,
    clip: str | int | Path,
    frames: int = 300,
    warmup: int = 15,
    renderer: str = "gl",
    size: tuple[int, int] = BENCH_SIZE,
    options: PipelineOptions | None = None,
    morphable=None,
) -> BenchReport:
    """Time the whole product path on ``clip``.

    Args:
        backend: an inference backend (``infer``, ``crop_size``).
        clip: a video file (or camera index); frames are fitted into ``size`` (width, height).
        frames: measured frames (the clip loops if shorter); ``warmup`` more run first, unmeasured.
        renderer: ``"gl"`` (falls back to ``"cv"`` without a GL context) or ``"cv"``.
    """
    from realtime.overlay import create_overlay

    options = options or PipelineOptions()
    report = BenchReport(backend=str(getattr(backend, "name", type(backend).__name__)), clip=str(clip), size=size)
    timestamp_ms = 0.0
    faces = 0
    with FacePipeline(backend, options, morphable=morphable) as pipeline, tempfile.TemporaryDirectory() as folder:
        overlay = create_overlay(renderer, pipeline, *size)
        report.renderer = overlay.name
        writer = cv2.VideoWriter(str(Path(folder) / "bench.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
        try:
            start = None
            for index, (decode_ms, image) in enumerate(_frames(clip, warmup + frames, size)):
                if index == warmup:
                    start = time.perf_counter() - decode_ms / 1000  # this frame's decode counts
                timestamp_ms += 1000.0 / 30.0
                result = pipeline.process(image, timestamp_ms)
                tick = time.perf_counter()
                annotated = overlay.draw(image, result.faces)
                render_ms = (time.perf_counter() - tick) * 1000
                tick = time.perf_counter()
                writer.write(annotated)
                encode_ms = (time.perf_counter() - tick) * 1000
                if index < warmup:
                    continue
                faces += len(result.faces)
                report.stage_ms["decode"].append(decode_ms)
                for stage in STAGES:
                    report.stage_ms[stage].append(result.timings_ms[stage])
                report.stage_ms["render"].append(render_ms)
                report.stage_ms["encode"].append(encode_ms)
                report.frames += 1
            report.end_to_end_s = time.perf_counter() - start if start is not None else 0.0
        finally:
            writer.release()
            overlay.close()
    report.faces_per_frame = faces / max(report.frames, 1)
    return report


def default_clip(assets_dir: str | None = None) -> Path:
    """The bench clip in the shared folder: ``$DRTN_SHARED/<clip>``, else beside the asset folder."""
    from drtn.assets import resolve_asset_dir

    shared = os.environ.get("DRTN_SHARED")
    root = Path(shared) if shared else resolve_asset_dir(assets_dir).parent
    return root / DEFAULT_CLIP


def run_pipeline_bench(args: argparse.Namespace) -> int:
    """``main.py bench --pipeline``: print (and with ``-o`` write) the markdown table.

    Reads from ``args`` (each optional): ``assets``; ``source`` (video file or camera index, default the
    shared clip :data:`DEFAULT_CLIP`); ``frames`` (default 300); ``backends`` (the first one is benched,
    default onnxruntime) or ``backend``; ``threads`` (the largest is used, default 2); ``renderer``
    (default gl); ``no_smoothing``; ``output``.
    """
    from realtime.arguments import create_backend
    from realtime.smoothing import SmoothingOptions
    from realtime.threads import limit_blas_threads

    limit_blas_threads(1)

    assets = getattr(args, "assets", None)
    source = getattr(args, "source", None) or getattr(args, "clip", None)
    if source is None:
        source = default_clip(assets)
        if not source.is_file():
            raise FileNotFoundError(
                f"bench clip not found: {source} (pass --source FILE, or set DRTN_SHARED to the shared folder)"
            )
    elif not str(source).strip().isdigit() and not Path(source).is_file():
        raise FileNotFoundError(f"bench source not found: {source}")
    kinds = getattr(args, "backends", None) or [getattr(args, "backend", None) or "onnxruntime"]
    threads = max(getattr(args, "threads", None) or [2])
    backend = create_backend(kinds[0], assets, threads=threads)
    options = PipelineOptions(assets_dir=assets, smoothing=SmoothingOptions(enabled=not getattr(args, "no_smoothing", False)))
    try:
        report = bench_pipeline(
            backend,
            source,
            frames=int(getattr(args, "frames", None) or 300),
            renderer=getattr(args, "renderer", None) or "gl",
            options=options,
        )
    finally:
        if hasattr(backend, "close"):
            backend.close()
    table = report.markdown()
    print(table)
    output = getattr(args, "output", None)
    if output:
        from drtn.outputs import atomic_write_text

        atomic_write_text(output, table + "\n")  # checked before the run (export.cli.check_bench_output)
    return 0 if report.frames else 1
