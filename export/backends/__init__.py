"""Inference backends behind one interface, and the factory that the tracker, the app and the benchmark use.

>>> from export.backends import create_backend
>>> with create_backend("onnxruntime", threads=2) as backend:     # bundled default model
...     result = backend.infer(crops_bgr)                          # (N, 120, 120, 3) uint8 -> result.params (N, 62)

Kinds: ``onnxruntime`` (default; CPU), ``torch``, ``tensorrt`` (NVIDIA GPU + TensorRT), ``teacher`` (the 3DDFA_V2
peer on ONNX Runtime). Each module imports its heavy package only when that backend is selected.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from export.backends.base import (
    CHANNEL_ORDER,
    PIXEL_MEAN,
    PIXEL_SCALE,
    Backend,
    BackendUnavailableError,
    InferenceResult,
    preprocess_crops,
    validate_crops,
)

LOGGER = logging.getLogger(__name__)

BACKEND_KINDS = ("onnxruntime", "torch", "tensorrt", "teacher")

__all__ = [
    "BACKEND_KINDS",
    "CHANNEL_ORDER",
    "PIXEL_MEAN",
    "PIXEL_SCALE",
    "Backend",
    "BackendUnavailableError",
    "InferenceResult",
    "create_backend",
    "preprocess_crops",
    "validate_crops",
]


def _is_checkpoint(path: Path) -> bool:
    from export.contract import CHECKPOINT_SUFFIXES

    return path.suffix.lower() in CHECKPOINT_SUFFIXES


def bundled_onnx(cache_dir: Path | None = None, assets=None) -> Path:
    """The ONNX export of the bundled checkpoint: ``drtn/weights/drtn_rt.onnx`` when it records that checkpoint's
    SHA-256 (read with ONNX Runtime only: no torch, no onnx package), else an export into the user cache (torch).

    Raises:
        ImportError: the shipped ONNX is missing or stale and torch (the ``[train]`` extra) is not installed.
    """
    from export.contract import bundled_checkpoint_path, bundled_onnx_path, sha256_file

    shipped, checkpoint = bundled_onnx_path(), bundled_checkpoint_path()
    reason = f"{shipped} is missing"
    if shipped.is_file():
        import onnxruntime as ort

        reason = f"{shipped} records no source checkpoint"
        try:
            recorded = (
                ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
                .get_modelmeta()
                .custom_metadata_map.get("source_checkpoint_sha256")
            )
        except Exception as error:  # noqa: BLE001 - a corrupt file is re-exported like a stale one
            recorded, reason = None, f"{shipped} is unreadable ({error})"
        if not checkpoint.is_file() or recorded == sha256_file(checkpoint):
            return shipped
        if recorded is not None:
            reason = f"{shipped} was exported from another checkpoint than {checkpoint.name}"
    LOGGER.warning(
        "%s; exporting the bundled checkpoint to the user cache (regenerate it with `drtn export -o %s`)", reason, shipped
    )
    try:
        from export.onnx_export import ensure_onnx
    except ImportError as error:
        raise ImportError(
            f"{reason}, and exporting {checkpoint.name} needs torch (pip install 'drtn[train]'): {error}"
        ) from error
    return ensure_onnx(None, assets=assets, cache_dir=cache_dir / "onnx" if cache_dir else None)


def create_backend(
    kind: str = "onnxruntime",
    model_path: str | os.PathLike | None = None,
    *,
    threads: int = 2,
    assets=None,
    max_batch: int = 32,
    opt_batch: int | None = None,
    precision: str = "fp16",
    device: str = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> Backend:
    """Build a backend.

    Args:
        kind: one of :data:`BACKEND_KINDS`.
        model_path: ``.onnx`` export or ``.pt`` checkpoint; ``None`` = the bundled default weights (for
            ``onnxruntime`` / ``tensorrt`` their shipped export ``drtn/weights/drtn_rt.onnx``, see
            :func:`bundled_onnx`; a checkpoint is exported once to the user cache). For ``teacher``: another
            teacher ONNX file.
        threads: CPU threads (ONNX Runtime intra-op, or torch); ignored by ``tensorrt``.
        assets: asset folder (``--assets`` / ``DRTN_ASSETS``): parameter statistics, the teacher.
        max_batch / opt_batch / precision: TensorRT engine profile and precision.
        device: torch device for ``torch``.
        cache_dir: cache root for default ONNX exports (``<cache_dir>/onnx``) and engines
            (``<cache_dir>/tensorrt``); default :func:`export.cache.user_cache_dir`.
    Raises:
        ValueError: unknown kind or bad option; FileNotFoundError: missing model / asset;
        BackendUnavailableError: the kind's package or hardware is missing (message names the install command).
    """
    if kind not in BACKEND_KINDS:
        raise ValueError(f"unknown backend {kind!r}; expected one of {', '.join(BACKEND_KINDS)}")
    path = Path(model_path) if model_path is not None else None
    cache_root = Path(cache_dir) if cache_dir is not None else None

    if kind == "teacher":
        from export.backends.onnxruntime_backend import TeacherBackend

        return TeacherBackend(path, assets=assets, threads=threads)

    if kind == "torch":
        from export.backends.torch_backend import TorchBackend

        if path is not None and not _is_checkpoint(path):
            raise ValueError(f"the torch backend needs a checkpoint (.pt), got {path}")
        return TorchBackend.from_checkpoint(path, assets=assets, threads=threads, device=device)

    if kind == "tensorrt":  # check availability first: no point exporting ONNX on a machine that cannot build
        from export.backends.tensorrt_backend import import_tensorrt

        import_tensorrt()

    if path is None and kind == "onnxruntime":  # the shipped export, if current: one session, no export
        from export.backends.onnxruntime_backend import OnnxRuntimeBackend
        from export.contract import bundled_checkpoint_path, bundled_onnx_path, sha256_file

        shipped, checkpoint = bundled_onnx_path(), bundled_checkpoint_path()
        try:
            backend = OnnxRuntimeBackend(shipped, threads=threads)
        except (ValueError, FileNotFoundError):
            backend = None  # bundled_onnx() says why and exports
        if backend is not None:
            if not checkpoint.is_file() or backend.info.metadata.get("source_checkpoint_sha256") == sha256_file(checkpoint):
                return backend
            backend.close()
    if path is None:
        path = bundled_onnx(cache_root, assets)
    elif _is_checkpoint(path):
        from export.onnx_export import ensure_onnx

        path = ensure_onnx(path, assets=assets, cache_dir=cache_root / "onnx" if cache_root else None)

    if kind == "onnxruntime":
        from export.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, threads=threads)

    from export.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(
        path,
        max_batch=max_batch,
        opt_batch=opt_batch,
        precision=precision,
        cache_dir=cache_root / "tensorrt" if cache_root else None,
    )
