"""TensorRT engine cache and batch profile: pure logic, no TensorRT needed."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from export.cache import atomic_write_bytes
from export.engine_cache import (
    ENGINE_FILE,
    METADATA_FILE,
    BatchProfile,
    EngineCache,
    EngineKey,
    EntryState,
)

SHA = "0123456789abcdef" * 4


def key(**overrides) -> EngineKey:
    values = dict(
        onnx_sha256=SHA, tensorrt_version="10.3.0", compute_capability=(8, 6), precision="fp16", opt_batch=4, max_batch=32
    )
    values.update(overrides)
    return EngineKey(**values)


# ---------------------------------------------------------------------------------------------- profile
def test_profile_defaults_and_shapes():
    profile = BatchProfile.create(32)
    assert (profile.min_batch, profile.opt_batch, profile.max_batch) == (1, 4, 32)
    assert BatchProfile.create(2).opt_batch == 2
    assert profile.shapes(120) == ((1, 3, 120, 120), (4, 3, 120, 120), (32, 3, 120, 120))


@pytest.mark.parametrize(
    "max_batch, opt_batch, message",
    [
        (0, None, r"--max-batch must be >= 1, got 0"),
        (8, 16, r"opt=16 max=8 \(check --max-batch / --opt-batch\)"),
        (8, 0, r"min=1 opt=0"),
        (5000, 4, r"--max-batch 5000 exceeds the exported graph's limit 4096"),
        (8.5, 4, r"max_batch must be an integer"),
        (True, 1, r"max_batch must be an integer"),
    ],
)
def test_profile_validation(max_batch, opt_batch, message):
    with pytest.raises(ValueError, match=message):
        BatchProfile.create(max_batch, opt_batch)


def test_batch_over_profile_is_a_clear_value_error():
    profile = BatchProfile.create(8)
    profile.check_batch(8)
    with pytest.raises(
        ValueError, match=r"batch of 9 crops exceeds the TensorRT engine's profile max 8 \(rebuild with --max-batch 9 or more"
    ):
        profile.check_batch(9)


# ---------------------------------------------------------------------------------------------- key
def test_key_digest_is_stable_and_covers_every_field():
    base = key()
    assert base.digest() == key().digest() and len(base.digest()) == 64
    variants = [
        key(onnx_sha256="f" * 64),
        key(tensorrt_version="10.4.0"),
        key(compute_capability=(9, 0)),
        key(precision="fp32"),
        key(opt_batch=8),
        key(max_batch=64),
    ]
    digests = {v.digest() for v in variants} | {base.digest()}
    names = {v.entry_name() for v in variants} | {base.entry_name()}
    assert len(digests) == len(names) == 7
    assert base.entry_name().startswith("0123456789ab-fp16-b4-32-trt10.3.0-sm86-")


def test_key_round_trips_through_json():
    original = key(compute_capability=[9, 0])
    assert original.compute_capability == (9, 0)
    assert EngineKey.from_dict(json.loads(json.dumps(original.to_dict()))) == original


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(onnx_sha256="xyz"), "onnx_sha256 must be 64 lowercase hex"),
        (dict(precision="int8"), r"precision must be one of \('fp16', 'fp32'\)"),
        (dict(compute_capability=(8,)), r"compute_capability must be \(major, minor\)"),
        (dict(tensorrt_version="10/../x"), "unexpected TensorRT version"),
        (dict(opt_batch=64), "opt=64 max=32"),
    ],
)
def test_key_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        key(**overrides)


def test_key_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown keys \['gpu'\]"):
        EngineKey.from_dict({**key().to_dict(), "gpu": "A100"})


# ---------------------------------------------------------------------------------------------- cache
def test_store_then_load_round_trip(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.check(key()).state is EntryState.MISSING
    assert cache.load(key()) is None
    path = cache.store(key(), b"engine-bytes", build_seconds=12.5, device_name="Fake GPU")
    assert path == cache.entry_dir(key()) / ENGINE_FILE
    assert cache.check(key()).state is EntryState.VALID
    assert cache.load(key()) == b"engine-bytes"
    metadata = json.loads((path.parent / METADATA_FILE).read_text())
    assert metadata["key"] == key().to_dict() and metadata["device_name"] == "Fake GPU"
    assert sorted(p.name for p in path.parent.iterdir()) == [METADATA_FILE, ENGINE_FILE]  # no temp files
    assert cache.load(key(max_batch=64)) is None  # another profile is another entry


def test_refuses_to_store_empty_engine(tmp_path):
    with pytest.raises(ValueError, match="empty engine"):
        EngineCache(tmp_path).store(key(), b"")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda folder: (folder / ENGINE_FILE).write_bytes(b"engine-by"), "truncated"),
        (lambda folder: (folder / ENGINE_FILE).write_bytes(b"ENGINE-BYTES"), "does not match its recorded SHA-256"),
        (lambda folder: (folder / ENGINE_FILE).unlink(), "is missing"),
        (lambda folder: (folder / METADATA_FILE).write_text("{not json"), "is unreadable"),
        (lambda folder: (folder / METADATA_FILE).unlink(), "interrupted write"),
    ],
)
def test_corrupt_entries_are_deleted_and_rebuilt_never_used(tmp_path, caplog, damage, reason):
    cache = EngineCache(tmp_path)
    cache.store(key(), b"engine-bytes")
    folder = cache.entry_dir(key())
    damage(folder)
    check = cache.check(key())
    assert check.state is EntryState.CORRUPT and reason in check.reason
    with caplog.at_level(logging.WARNING, logger="export.engine_cache"):
        assert cache.load(key()) is None
    assert "discarding cached TensorRT engine" in caplog.text and reason in caplog.text
    assert not folder.exists()
    cache.store(key(), b"rebuilt")
    assert cache.load(key()) == b"rebuilt"


def test_entry_holding_another_key_is_stale(tmp_path, caplog):
    """An entry copied by hand from another machine (same folder name, other GPU in its metadata)."""
    cache = EngineCache(tmp_path)
    other = key(compute_capability=(7, 5))
    cache.store(other, b"turing-engine")
    shutil.copytree(cache.entry_dir(other), cache.entry_dir(key()))
    check = cache.check(key())
    assert check.state is EntryState.STALE
    assert "compute_capability (7, 5) (wanted (8, 6))" in check.reason
    with caplog.at_level(logging.WARNING):
        assert cache.load(key()) is None
    assert not cache.entry_dir(key()).exists() and cache.entry_dir(other).exists()


def test_engine_for_another_gpu_or_version_is_reported_and_not_used(tmp_path, caplog):
    cache = EngineCache(tmp_path)
    cache.store(key(tensorrt_version="8.6.1", compute_capability=(7, 5)), b"old")
    cache.store(key(onnx_sha256="f" * 64), b"another model")
    assert cache.entries_for_same_model(key()) == [key(tensorrt_version="8.6.1", compute_capability=(7, 5))]
    with caplog.at_level(logging.INFO, logger="export.engine_cache"):
        assert cache.load(key()) is None
    assert (
        "built for TensorRT 8.6.1 on compute capability 7.5; this machine has TensorRT 10.3.0 on compute capability 8.6"
        in caplog.text
    )


def test_timing_cache_round_trip(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.load_timing_cache("10.3.0", (8, 6)) is None
    path = cache.store_timing_cache("10.3.0", (8, 6), b"timings")
    assert path.name == "trt10.3.0-sm86.cache"
    assert cache.load_timing_cache("10.3.0", (8, 6)) == b"timings"
    assert cache.load_timing_cache("10.3.0", (9, 0)) is None
    cache.discard_timing_cache("10.3.0", (8, 6), "test")
    assert cache.load_timing_cache("10.3.0", (8, 6)) is None


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    import os

    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old")

    def failing_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_default_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DRTN_CACHE_DIR", str(tmp_path / "c"))
    assert EngineCache().root == tmp_path / "c" / "tensorrt"
    monkeypatch.delenv("DRTN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert EngineCache().root == tmp_path / "xdg" / "drtn" / "tensorrt"
