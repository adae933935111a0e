"""The ONNX export shipped beside the weights (drtn/weights/drtn_rt.onnx) belongs to the shipped checkpoint.

A retrained drtn_rt.pt shipped with a stale ONNX fails here; regenerate it with
``python main.py export -o drtn/weights/drtn_rt.onnx``.
"""

from __future__ import annotations

import logging

import pytest

from export.cache import sha256_file
from export.contract import bundled_checkpoint_path, bundled_onnx_path

REGENERATE = "regenerate it: python main.py export -o drtn/weights/drtn_rt.onnx"


def test_shipped_onnx_records_the_shipped_checkpoint():
    from export.onnx_export import inspect_onnx

    info = inspect_onnx(bundled_onnx_path())
    assert info.is_drtn_export and info.fixed_batch is None and info.crop_size == 120
    assert info.metadata["source_checkpoint_sha256"] == sha256_file(bundled_checkpoint_path()), REGENERATE


def test_shipped_onnx_computes_what_the_checkpoint_computes(helen_crops, stats, morphable, assets_dir):
    """ONNX Runtime on the shipped file vs torch on the shipped checkpoint, on real face crops."""
    from export.backends.onnxruntime_backend import OnnxRuntimeBackend
    from export.backends.torch_backend import TorchBackend
    from export.compare import FP32_TOLERANCE, compare_backends

    with OnnxRuntimeBackend(bundled_onnx_path()) as shipped, TorchBackend.from_checkpoint(None, assets=assets_dir) as reference:
        report = compare_backends(reference, shipped, helen_crops, stats, morphable)
    assert FP32_TOLERANCE.violations(report) == [], f"{report.summary()}; {REGENERATE}"


def test_default_backend_uses_the_shipped_onnx(assets_dir, tmp_path):
    from export.backends import create_backend

    with create_backend("onnxruntime", assets=assets_dir, cache_dir=tmp_path) as backend:
        assert backend.model_path == bundled_onnx_path()
    assert not (tmp_path / "onnx").exists()  # nothing exported


def test_stale_shipped_onnx_is_not_used(assets_dir, tmp_path, monkeypatch, caplog):
    """Another checkpoint beside the shipped ONNX: the factory exports that checkpoint instead, with a warning."""
    import export.contract
    import export.onnx_export

    other = tmp_path / "drtn_rt.pt"
    other.write_bytes(bundled_checkpoint_path().read_bytes() + b"retrained")
    monkeypatch.setattr(export.contract, "bundled_checkpoint_path", lambda: other)
    exported = []
    monkeypatch.setattr(
        export.onnx_export, "ensure_onnx", lambda checkpoint, **kwargs: exported.append(checkpoint) or bundled_onnx_path()
    )
    from export.backends import bundled_onnx

    with caplog.at_level(logging.WARNING, logger="export.backends"):
        bundled_onnx(tmp_path, assets_dir)
    assert exported == [None] and "exported from another checkpoint" in caplog.text and "drtn export -o" in caplog.text


@pytest.mark.parametrize("missing", [True, False])
def test_missing_or_corrupt_shipped_onnx_falls_back(assets_dir, tmp_path, monkeypatch, missing):
    import export.contract
    import export.onnx_export

    shipped = tmp_path / "drtn_rt.onnx"
    if not missing:
        shipped.write_bytes(b"not an onnx file")
    monkeypatch.setattr(export.contract, "bundled_onnx_path", lambda: shipped)
    exported = []
    monkeypatch.setattr(
        export.onnx_export, "ensure_onnx", lambda checkpoint, **kwargs: exported.append(checkpoint) or tmp_path / "x.onnx"
    )
    from export.backends import bundled_onnx

    assert bundled_onnx(tmp_path, assets_dir) == tmp_path / "x.onnx" and exported == [None]


def test_factory_does_not_run_a_stale_shipped_onnx(assets_dir, tmp_path, monkeypatch):
    import export.contract
    import export.onnx_export
    from export.backends import create_backend

    other = tmp_path / "drtn_rt.pt"
    other.write_bytes(b"a retrained checkpoint")
    monkeypatch.setattr(export.contract, "bundled_checkpoint_path", lambda: other)
    exported = []
    monkeypatch.setattr(
        export.onnx_export, "ensure_onnx", lambda checkpoint, **kwargs: exported.append(checkpoint) or bundled_onnx_path()
    )
    with create_backend("onnxruntime", assets=assets_dir, cache_dir=tmp_path):
        pass
    assert exported == [None]  # went through the export of the (new) bundled checkpoint
