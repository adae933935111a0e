"""The peer 3DDFA_V2 model as a :data:`Predictor` for training: label fitting's initial guess, video
pseudo-labels and the side-by-side column of ``main.py eval``.

It is export's ``teacher`` backend (:class:`export.backends.onnxruntime_backend.TeacherBackend`), the same one
the app and the benchmark run, so every number about the peer comes from one implementation.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]  # (N, 120, 120, 3) uint8 BGR -> (N, 62) de-normalised params


def peer_predictor(assets, threads: int = 2) -> Predictor:
    """The teacher of ``assets`` (an :class:`drtn.assets.Assets` or an asset folder) as a batched predictor."""
    from export.backends import create_backend

    backend = create_backend("teacher", assets=assets, threads=threads)
    chunk = backend.max_batch or 64

    def predict(crops_bgr: np.ndarray) -> np.ndarray:
        parts = [backend.infer(np.ascontiguousarray(crops_bgr[i : i + chunk])).params for i in range(0, len(crops_bgr), chunk)]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 62))

    return predict
