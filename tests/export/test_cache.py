"""Cached models are verified against the content hash recorded when they were written: an altered file is
rebuilt, never run."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export.cache import hash_record_path, record_content_hash, sha256_file, verify_content_hash, write_verified_bytes
from export.onnx_export import ensure_onnx, inspect_onnx


def test_hash_record_catches_any_change(tmp_path):
    path = write_verified_bytes(tmp_path / "model.bin", b"model bytes")
    assert verify_content_hash(path) is None
    assert hash_record_path(path).read_text().split() == [sha256_file(path), "model.bin"]
    path.write_bytes(b"model bytez")  # same size, one byte changed
    assert "altered on disk" in verify_content_hash(path)
    record_content_hash(path)
    assert verify_content_hash(path) is None
    hash_record_path(path).unlink()  # e.g. killed between writing the file and its record
    assert "no readable hash record" in verify_content_hash(path)
    hash_record_path(path).write_bytes(b"\xff\xfe")
    assert "no readable hash record" in verify_content_hash(path)
    assert "no readable hash record" in verify_content_hash(tmp_path / "missing.bin")


def _first_weight(model: onnx.ModelProto) -> tuple[str, np.ndarray]:
    for initializer in model.graph.initializer:
        values = numpy_helper.to_array(initializer)
        if values.dtype == np.float32 and values.size > 100:
            return initializer.name, values
    raise AssertionError("no float weight in the export")


@pytest.fixture(scope="module")
def cached_export(tmp_path_factory, network, assets_dir):
    """A checkpoint and its cache folder after one export (copied by each test)."""
    from drtn.model import save_checkpoint

    root = tmp_path_factory.mktemp("cached_export")
    checkpoint = save_checkpoint(root / "drtn_rt.pt", network)
    ensure_onnx(checkpoint, assets=assets_dir, cache_dir=root / "onnx")
    return checkpoint, root / "onnx"


def _copy_cache(cached_export, tmp_path):
    import shutil

    checkpoint, cache = cached_export
    shutil.copytree(cache, tmp_path / "onnx")
    return checkpoint, tmp_path / "onnx"


def test_altered_but_parseable_cached_onnx_is_rebuilt(tmp_path, cached_export, assets_dir, caplog):
    checkpoint, cache = _copy_cache(cached_export, tmp_path)
    path = ensure_onnx(checkpoint, assets=assets_dir, cache_dir=cache)
    assert verify_content_hash(path) is None
    original_sha = sha256_file(path)
    name, weights = _first_weight(onnx.load(str(path)))

    # alter one weight tensor on disk; the file stays a valid DRTN export with the right checkpoint hash
    model = onnx.load(str(path))
    for initializer in model.graph.initializer:
        if initializer.name == name:
            initializer.CopyFrom(numpy_helper.from_array(weights * 1.5 + 0.01, name))
    onnx.save(model, str(path))
    assert inspect_onnx(path).is_drtn_export  # what the old check looked at still passes
    assert sha256_file(path) != original_sha

    with caplog.at_level(logging.WARNING, logger="export.onnx_export"):
        again = ensure_onnx(checkpoint, assets=assets_dir, cache_dir=cache)
    assert again == path
    assert "altered on disk" in caplog.text and "re-exporting" in caplog.text
    rebuilt_name, rebuilt = _first_weight(onnx.load(str(path)))
    assert rebuilt_name == name and np.array_equal(rebuilt, weights)  # the real weights are back
    assert verify_content_hash(path) is None

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="export.onnx_export"):
        ensure_onnx(checkpoint, assets=assets_dir, cache_dir=cache)
    assert "re-exporting" not in caplog.text  # a verified file is reused


@pytest.mark.parametrize("damage", ["garbage", "drop_record"])  # (a truncated file: tests/export/test_backends.py)
def test_damaged_cache_entry_is_rebuilt(tmp_path, cached_export, assets_dir, damage, caplog):
    checkpoint, cache = _copy_cache(cached_export, tmp_path)
    path = ensure_onnx(checkpoint, assets=assets_dir, cache_dir=cache)
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(good)))
    else:
        hash_record_path(path).unlink()
    with caplog.at_level(logging.WARNING, logger="export.onnx_export"):
        ensure_onnx(checkpoint, assets=assets_dir, cache_dir=cache)
    assert "re-exporting" in caplog.text
    assert verify_content_hash(path) is None and inspect_onnx(path).is_drtn_export
