"""Mirror-averaged inference over any backend: each crop and its mirror in one call, the predictions averaged.

:class:`FlipAveragedBackend` wraps a :class:`export.backends.Backend`: ``infer`` of N crops runs the wrapped backend
once on 2N crops (the crops, then their left-right mirrors) and returns the mean of the plain prediction and the
mirror of the flipped one (:class:`drtn.mirror.MirrorMap`). Works on every backend kind (ONNX Runtime, torch,
TensorRT, the teacher) without re-exporting anything; the mirror and the average are a few microseconds of numpy.
"""

from __future__ import annotations

import time

import numpy as np

from drtn.mirror import MirrorMap, flip_crops
from export.backends.base import InferenceResult, validate_crops


class FlipAveragedBackend:
    """A backend whose predictions are mirror-averaged (same interface as :class:`export.backends.Backend`).

    Args:
        inner: the backend that runs the network (not closed by :meth:`close` unless ``owns_inner``).
        mirror: the parameter mirror of ``inner``'s crop size (``MirrorMap.from_morphable(morphable)``).
        pose_mode: ``"linear"`` (the measured better one) or ``"rotation"``; see :meth:`MirrorMap.average`.
        owns_inner: close ``inner`` with this backend.
    """

    def __init__(self, inner, mirror: MirrorMap, pose_mode: str = "linear", owns_inner: bool = True):
        if mirror.crop_size != inner.crop_size:
            raise ValueError(
                f"FlipAveragedBackend: mirror map for {mirror.crop_size} px crops, backend takes {inner.crop_size}"
            )
        self.inner, self.mirror, self.pose_mode, self.owns_inner = inner, mirror, pose_mode, owns_inner
        self.name = f"{inner.name}+flip"

    @property
    def crop_size(self) -> int:
        return int(self.inner.crop_size)

    @property
    def max_batch(self) -> int | None:
        """Half the wrapped backend's limit (each crop is run twice)."""
        limit = self.inner.max_batch
        return None if limit is None else max(1, limit // 2)

    def infer(self, crops_bgr: np.ndarray) -> InferenceResult:
        """(N, S, S, 3) uint8 BGR crops -> :class:`InferenceResult` with (N, 62) mirror-averaged params."""
        validate_crops(crops_bgr, self.crop_size)
        count = len(crops_bgr)
        if count == 0:
            return self.inner.infer(crops_bgr)
        start = time.perf_counter()
        both = np.concatenate([crops_bgr, flip_crops(crops_bgr)])
        result = self.inner.infer(both)
        middle = time.perf_counter()
        params = self.mirror.average(result.params[:count], result.params[count:], self.pose_mode).astype(np.float32)
        extra_ms = (time.perf_counter() - middle) * 1e3
        flip_ms = (middle - start) * 1e3 - result.total_ms
        return InferenceResult(params, result.preprocess_ms + max(flip_ms, 0.0), result.inference_ms + extra_ms)

    def close(self) -> None:
        if self.owns_inner:
            self.inner.close()

    def __enter__(self) -> "FlipAveragedBackend":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
