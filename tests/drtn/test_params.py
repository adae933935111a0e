"""drtn.params: the 62-value codec, normalisation and Euler-angle conventions."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from drtn.params import (
    NUM_PARAMS,
    FaceParams,
    ParamStats,
    compose_pose,
    decompose_pose,
    euler_to_rotation,
    pose_angles_degrees,
    rotation_to_euler,
)


@pytest.fixture()
def rng():
    return np.random.default_rng(1234)


@pytest.fixture()
def stats(rng) -> ParamStats:
    return ParamStats(rng.normal(size=NUM_PARAMS).astype(np.float32), rng.uniform(0.5, 2.0, NUM_PARAMS).astype(np.float32))


def random_angles(rng, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pitch, roll in (-pi, pi); yaw in (-90, 90) degrees, where the Euler decomposition is unique."""
    return rng.uniform(-np.pi, np.pi, n), rng.uniform(-np.pi / 2, np.pi / 2, n) * 0.999, rng.uniform(-np.pi, np.pi, n)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_face_params_split_concat_round_trip(backend, rng):
    values = rng.normal(size=(5, NUM_PARAMS))
    params = torch.as_tensor(values) if backend == "torch" else values
    split = FaceParams.from_array(params)
    assert tuple(split.pose.shape) == (5, 3, 4)
    assert tuple(split.identity.shape) == (5, 40)
    assert tuple(split.expression.shape) == (5, 10)
    # 62 = 12 pose (row-major 3x4) + 40 identity + 10 expression
    np.testing.assert_array_equal(np.asarray(split.pose[:, 1, 3]), values[:, 7])
    np.testing.assert_array_equal(np.asarray(split.identity[:, 0]), values[:, 12])
    np.testing.assert_array_equal(np.asarray(split.expression[:, -1]), values[:, 61])
    np.testing.assert_array_equal(np.asarray(split.rotation_scaled), values[:, :12].reshape(5, 3, 4)[:, :, :3])
    np.testing.assert_array_equal(np.asarray(split.translation), values[:, [3, 7, 11]])
    back = split.to_array()
    assert isinstance(back, type(params))
    np.testing.assert_array_equal(np.asarray(back), values)


def test_face_params_single_vector_becomes_batch(rng):
    split = FaceParams.from_array(rng.normal(size=NUM_PARAMS))
    assert split.pose.shape == (1, 3, 4)


@pytest.mark.parametrize("shape", [(61,), (4, 63), (4, 62, 1)])
def test_face_params_bad_shape_names_it(shape):
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        FaceParams.from_array(np.zeros(shape))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_normalize_round_trip(backend, stats, rng):
    values = rng.normal(size=(3, NUM_PARAMS)) * 5
    params = torch.as_tensor(values) if backend == "torch" else values
    normalized = stats.normalize(params)
    np.testing.assert_allclose(np.asarray(normalized), (values - stats.mean) / stats.std, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.denormalize(normalized)), values, rtol=1e-6, atol=1e-6)


def test_normalize_bad_shape(stats):
    with pytest.raises(ValueError, match=r"\(2, 60\)"):
        stats.normalize(np.zeros((2, 60)))
    with pytest.raises(ValueError, match=r"\(60,\)"):
        stats.denormalize(torch.zeros(60))


def test_param_stats_load(tmp_path, stats):
    good, bad = tmp_path / "good.pkl", tmp_path / "bad.pkl"
    good.write_bytes(pickle.dumps({"mean": stats.mean, "std": stats.std}))
    bad.write_bytes(pickle.dumps({"mean": np.zeros(61), "std": np.ones(61)}))
    loaded = ParamStats.load(good)
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    with pytest.raises(ValueError, match=r"\(61,\)"):
        ParamStats.load(bad)


def test_normalize_gradcheck_float64(stats):
    params = torch.randn(2, NUM_PARAMS, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(stats.normalize, (params,))
    assert torch.autograd.gradcheck(stats.denormalize, (params,))
    assert torch.autograd.gradcheck(lambda p: FaceParams.from_array(p).pose.sum(dim=(1, 2)), (params,))


def test_euler_rotation_round_trip(rng):
    pitch, yaw, roll = random_angles(rng, 200)
    rotation = euler_to_rotation(pitch, yaw, roll)
    assert rotation.shape == (200, 3, 3)
    np.testing.assert_allclose(rotation @ rotation.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (200, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-12)
    angles = rotation_to_euler(rotation)
    np.testing.assert_allclose(angles, np.stack([pitch, yaw, roll], axis=1), atol=1e-9)


def test_euler_convention_is_rx_ry_rz():
    """3DDFA: R = Rx(pitch) @ Ry(yaw) @ Rz(roll); each factor checked on its own."""
    a = 0.3
    c, s = np.cos(a), np.sin(a)
    np.testing.assert_allclose(euler_to_rotation(a, 0, 0)[0], [[1, 0, 0], [0, c, s], [0, -s, c]])
    np.testing.assert_allclose(euler_to_rotation(0, a, 0)[0], [[c, 0, -s], [0, 1, 0], [s, 0, c]])
    np.testing.assert_allclose(euler_to_rotation(0, 0, a)[0], [[c, s, 0], [-s, c, 0], [0, 0, 1]])
    product = euler_to_rotation(a, 0, 0)[0] @ euler_to_rotation(0, 0.2, 0)[0] @ euler_to_rotation(0, 0, -0.4)[0]
    np.testing.assert_allclose(euler_to_rotation(a, 0.2, -0.4)[0], product)


def test_decompose_compose_round_trip(rng):
    pitch, yaw, roll = random_angles(rng, 50)
    rotation = euler_to_rotation(pitch, yaw, roll)
    scale = rng.uniform(1e-4, 2e-3, 50)
    translation = rng.normal(60, 20, (50, 3))
    pose = compose_pose(scale, rotation, translation)
    assert pose.shape == (50, 3, 4)
    scale_back, rotation_back, translation_back = decompose_pose(pose)
    np.testing.assert_allclose(scale_back, scale, rtol=1e-10)
    np.testing.assert_allclose(rotation_back, rotation, atol=1e-10)
    np.testing.assert_allclose(translation_back, translation)
    np.testing.assert_allclose(compose_pose(scale_back, rotation_back, translation_back), pose, atol=1e-12)


def test_decompose_pose_projects_to_a_rotation(rng):
    """A predicted (not exactly orthogonal) s*R still yields a proper rotation (det +1)."""
    pose = compose_pose(1.0, euler_to_rotation(0.1, 0.5, -0.2), np.zeros((1, 3)))
    pose[:, :, :3] += rng.normal(scale=0.05, size=(1, 3, 3))
    _, rotation, _ = decompose_pose(pose[0])
    np.testing.assert_allclose(rotation[0] @ rotation[0].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation[0]) == pytest.approx(1.0)


def test_pose_angles_degrees(rng):
    params = np.zeros((1, NUM_PARAMS))
    params[:, :12] = compose_pose(
        4e-4, euler_to_rotation(np.radians(10), np.radians(-35), np.radians(5)), [[60, 60, 0]]
    ).reshape(1, 12)
    np.testing.assert_allclose(pose_angles_degrees(params), [[-35, 10, 5]], atol=1e-9)


def test_bad_pose_shapes_name_the_shape():
    with pytest.raises(ValueError, match=r"\(2, 3, 3\)"):
        decompose_pose(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        rotation_to_euler(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        compose_pose(np.ones(2), np.broadcast_to(np.eye(3), (2, 3, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="batch sizes differ"):
        compose_pose(np.ones(2), np.broadcast_to(np.eye(3), (2, 3, 3)), np.zeros((3, 3)))
