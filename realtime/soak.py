"""The soak benchmark: the whole ``video`` path (decode, pipeline, overlay, H.264 writer, records) over many
frames, with the process's memory sampled as it goes, to show that nothing grows.

``main.py bench --soak 9000 [--source clip.mp4] [--renderer cv] [--backends onnxruntime] [-o table.md]``
loops the clip (default the shared bench clip) until ``N`` frames are done, writing the video and records to a
temporary folder that is deleted afterwards, and prints a markdown table: resident memory (RSS, MiB) at
evenly spaced frames, the growth after warm-up, and the frame rate. Not a test: it takes minutes
(9,000 frames ~ 5 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from realtime.sources import Frame, FrameSource, VideoFileSource

LOGGER = logging.getLogger(__name__)


def rss_mib() -> float:
    """Resident memory of this process in MiB (``/proc/self/status``; the peak from ``getrusage`` elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class SoakReport:
    """Memory samples ``(frame, rss MiB)`` and the timing of a soak run."""

    clip: str
    frames: int = 0
    seconds: float = 0.0
    samples: list[tuple[int, float]] = field(default_factory=list)
    writer: str = ""

    @property
    def growth_mib(self) -> float:
        """RSS at the end minus RSS after warm-up (the sample nearest 10 % of the run)."""
        if len(self.samples) < 2:
            return 0.0
        warm = min(self.samples, key=lambda s: abs(s[0] - 0.1 * self.frames))
        return self.samples[-1][1] - warm[1]

    def markdown(self) -> str:
        rows = [
            f"Soak: {self.frames} frames of {Path(self.clip).name} through `video` (pipeline, overlay, {self.writer} writer, records), "
            f"{self.frames / self.seconds if self.seconds else 0:.1f} FPS, {self.seconds:.0f} s",
            "",
            "| frame | RSS (MiB) |",
            "|---:|---:|",
        ]
        rows += [f"| {frame} | {rss:.0f} |" for frame, rss in self.samples]
        peak = max((rss for _, rss in self.samples), default=0.0)
        rows += ["", f"peak {peak:.0f} MiB; growth after warm-up {self.growth_mib:+.1f} MiB"]
        return "\n".join(rows)


class LoopingSource(FrameSource):
    """A video file played again and again (timestamps keep increasing) until ``frames`` frames; samples RSS
    into ``report`` every ``sample_every`` frames."""

    def __init__(self, path: str | os.PathLike, frames: int, report: SoakReport, sample_every: int):
        self.path = Path(path)
        with VideoFileSource(self.path) as probe:
            self.fps, self.frame_size = probe.fps, probe.frame_size
        self.description = f"{self.path} (looped)"
        self.max_frames = frames
        self._report, self._every = report, max(1, sample_every)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while index < self.max_frames:
            with VideoFileSource(self.path) as source:
                for frame in source:
                    if index >= self.max_frames:
                        break
                    if index % self._every == 0:
                        self._report.samples.append((index, rss_mib()))
                    yield Frame(frame.image_bgr, index * 1000.0 / self.fps, index)
                    index += 1
        self._report.samples.append((index, rss_mib()))


def run_soak(
    backend, clip: str | os.PathLike, frames: int, options=None, renderer: str = "cv", samples: int = 10
) -> SoakReport:
    """Run ``frames`` frames of ``clip`` (looped) through :func:`realtime.video.process_video` into a temporary
    folder; see the module docstring."""
    from realtime.overlay import create_overlay
    from realtime.pipeline import FacePipeline, PipelineOptions
    from realtime.video import process_video

    if frames < 1:
        raise ValueError(f"--soak: expected >= 1 frames, got {frames}")
    report = SoakReport(str(clip))
    source = LoopingSource(clip, frames, report, sample_every=max(1, frames // samples))
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="drtn-soak-") as folder,
        FacePipeline(backend, options or PipelineOptions()) as pipeline,
    ):
        overlay = create_overlay(renderer, pipeline, *source.frame_size)
        try:
            summary = process_video(
                source, pipeline, Path(folder) / "soak.mp4", Path(folder) / "soak.jsonl", overlay, progress=False
            )
        finally:
            overlay.close()
    report.frames, report.writer, report.seconds = summary.frames, summary.writer, time.perf_counter() - start
    return report


def run_soak_command(args: argparse.Namespace) -> int:
    """``main.py bench --soak N``: reads ``assets``, ``source``, ``backends`` (first), ``renderer``, ``output``."""
    from realtime.arguments import create_backend
    from realtime.bench import default_clip
    from realtime.pipeline import PipelineOptions
    from realtime.smoothing import SmoothingOptions
    from realtime.threads import limit_blas_threads

    limit_blas_threads(1)
    assets = getattr(args, "assets", None)
    clip = Path(getattr(args, "source", None) or default_clip(assets))
    if not clip.is_file():
        raise FileNotFoundError(f"soak clip not found: {clip} (pass --source FILE)")
    kinds = getattr(args, "backends", None) or ["onnxruntime"]
    backend = create_backend(kinds[0], assets, threads=max(getattr(args, "threads", None) or [2]))
    try:
        # video's defaults: offline smoothing (its frames held back are part of the memory measured)
        options = PipelineOptions(assets_dir=assets, smoothing=SmoothingOptions(mode="offline"))
        report = run_soak(backend, clip, int(args.soak), options, renderer=getattr(args, "renderer", None) or "cv")
    finally:
        if hasattr(backend, "close"):
            backend.close()
    table = report.markdown()
    print(table)
    if getattr(args, "output", None):
        from drtn.outputs import atomic_write_text

        atomic_write_text(args.output, table + "\n")
    return 0
