"""TensorRT backend: the error without the library (always), and the real engine on a GPU (markers, skipped here)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.backends import BackendUnavailableError, create_backend
from export.backends.tensorrt_backend import INSTALL_COMMAND, TensorRTBackend, tensorrt_available

from .test_onnx_export import tiny_onnx


def test_importing_the_backends_does_not_import_tensorrt():
    code = (
        "import sys, export.backends, export.backends.tensorrt_backend, export.engine_cache; print('tensorrt' in sys.modules)"
    )
    repo = Path(__file__).resolve().parents[2]
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo).stdout
    assert output.strip() == "False"


def test_selecting_tensorrt_without_the_library_names_the_install_command(no_tensorrt, tmp_path):
    with pytest.raises(BackendUnavailableError) as error:
        create_backend("tensorrt", tmp_path / "model.onnx")
    message = str(error.value)
    assert INSTALL_COMMAND in message and "pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12" in message
    assert "NVIDIA GPU" in message and "\n" not in message
    assert isinstance(error.value, ImportError)  # main.py turns it into one 'error:' line


def test_availability_probe_reports_the_reason(no_tensorrt):
    available, reason = tensorrt_available()
    assert not available and INSTALL_COMMAND in reason


def test_bad_profile_fails_before_touching_tensorrt(no_tensorrt, tmp_path):
    with pytest.raises(ValueError, match="--max-batch must be >= 1, got 0"):
        TensorRTBackend(tmp_path / "model.onnx", max_batch=0)
    with pytest.raises(ValueError, match=r"opt=64 max=32"):
        TensorRTBackend(tmp_path / "model.onnx", max_batch=32, opt_batch=64)


def test_bad_onnx_fails_before_touching_tensorrt(no_tensorrt, tmp_path):
    with pytest.raises(FileNotFoundError, match="ONNX model not found: .*missing.onnx"):
        TensorRTBackend(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match=r"foreign.onnx: not a DRTN export"):
        TensorRTBackend(tiny_onnx(tmp_path / "foreign.onnx"))
    fixed = tiny_onnx(
        tmp_path / "fixed.onnx", in_shape=(1, 3, 8, 8), metadata={"producer": "drtn.export", "params": "denormalized"}
    )
    with pytest.raises(ValueError, match="fixed.onnx: fixed batch 1 cannot serve --max-batch 32"):
        TensorRTBackend(fixed)


# ---------------------------------------------------------------------------------------------- on a GPU
requires_tensorrt = pytest.mark.skipif(not tensorrt_available()[0], reason=tensorrt_available()[1] or "TensorRT available")


@pytest.mark.gpu
@pytest.mark.tensorrt
@requires_tensorrt
def test_fp16_engine_matches_onnxruntime_and_is_cached(exported, tmp_path, helen_crops, stats, morphable, caplog):
    from export.backends.onnxruntime_backend import OnnxRuntimeBackend
    from export.compare import FP16_TOLERANCE, compare_backends

    _, onnx_path = exported
    with caplog.at_level(logging.INFO):
        engine = TensorRTBackend(onnx_path, max_batch=8, cache_dir=tmp_path)
    assert "building TensorRT fp16 engine" in caplog.text
    assert engine.max_batch == 8 and engine.crop_size == 120
    report = compare_backends(OnnxRuntimeBackend(onnx_path), engine, helen_crops, stats, morphable)
    assert FP16_TOLERANCE.violations(report) == [], report.summary()
    assert np.isfinite(engine.infer(helen_crops[:1]).params).all()  # identity coefficients did not overflow FP16

    with pytest.raises(ValueError, match="exceeds the TensorRT engine's profile max 8"):
        engine.infer(np.zeros((9, 120, 120, 3), dtype=np.uint8))

    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = TensorRTBackend(onnx_path, max_batch=8, cache_dir=tmp_path)
    assert "using cached TensorRT engine" in caplog.text and "building" not in caplog.text
    np.testing.assert_array_equal(again.infer(helen_crops).params, engine.infer(helen_crops).params)

    # a corrupt engine file is rebuilt, never deserialized
    (again.cache.entry_dir(again.key) / "engine.plan").write_bytes(b"garbage")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        TensorRTBackend(onnx_path, max_batch=8, cache_dir=tmp_path)
    assert "discarding cached TensorRT engine" in caplog.text and "building TensorRT" in caplog.text


@pytest.mark.gpu
@pytest.mark.tensorrt
@requires_tensorrt
def test_fp32_engine_is_tight(exported, tmp_path, helen_crops, stats):
    from export.backends.onnxruntime_backend import OnnxRuntimeBackend
    from export.compare import compare_backends

    _, onnx_path = exported
    engine = TensorRTBackend(onnx_path, max_batch=8, precision="fp32", cache_dir=tmp_path)
    report = compare_backends(OnnxRuntimeBackend(onnx_path), engine, helen_crops, stats)
    assert report.max_abs_normalized < 1e-2, report.summary()  # TF32 may be used for FP32 convolutions
