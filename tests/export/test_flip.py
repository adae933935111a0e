"""Mirror-averaged inference over real backends (export.backends.flip) and in the backend benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from drtn.mirror import FLIP_68, MirrorMap, flip_crops, flip_landmarks
from export.backends.flip import FlipAveragedBackend
from export.bench import ModelSource, run_backend_bench


@pytest.fixture(scope="module")
def mirror(morphable) -> MirrorMap:
    return MirrorMap.from_morphable(morphable)


@pytest.fixture(scope="module")
def teacher(assets_dir):
    if not (assets_dir / "teacher" / "3ddfa_v2_mb05_120x120.onnx").is_file():
        pytest.skip("teacher model missing from the asset folder")
    from export.backends import create_backend

    with create_backend("teacher", assets=str(assets_dir), threads=1) as backend:
        yield backend


def _landmark_px(morphable, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm((morphable.landmarks_model(a) - morphable.landmarks_model(b))[:, :2], axis=1)


def test_mirror_of_real_predictions_flips_their_landmarks(teacher, helen_crops, morphable, mirror):
    """On the peer's parameter vectors of real HELEN test faces: landmarks of mirror(p) == the flipped, re-indexed
    landmarks of p within a fraction of a pixel, and mirror(mirror(p)) == p."""
    params = teacher.infer(helen_crops).params.astype(np.float64)
    mirrored = mirror.mirror(params)
    expected = flip_landmarks(morphable.landmarks_model(params), 120)[..., FLIP_68]
    error = np.linalg.norm((morphable.landmarks_model(mirrored) - expected)[:, :2], axis=1)
    assert error.mean() < 0.3 and error.max() < 3.0  # pixels of the 120 crop
    assert _landmark_px(morphable, mirror.mirror(mirrored), params).mean() < 0.1
    # the peer itself is nearly mirror-consistent: its prediction on the flipped crop is close to mirror(p)
    on_flipped = teacher.infer(flip_crops(helen_crops)).params.astype(np.float64)
    assert _landmark_px(morphable, on_flipped, mirrored).mean() < 3.0


def test_flip_averaged_backend_runs_2n_crops_once_and_averages(teacher, helen_crops, morphable, mirror):
    calls = []

    class Recording:
        name, crop_size, max_batch = "recording", 120, 8

        def infer(self, crops):
            calls.append(crops.copy())
            return teacher.infer(crops)

        def close(self):
            calls.append("closed")

    with FlipAveragedBackend(Recording(), mirror) as backend:
        assert backend.name == "recording+flip" and backend.max_batch == 4 and backend.crop_size == 120
        result = backend.infer(helen_crops[:3])
        assert backend.infer(helen_crops[:0]).params.shape == (0, 62)
    assert calls[-1] == "closed" and len(calls[0]) == 6
    np.testing.assert_array_equal(calls[0][3:], helen_crops[:3, :, ::-1])
    assert result.params.shape == (3, 62) and result.params.dtype == np.float32
    plain = teacher.infer(helen_crops[:3]).params.astype(np.float64)
    flipped = teacher.infer(flip_crops(helen_crops[:3])).params.astype(np.float64)
    np.testing.assert_allclose(result.params, mirror.average(plain, flipped), rtol=1e-5, atol=1e-3)
    # the average lies between the two predictions
    assert _landmark_px(morphable, result.params, plain).mean() < _landmark_px(morphable, mirror.mirror(flipped), plain).mean()
    with pytest.raises(ValueError, match="expected shape"):
        FlipAveragedBackend(teacher, mirror, owns_inner=False).infer(helen_crops[:, :60])
    with pytest.raises(ValueError, match="mirror map for 64 px"):
        FlipAveragedBackend(teacher, MirrorMap.from_morphable(morphable, 64))


def test_bench_measures_flip_rows_beside_the_plain_ones(exported, assets_dir):
    _, path = exported
    report = run_backend_bench(
        ["onnxruntime"],
        [1],
        [1],
        source=ModelSource(onnx_path=path, assets=assets_dir),
        min_seconds=0.0,
        min_samples=2,
        warmup=1,
        flip_average=True,
    )
    assert [c.backend for c in report.cells] == ["teacher", "onnxruntime", "onnxruntime+flip"]
    assert "| onnxruntime+flip | 1 | 1 |" in report.markdown()


def test_export_option_bakes_the_average_into_the_graph(tmp_path, network, stats, helen_crops, morphable, mirror, exported):
    """``export_onnx(flip_average=MirrorMap)``: same contract (N in, N out), one session call, output equal to the
    plain export averaged with the mirror of its prediction on the flipped crops."""
    import onnxruntime as ort

    from export.contract import DENORMALIZE_NODE_PREFIX, inspect_onnx, load_onnx_model
    from export.onnx_export import export_onnx

    path = tmp_path / "flip.onnx"
    report = export_onnx(network, path, stats=stats, check_crops=helen_crops, morphable=morphable, flip_average=mirror)
    assert report.metadata["flip_average"] == "linear" and set(report.checks) == {"random", "real"}
    info = inspect_onnx(path)
    assert info.flip_average and info.fixed_batch is None and not inspect_onnx(exported[1]).flip_average
    flip_nodes = [n for n in load_onnx_model(path).graph.node if n.name.startswith(DENORMALIZE_NODE_PREFIX + "flip/")]
    assert {n.op_type for n in flip_nodes} >= {"Slice", "Concat", "MatMul"}  # kept in FP32 by export.fp16

    from export.backends.base import preprocess_crops

    images = preprocess_crops(helen_crops[:5], 120)
    flipped = preprocess_crops(flip_crops(helen_crops[:5]), 120)
    plain = ort.InferenceSession(str(exported[1]), providers=["CPUExecutionProvider"])
    averaged = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = averaged.run(["params"], {"image": images})[0]
    assert got.shape == (5, 62)
    expected = mirror.average(plain.run(["params"], {"image": images})[0], plain.run(["params"], {"image": flipped})[0])
    np.testing.assert_allclose(_landmark_px(morphable, got, expected), 0.0, atol=1e-3)
    np.testing.assert_allclose(got[:, :12], expected[:, :12], rtol=1e-4, atol=1e-5)
