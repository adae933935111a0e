"""Latency benchmark of the inference backends, with the 3DDFA_V2 teacher in the same run as the reference.

For each thread count, every available backend is loaded once; for each batch size the backends are then run in
interleaved rounds (A, B, C, A, B, C, ...) so that a load spike on a shared machine hits all of them alike. Each
sample is one ``infer`` call on uint8 crops, preprocessing included; per-face latency is the call's wall time
divided by the batch size, throughput is ``batch / median call time``.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.backends import BACKEND_KINDS, Backend, BackendUnavailableError
from export.samples import random_crops

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchCell:
    """One backend x threads x batch measurement (times in milliseconds)."""

    backend: str
    threads: int | None  # None: not a CPU-thread setting (TensorRT)
    batch: int
    per_face_median_ms: float
    per_face_p90_ms: float
    faces_per_second: float
    samples: int


@dataclass(frozen=True)
class BenchReport:
    cells: list[BenchCell]
    skipped: dict[str, str]  # backend -> reason
    model: str  # which weights were measured
    machine: str
    seconds: float

    def cell(self, backend: str, threads: int | None, batch: int) -> BenchCell | None:
        return next((c for c in self.cells if (c.backend, c.threads, c.batch) == (backend, threads, batch)), None)

    def markdown(self) -> str:
        """The result as a markdown table (+ skipped backends and the settings)."""
        lines = [
            f"Model: {self.model}  ",
            f"Machine: {self.machine}  ",
            "",
            "| backend | threads | batch | per-face median (ms) | per-face p90 (ms) | faces/s | vs teacher |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for c in self.cells:
            teacher = self.cell("teacher", c.threads, c.batch)
            if c.backend == "teacher":
                ratio = "reference"
            elif teacher is not None:
                ratio = (
                    f"{teacher.per_face_median_ms / c.per_face_median_ms:.2f}x faster"
                    if c.per_face_median_ms <= teacher.per_face_median_ms
                    else f"{c.per_face_median_ms / teacher.per_face_median_ms:.2f}x slower"
                )
            else:
                ratio = "-"
            threads = "-" if c.threads is None else str(c.threads)
            lines.append(
                f"| {c.backend} | {threads} | {c.batch} | {c.per_face_median_ms:.3f} | {c.per_face_p90_ms:.3f} | "
                f"{c.faces_per_second:.0f} | {ratio} |"
            )
        for backend, reason in self.skipped.items():
            lines.append(f"\nSkipped {backend}: {reason}")
        return "\n".join(lines)


@dataclass
class ModelSource:
    """Which DRTN weights the benchmark runs: a checkpoint, an ONNX export, or an untrained config.

    Exactly one of ``checkpoint`` / ``onnx_path`` / ``untrained`` is used; all ``None`` = the bundled default.
    """

    checkpoint: Path | None = None
    onnx_path: Path | None = None
    untrained: str | None = None
    assets: object = None
    cache_dir: Path | None = None
    _network: object = field(default=None, repr=False)
    _onnx: Path | None = field(default=None, repr=False)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.untrained:
            return f"untrained `{self.untrained}` (random initialisation: latency only, outputs meaningless)"
        if self.onnx_path:
            return f"ONNX `{self.onnx_path}`"
        from export.cache import sha256_file
        from export.onnx_export import resolve_checkpoint

        path = resolve_checkpoint(self.checkpoint)
        return f"checkpoint `{path.name}` (sha256 {sha256_file(path)[:12]})"

    def network(self):
        """The torch module (normalised output)."""
        if self._network is None:
            if self.onnx_path:
                raise ValueError(f"the torch backend needs a checkpoint, but the model is an ONNX file ({self.onnx_path})")
            if self.untrained:
                from drtn.model import create_model

                self._network = create_model(self.untrained).eval()
            else:
                from export.onnx_export import load_network, resolve_checkpoint

                self._network = load_network(resolve_checkpoint(self.checkpoint))
        return self._network

    def onnx(self) -> Path:
        """An ONNX export of the model (exported once: into the cache, or a temp folder for untrained weights)."""
        if self._onnx is None:
            if self.onnx_path:
                self._onnx = self.onnx_path
            elif self.untrained:
                from export.onnx_export import export_onnx, load_stats

                self._tmp = tempfile.TemporaryDirectory(prefix="drtn-bench-")
                path = Path(self._tmp.name) / f"{self.untrained}.onnx"
                export_onnx(self.network(), path, stats=load_stats(self.assets))
                self._onnx = path
            else:
                from export.onnx_export import ensure_onnx

                self._onnx = ensure_onnx(
                    self.checkpoint, assets=self.assets, cache_dir=self.cache_dir / "onnx" if self.cache_dir else None
                )
        return self._onnx

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _create(kind: str, source: ModelSource, threads: int, max_batch: int) -> Backend:
    if kind == "teacher":
        from export.backends.onnxruntime_backend import TeacherBackend

        return TeacherBackend(assets=source.assets, threads=threads)
    if kind == "torch":
        from export.backends.torch_backend import TorchBackend
        from export.onnx_export import load_stats

        return TorchBackend(source.network(), load_stats(source.assets), threads=threads)
    if kind == "onnxruntime":
        from export.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(source.onnx(), threads=threads)
    if kind == "tensorrt":
        from export.backends.tensorrt_backend import TensorRTBackend, import_tensorrt

        import_tensorrt()
        return TensorRTBackend(
            source.onnx(), max_batch=max_batch, cache_dir=source.cache_dir / "tensorrt" if source.cache_dir else None
        )
    raise ValueError(f"unknown backend {kind!r}; expected one of {', '.join(BACKEND_KINDS)}")


def _measure(
    backends: list[Backend],
    batch: int,
    *,
    min_seconds: float,
    min_samples: int,
    max_seconds: float,
    warmup: int,
    block_seconds: float = 0.1,
) -> dict[str, list[float]]:
    """Interleaved timing: per-backend lists of ``infer`` wall times (seconds) for ``batch`` crops.

    Backends take turns in blocks of ``block_seconds`` (at least one call): switching on every call would
    measure the hand-over between thread pools (ONNX Runtime and OpenMP both spin-wait briefly after a run)
    rather than the backends.
    """
    crops = {b.crop_size: random_crops(batch, b.crop_size, seed=batch) for b in backends}
    for backend in backends:
        for _ in range(warmup):
            backend.infer(crops[backend.crop_size])
    samples: dict[str, list[float]] = {b.name: [] for b in backends}
    start = time.perf_counter()
    while True:
        for backend in backends:
            block_start = time.perf_counter()
            while True:
                begin = time.perf_counter()
                backend.infer(crops[backend.crop_size])
                end = time.perf_counter()
                samples[backend.name].append(end - begin)
                if end - block_start >= block_seconds:
                    break
        elapsed = time.perf_counter() - start
        enough = elapsed >= min_seconds and min(len(v) for v in samples.values()) >= min_samples
        if enough or elapsed >= max_seconds:
            return samples


def run_backend_bench(
    kinds: list[str],
    threads_list: list[int],
    batches: list[int],
    *,
    source: ModelSource | None = None,
    min_seconds: float = 1.0,
    min_samples: int = 10,
    max_seconds: float = 20.0,
    warmup: int = 3,
    flip_average: bool = False,
) -> BenchReport:
    """Measure per-face latency and throughput of each backend x threads x batch.

    Args:
        kinds: backends from :data:`export.backends.BACKEND_KINDS`; the teacher is added if missing (it is the
            reference of the table).
        threads_list: CPU thread counts (TensorRT runs once, its threads shown as ``-``).
        batches: batch sizes (faces per ``infer`` call).
        source: which DRTN weights; default the bundled model.
        min_seconds / min_samples / max_seconds: per batch size, keep sampling until both minima are met or the
            cap is reached.
        warmup: untimed calls per backend before sampling.
        flip_average: also measure every DRTN backend mirror-averaged (``<kind>+flip`` rows,
            :class:`export.backends.flip.FlipAveragedBackend`: one call on 2N crops), interleaved with the others.
    Returns:
        :class:`BenchReport`; backends that cannot run here are listed in ``skipped`` with the reason.
    """
    for kind in kinds:
        if kind not in BACKEND_KINDS:
            raise ValueError(f"--backends: unknown backend {kind!r}; expected some of {', '.join(BACKEND_KINDS)}")
    for name, values in (("--threads", threads_list), ("--batches", batches)):
        if not values or any(v < 1 for v in values):
            raise ValueError(f"{name}: expected positive integers, got {values}")
    kinds = list(dict.fromkeys((["teacher"] if "teacher" not in kinds else []) + list(kinds)))
    source = source or ModelSource()
    begin = time.perf_counter()
    cells: list[BenchCell] = []
    skipped: dict[str, str] = {}
    mirror = None
    if flip_average:
        from drtn.mirror import MirrorMap
        from drtn.morphable import MorphableModel

        mirror = MirrorMap.from_morphable(MorphableModel.load(source.assets))
    try:
        for threads in threads_list:
            backends: list[Backend] = []
            for kind in kinds:
                if kind in skipped or (kind == "tensorrt" and threads != threads_list[0]):
                    continue  # TensorRT does not use CPU threads: measure it once
                try:
                    backends.append(_create(kind, source, threads, max(batches)))
                except (BackendUnavailableError, FileNotFoundError, ValueError, ImportError, RuntimeError) as error:
                    skipped[kind] = str(error).splitlines()[0]
                    LOGGER.warning("skipping %s: %s", kind, skipped[kind])
            if not backends:
                break
            if mirror is not None:
                from export.backends.flip import FlipAveragedBackend

                backends += [FlipAveragedBackend(b, mirror, owns_inner=False) for b in list(backends) if b.name != "teacher"]
            for batch in batches:
                LOGGER.info("measuring %s at %d threads, batch %d", ", ".join(b.name for b in backends), threads, batch)
                samples = _measure(
                    backends, batch, min_seconds=min_seconds, min_samples=min_samples, max_seconds=max_seconds, warmup=warmup
                )
                for backend in backends:
                    seconds = np.asarray(samples[backend.name])
                    per_face_ms = seconds * 1e3 / batch
                    cells.append(
                        BenchCell(
                            backend=backend.name,
                            threads=None if backend.name == "tensorrt" else threads,
                            batch=batch,
                            per_face_median_ms=float(np.median(per_face_ms)),
                            per_face_p90_ms=float(np.percentile(per_face_ms, 90)),
                            faces_per_second=float(batch / np.median(seconds)),
                            samples=len(seconds),
                        )
                    )
            for backend in backends:
                backend.close()
        model = source.describe() if any(c.backend != "teacher" for c in cells) else "-"
    finally:
        source.close()
    order = {name: i for i, name in enumerate(kinds + [f"{kind}+flip" for kind in kinds])}
    order["teacher"] = -1  # the reference row first in each group
    cells.sort(key=lambda c: (c.threads or 0, c.batch, order.get(c.backend, 99)))
    return BenchReport(cells, skipped, model, _machine(), time.perf_counter() - begin)


def _machine() -> str:
    import onnxruntime
    import torch

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, load average {load}; "
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}"
    )
