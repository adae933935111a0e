"""The backend interface: preprocessing, input validation, empty and oversized batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from export.backends.base import Backend, InferenceResult, preprocess_crops, validate_crops


class EchoBackend(Backend):
    """Returns the per-crop mean of the normalised input in every parameter (for testing the base class)."""

    name = "echo"

    def __init__(self, crop_size: int = 8, max_batch: int | None = None):
        self._crop_size, self._max_batch = crop_size, max_batch
        self.seen: list[np.ndarray] = []

    @property
    def crop_size(self) -> int:
        return self._crop_size

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    def _run(self, images: np.ndarray) -> np.ndarray:
        self.seen.append(images)
        return np.repeat(images.mean(axis=(1, 2, 3))[:, None], 62, axis=1)


def test_preprocess_values_layout_and_channel_order():
    crops = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    crops[0, ..., 0] = 0  # B
    crops[0, ..., 1] = 255  # G
    crops[0, ..., 2] = 128  # R
    crops[1] = 127
    images = preprocess_crops(crops, 4)
    assert images.shape == (2, 3, 4, 4) and images.dtype == np.float32 and images.flags.c_contiguous
    # (x - 127.5) / 128, channels kept in BGR order
    np.testing.assert_array_equal(images[0, 0], -127.5 / 128)
    np.testing.assert_array_equal(images[0, 1], 127.5 / 128)
    np.testing.assert_array_equal(images[0, 2], 0.5 / 128)
    np.testing.assert_array_equal(images[1], -0.5 / 128)


@pytest.mark.parametrize(
    "crops, message",
    [
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "dtype uint8"),
        (np.zeros((2, 8, 8), dtype=np.uint8), "expected shape (N, 8, 8, 3)"),
        (np.zeros((2, 3, 8, 8), dtype=np.uint8), "got (2, 3, 8, 8)"),
        (np.zeros((2, 16, 16, 3), dtype=np.uint8), "got (2, 16, 16, 3)"),
        (np.zeros((8, 8, 3), dtype=np.uint8), "crops[None]"),
        ([[0]], "numpy array"),
    ],
)
def test_infer_rejects_bad_crops_with_clear_message(crops, message):
    with pytest.raises(ValueError, match="crops: ") as error:
        EchoBackend().infer(crops)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_infer_result_and_timing():
    backend = EchoBackend()
    crops = np.full((3, 8, 8, 3), 255, dtype=np.uint8)
    result = backend.infer(crops)
    assert isinstance(result, InferenceResult)
    assert result.params.shape == (3, 62) and result.params.dtype == np.float32
    np.testing.assert_allclose(result.params, 127.5 / 128)
    assert result.batch_size == 3 and result.total_ms >= result.inference_ms >= 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.params = None


def test_empty_batch_gives_empty_result_without_running():
    backend = EchoBackend()
    result = backend.infer(np.zeros((0, 8, 8, 3), dtype=np.uint8))
    assert result.params.shape == (0, 62) and result.batch_size == 0
    assert backend.seen == []


def test_batch_over_max_batch_is_a_value_error_naming_the_option():
    backend = EchoBackend(max_batch=4)
    backend.infer(np.zeros((4, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"batch of 5 crops exceeds .* max batch 4 .*--max-batch"):
        backend.infer(np.zeros((5, 8, 8, 3), dtype=np.uint8))


def test_wrong_output_shape_from_a_runtime_is_caught():
    class Broken(EchoBackend):
        def _run(self, images):
            return np.zeros((len(images), 61), dtype=np.float32)

    with pytest.raises(RuntimeError, match=r"expected output shape \(2, 62\), got \(2, 61\)"):
        Broken().infer(np.zeros((2, 8, 8, 3), dtype=np.uint8))


def test_validate_crops_returns_input_without_copy():
    crops = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    assert validate_crops(crops, 8) is crops


def test_context_manager_closes():
    closed = []

    class Closing(EchoBackend):
        def close(self):
            closed.append(True)

    with Closing() as backend:
        backend.infer(np.zeros((1, 8, 8, 3), dtype=np.uint8))
    assert closed == [True]
