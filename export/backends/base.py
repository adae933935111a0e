"""The one inference-backend interface: uint8 BGR crops in, de-normalised 62 parameters out.

Every backend (torch, ONNX Runtime, TensorRT, the 3DDFA_V2 teacher) is a :class:`Backend` and returns an
:class:`InferenceResult`; the tracker and the app never branch on which one they hold. Pixel normalisation
happens in exactly one place, :func:`preprocess_crops`, and its constants are the ones written into the ONNX
metadata (``pixel_mean``, ``pixel_scale``).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass

import numpy as np

from drtn.crop import PIXEL_MEAN, PIXEL_SCALE, normalize_crops  # noqa: F401 (PIXEL_* re-exported)
from drtn.params import NUM_PARAMS

CHANNEL_ORDER = "BGR"  # OpenCV order; the crops come straight from cv2 frames


class BackendUnavailableError(ImportError):
    """A backend's optional package or hardware is missing; the message names the install command."""


@dataclass(frozen=True)
class InferenceResult:
    """Output of :meth:`Backend.infer` for one batch of crops.

    Attributes:
        params: (N, 62) float32 de-normalised parameters, 3DDFA layout (see :mod:`drtn.params`):
            12 pose (3x4 ``[s*R | t]`` row-major), 40 identity, 10 expression. N may be 0.
        preprocess_ms: wall time of uint8 -> normalised float32 NCHW, milliseconds.
        inference_ms: wall time of the model run including host<->device copies, milliseconds.
    """

    params: np.ndarray
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0

    @property
    def batch_size(self) -> int:
        return int(self.params.shape[0])

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms


def validate_crops(crops_bgr: np.ndarray, crop_size: int) -> np.ndarray:
    """Check a batch of crops at the API boundary.

    Args:
        crops_bgr: (N, S, S, 3) uint8, BGR, ``S == crop_size``; N may be 0.
    Returns:
        The same array (no copy).
    Raises:
        ValueError: wrong type, dtype or shape; the message gives what was expected and received.
    """
    if not isinstance(crops_bgr, np.ndarray):
        raise ValueError(
            f"crops: expected a numpy array (N, {crop_size}, {crop_size}, 3) uint8, got {type(crops_bgr).__name__}"
        )
    expected = f"(N, {crop_size}, {crop_size}, 3) uint8 BGR"
    if crops_bgr.ndim == 3 and crops_bgr.shape == (crop_size, crop_size, 3):
        raise ValueError(f"crops: expected a batch {expected}, got one crop of shape {crops_bgr.shape} (use crops[None])")
    if crops_bgr.ndim != 4 or crops_bgr.shape[1:] != (crop_size, crop_size, 3):
        raise ValueError(f"crops: expected shape {expected}, got {crops_bgr.shape}")
    if crops_bgr.dtype != np.uint8:
        raise ValueError(
            f"crops: expected dtype uint8 {expected}, got {crops_bgr.dtype} (pass the raw 0..255 crop, not normalised)"
        )
    return crops_bgr


def preprocess_crops(crops_bgr: np.ndarray, crop_size: int) -> np.ndarray:
    """The one pixel normalisation of the product: uint8 BGR crops -> network input.

    Args:
        crops_bgr: (N, S, S, 3) uint8, BGR, ``S == crop_size``.
    Returns:
        (N, 3, S, S) float32 C-contiguous, ``(pixel - 127.5) / 128``, channels still BGR.
    """
    validate_crops(crops_bgr, crop_size)
    return normalize_crops(crops_bgr)


def check_params_output(params: np.ndarray, batch: int, source: str) -> np.ndarray:
    """Make sure a runtime returned (batch, 62) finite-shaped float32 params."""
    params = np.asarray(params)
    if params.shape != (batch, NUM_PARAMS):
        raise RuntimeError(f"{source}: expected output shape ({batch}, {NUM_PARAMS}), got {params.shape}")
    return params.astype(np.float32, copy=False)


class Backend(abc.ABC):
    """An inference backend: a loaded model that maps crops to parameters.

    Subclasses implement :meth:`_run` (normalised NCHW float32 -> (N, 62) de-normalised float32) and set
    ``name``, ``crop_size`` and ``max_batch``. Use as a context manager or call :meth:`close`.
    """

    name: str = "backend"

    @property
    @abc.abstractmethod
    def crop_size(self) -> int:
        """Side S of the square crops the model takes (pixels)."""

    @property
    def max_batch(self) -> int | None:
        """Largest batch one :meth:`infer` call accepts; ``None`` = no limit."""
        return None

    @abc.abstractmethod
    def _run(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 normalised, 1 <= N <= max_batch -> (N, 62) float32 de-normalised."""

    def infer(self, crops_bgr: np.ndarray) -> InferenceResult:
        """Run the model on a batch of face crops.

        Args:
            crops_bgr: (N, S, S, 3) uint8 BGR crops (:func:`drtn.crop.crop_image`), N >= 0.
        Returns:
            :class:`InferenceResult` with (N, 62) de-normalised params; N == 0 gives an empty result.
        Raises:
            ValueError: wrong dtype / shape, or N larger than :attr:`max_batch`.
        """
        validate_crops(crops_bgr, self.crop_size)
        batch = crops_bgr.shape[0]
        if batch == 0:
            return InferenceResult(np.zeros((0, NUM_PARAMS), dtype=np.float32))
        limit = self.max_batch
        if limit is not None and batch > limit:
            raise ValueError(
                f"{self.name}: batch of {batch} crops exceeds this backend's max batch {limit} "
                f"(rebuild with a larger --max-batch, or split the batch)"
            )
        start = time.perf_counter()
        images = preprocess_crops(crops_bgr, self.crop_size)
        middle = time.perf_counter()
        params = check_params_output(self._run(images), batch, self.name)
        end = time.perf_counter()
        return InferenceResult(params, preprocess_ms=(middle - start) * 1e3, inference_ms=(end - middle) * 1e3)

    def close(self) -> None:
        """Release sessions / device memory. Idempotent."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, crop_size={self.crop_size}, max_batch={self.max_batch})"
