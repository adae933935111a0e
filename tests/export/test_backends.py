"""Backends on the same inputs: torch vs ONNX Runtime parity, the teacher, the default-model cache, bad models."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from export.backends import BACKEND_KINDS, InferenceResult, create_backend, preprocess_crops
from export.backends.onnxruntime_backend import OnnxRuntimeBackend, TeacherBackend, make_batch_dynamic
from export.backends.torch_backend import TorchBackend
from export.compare import FP32_TOLERANCE, compare_backends
from export.onnx_export import ensure_onnx, inspect_onnx, resolve_checkpoint

from .test_onnx_export import tiny_onnx

DRTN_META = {"producer": "drtn.export", "params": "denormalized"}


# ---------------------------------------------------------------------------------------------- parity
def test_torch_and_onnxruntime_agree_on_real_crops(exported, network, stats, helen_crops, morphable):
    _, path = exported
    with TorchBackend(network, stats, threads=2) as torch_backend, OnnxRuntimeBackend(path, threads=2) as ort_backend:
        assert torch_backend.crop_size == ort_backend.crop_size == 120
        report = compare_backends(torch_backend, ort_backend, helen_crops, stats, morphable)
        assert FP32_TOLERANCE.violations(report) == [], report.summary()
        assert report.landmark_px_max < 0.01
        # same result type from both, also for an empty batch
        for backend in (torch_backend, ort_backend):
            empty = backend.infer(np.zeros((0, 120, 120, 3), dtype=np.uint8))
            assert isinstance(empty, InferenceResult) and empty.params.shape == (0, 62)


@pytest.mark.parametrize("threads", [1, 2])
def test_onnxruntime_threads_do_not_change_results(exported, helen_crops, threads):
    _, path = exported
    reference = OnnxRuntimeBackend(path, threads=1).infer(helen_crops[:4]).params
    result = OnnxRuntimeBackend(path, threads=threads).infer(helen_crops[:4])
    np.testing.assert_allclose(result.params, reference, rtol=1e-5, atol=1e-6 * np.abs(reference).max())
    assert result.inference_ms > 0


def test_threads_must_be_positive(exported):
    _, path = exported
    with pytest.raises(ValueError, match="threads: expected >= 1, got 0"):
        OnnxRuntimeBackend(path, threads=0)


# ---------------------------------------------------------------------------------------------- bad models for ORT
def test_onnxruntime_refuses_a_model_without_drtn_metadata(tmp_path):
    path = tiny_onnx(tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match=r"foreign.onnx: not a DRTN export .*main.py export.*'teacher' backend"):
        OnnxRuntimeBackend(path)


def test_onnxruntime_refuses_other_pixel_normalisation(tmp_path):
    path = tiny_onnx(tmp_path / "rgb.onnx", metadata={**DRTN_META, "channel_order": "RGB"})
    with pytest.raises(ValueError, match="rgb.onnx: metadata channel_order='RGB', but this product feeds channel_order='BGR'"):
        OnnxRuntimeBackend(path)


def test_onnxruntime_wrong_shapes_name_file(tmp_path):
    path = tiny_onnx(tmp_path / "ten.onnx", out_features=10, metadata=DRTN_META)
    with pytest.raises(ValueError, match=r"ten.onnx: output 'params' is \(N, 10\)"):
        create_backend("onnxruntime", path)


def test_fixed_batch_model_runs_in_padded_chunks(tmp_path):
    path = tiny_onnx(tmp_path / "fixed2.onnx", in_shape=(2, 3, 8, 8), metadata=DRTN_META)
    backend = OnnxRuntimeBackend(path)
    crops = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    params = backend.infer(crops).params
    # the tiny graph sums the three channel means into every output
    expected = preprocess_crops(crops, 8).mean(axis=(2, 3)).sum(axis=1)
    np.testing.assert_allclose(params, np.repeat(expected[:, None], 62, axis=1), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- teacher
def test_teacher_batch_edit_matches_single_crop_runs(assets_dir, helen_crops):
    teacher = TeacherBackend(assets=assets_dir, threads=2)
    assert teacher.info.fixed_batch is None  # made batch-dynamic in memory
    original = OnnxRuntimeBackend(
        onnx.load(str(assets_dir / "teacher/3ddfa_v2_mb05_120x120.onnx")), denormalize=teacher._stats, name="loop"
    )
    assert original.info.fixed_batch == 1
    np.testing.assert_allclose(teacher.infer(helen_crops).params, original.infer(helen_crops).params, rtol=1e-4, atol=1e-3)


def test_teacher_lands_on_real_faces(assets_dir, shared_dir, morphable):
    """Teacher landmarks vs the 300W annotation: proves BGR order, normalisation and de-normalisation."""
    import cv2

    from drtn.crop import crop_image, model_to_image, roi_box_from_landmarks
    from export.samples import read_pts

    teacher = create_backend("teacher", assets=assets_dir)
    errors = []
    for pts in sorted((shared_dir / "data/300w/helen_testset").glob("*.pts"))[:6]:
        truth = read_pts(pts) - 1.0  # .pts is 1-based
        image = cv2.imread(str(pts.with_suffix(".jpg")))
        box = roi_box_from_landmarks(truth)
        params = teacher.infer(crop_image(image, box)[None]).params
        landmarks = model_to_image(morphable.landmarks_model(params)[0], box)[:2].T
        size = np.sqrt(np.prod(truth.max(axis=0) - truth.min(axis=0)))
        errors.append(np.linalg.norm(landmarks - truth, axis=1).mean() / size)
    assert np.mean(errors) < 0.05 and max(errors) < 0.07, errors  # measured ~0.028 (NME by box size)


def test_make_batch_dynamic_refuses_computed_reshape(tmp_path):
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Shape", ["image"], ["shape"]),
        helper.make_node("Reshape", ["image", "shape"], ["params"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 62])],
        [helper.make_tensor_value_info("params", TensorProto.FLOAT, [1, 62])],
    )
    assert make_batch_dynamic(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])) is None


# ---------------------------------------------------------------------------------------------- factory + cache
def test_create_backend_rejects_unknown_kind_and_wrong_file_type(tmp_path):
    with pytest.raises(
        ValueError, match=r"unknown backend 'tensorflow'; expected one of onnxruntime, torch, tensorrt, teacher"
    ):
        create_backend("tensorflow")
    with pytest.raises(ValueError, match=r"the torch backend needs a checkpoint \(.pt\), got .*model.onnx"):
        create_backend("torch", tmp_path / "model.onnx")
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing.pt"):
        create_backend("onnxruntime", tmp_path / "missing.pt", cache_dir=tmp_path)
    assert BACKEND_KINDS == ("onnxruntime", "torch", "tensorrt", "teacher")


def test_missing_default_weights_say_what_to_pass(tmp_path, monkeypatch):
    import drtn.model

    monkeypatch.setattr(drtn.model, "default_weights_path", lambda: tmp_path / "drtn_rt.pt")
    with pytest.raises(
        FileNotFoundError,
        match=r"no trained default weights at .*drtn_rt.pt; pass a checkpoint .*export: --checkpoint PATH, bench: --model PATH",
    ):
        resolve_checkpoint(None)


def test_checkpoint_is_exported_once_to_the_cache_and_reused(
    tmp_path, network, assets_dir, helen_crops, stats, monkeypatch, caplog
):
    import export.onnx_export as onnx_export
    from drtn.model import save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "drtn_rt.pt", network)
    cache = tmp_path / "cache"
    path = ensure_onnx(checkpoint, assets=assets_dir, cache_dir=cache / "onnx")
    assert path.parent == cache / "onnx" and path.is_file()
    info = inspect_onnx(path)
    from export.cache import sha256_file

    assert info.metadata["source_checkpoint_sha256"] == sha256_file(checkpoint)

    # reuse: no second export, through the factory as well
    calls = []
    monkeypatch.setattr(onnx_export, "export_checkpoint", lambda *a, **k: calls.append(a))
    ort_backend = create_backend("onnxruntime", checkpoint, assets=assets_dir, cache_dir=cache)
    assert calls == [] and ort_backend.model_path == path
    torch_backend = create_backend("torch", checkpoint, assets=assets_dir)
    report = compare_backends(torch_backend, ort_backend, helen_crops, stats)
    assert FP32_TOLERANCE.violations(report) == []

    # a truncated cache entry is detected and re-exported, never used
    monkeypatch.undo()
    path.write_bytes(path.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="export.onnx_export"):
        again = ensure_onnx(checkpoint, assets=assets_dir, cache_dir=cache / "onnx")
    assert again == path and "re-exporting" in caplog.text
    assert inspect_onnx(path).is_drtn_export
    assert sorted(p.name for p in (cache / "onnx").iterdir()) == [path.name, path.name + ".sha256"]  # no temp files left
