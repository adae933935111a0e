"""drtn.morphable on the real BFM assets: conventions checked against a 300W-LP label, mesh layouts, torch parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drtn.morphable import MorphableModel, interpolate_basis, project
from drtn.morphable_torch import TorchMorphable
from drtn.params import NUM_PARAMS, compose_pose, euler_to_rotation

SAMPLE = "samples/300wlp/IBUG_image_008_1_0"
INNER = slice(17, 68)  # 0..16 are the 2D-visible jaw contour, not fixed model vertices


def random_params(morphable: MorphableModel, n: int, seed: int = 0) -> np.ndarray:
    """(n, 62) realistic parameters: a proper s*R pose, identity/expression drawn from the statistics."""
    rng = np.random.default_rng(seed)
    params = morphable.stats.mean + morphable.stats.std * rng.normal(size=(n, NUM_PARAMS))
    rotation = euler_to_rotation(rng.normal(0, 0.2, n), rng.uniform(-1.2, 1.2, n), rng.normal(0, 0.2, n))
    translation = np.stack([rng.normal(60, 5, n), rng.normal(60, 5, n), rng.normal(-60, 10, n)], axis=1)
    params[:, :12] = compose_pose(rng.uniform(3.5e-4, 5e-4, n), rotation, translation).reshape(n, 12)
    return params


# ---------------------------------------------------------------------------- 300W-LP label
@pytest.fixture(scope="module")
def sample_300wlp(shared_dir):
    loadmat = pytest.importorskip("scipy.io").loadmat
    cv2 = pytest.importorskip("cv2")
    label = loadmat(str(shared_dir / f"{SAMPLE}.mat"))
    image = cv2.imread(str(shared_dir / f"{SAMPLE}.jpg"))
    assert image is not None
    return label, image.shape[0]


def landmarks_300wlp(morphable, label, height, transpose_rotation=False, flip_y=True) -> np.ndarray:
    """(2, 68) image landmarks from Pose_Para = [pitch, yaw, roll, tx, ty, tz, scale] and Shape/Exp_Para."""
    pitch, yaw, roll, tx, ty, tz, scale = label["Pose_Para"].ravel().astype(np.float64)
    rotation = euler_to_rotation(pitch, yaw, roll)
    if transpose_rotation:
        rotation = rotation.transpose(0, 2, 1)
    params = np.zeros((1, NUM_PARAMS))
    params[0, :12] = compose_pose(scale, rotation, [[tx, ty, tz]]).reshape(12)
    params[0, 12:52] = label["Shape_Para"].ravel()[:40]  # the 3DDFA truncation: 40 of 199 identity, 10 of 29 exp.
    params[0, 52:] = label["Exp_Para"].ravel()[:10]
    points = morphable.landmarks_model(params)[0]
    return np.stack([points[0], height - points[1] if flip_y else points[1]])


def inner_nme(landmarks: np.ndarray, label) -> float:
    truth = label["pt2d"]
    width, height = np.ptp(truth[0]), np.ptp(truth[1])
    return float(np.linalg.norm(landmarks[:, INNER] - truth[:, INNER], axis=0).mean() / np.sqrt(width * height))


def test_300wlp_landmarks_match_label(morphable, sample_300wlp):
    """Measured: mean inner error 4.2 px = 2.40 % of sqrt(box area), mean offset (-1.4, -1.2) px."""
    label, height = sample_300wlp
    assert height == 450
    landmarks = landmarks_300wlp(morphable, label, height)
    assert inner_nme(landmarks, label) < 0.026
    offset = (landmarks[:, INNER] - label["pt2d"][:, INNER]).mean(axis=1)
    assert np.all(np.abs(offset) < 2.0), offset


@pytest.mark.parametrize("wrong", [dict(transpose_rotation=True), dict(flip_y=False)])
def test_300wlp_wrong_convention_fails(morphable, sample_300wlp, wrong):
    label, height = sample_300wlp
    assert inner_nme(landmarks_300wlp(morphable, label, height, **wrong), label) > 0.2


# ---------------------------------------------------------------------------- sparse vs dense
def test_landmarks_lie_on_dense_surface(morphable):
    """Every sparse landmark is within ~a grid spacing (<3.5 % of the face width) of the dense mesh."""
    on_face = morphable.dense_on_face
    for row in random_params(morphable, 4):
        identity, expression = row[None, 12:52], row[None, 52:]
        landmarks = morphable.sparse.vertices(identity, expression)[0].T
        dense = morphable.dense.vertices(identity, expression)[0].T[on_face]
        distance = np.linalg.norm(landmarks[:, None] - dense[None], axis=2).min(axis=1)
        width = np.ptp(landmarks[:, 0])
        assert distance.max() < 0.035 * width


def test_sparse_and_dense_bases_agree(morphable):
    """Identity deformations of the two models agree at the landmarks; a mismatched draw does not."""
    on_face = np.flatnonzero(morphable.dense_on_face)
    sparse_mean = morphable.sparse.mean.reshape(-1, 3)
    nearest = on_face[
        np.linalg.norm(sparse_mean[:, None] - morphable.dense.mean.reshape(-1, 3)[on_face][None], axis=2).argmin(axis=1)
    ]
    no_expression = np.zeros((1, 10))
    draws = random_params(morphable, 5, seed=3)[:, 12:52]

    def offsets(basis, identity):
        return (basis.vertices(identity[None], no_expression) - basis.vertices(0 * identity[None], no_expression))[0]

    for identity, other in zip(draws[:-1], draws[1:]):
        sparse = offsets(morphable.sparse, identity)
        relative = np.linalg.norm(offsets(morphable.dense, identity)[:, nearest] - sparse) / np.linalg.norm(sparse)
        mismatched = np.linalg.norm(offsets(morphable.dense, other)[:, nearest] - sparse) / np.linalg.norm(sparse)
        assert relative < 0.2 < 0.8 < mismatched


def test_dense_expression_basis_is_repaired(morphable):
    """Model_PAF.pkl ships w_exp_filter == w_filter[:, :10]; the loaded basis is the interpolated sparse one."""
    dense = morphable.dense
    assert not np.allclose(dense.expression, dense.identity[:, :10])
    rms = lambda basis: np.sqrt((basis.reshape(-1, 3, basis.shape[1]) ** 2).sum(axis=1).mean(axis=0))  # noqa: E731
    sparse_rms = rms(morphable.sparse.expression)
    dense_rms = rms(dense.expression[np.repeat(morphable.dense_on_face, 3)])
    assert np.all((dense_rms > 0.3 * sparse_rms) & (dense_rms < 3 * sparse_rms))


def test_interpolate_basis_is_exact_at_sources_and_affine_exact():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(30, 3))
    basis = rng.normal(size=(90, 4))
    np.testing.assert_allclose(interpolate_basis(source.ravel(), basis, source.ravel()), basis, atol=1e-8)
    # an affine displacement field is reproduced everywhere
    matrix, shift = rng.normal(size=(3, 3)), rng.normal(size=3)
    field = lambda points: (points @ matrix.T + shift).reshape(-1, 1)  # noqa: E731
    target = rng.normal(size=(50, 3))
    np.testing.assert_allclose(interpolate_basis(source.ravel(), field(source), target.ravel()), field(target), atol=1e-8)
    with pytest.raises(ValueError, match=r"\(89, 4\)"):
        interpolate_basis(source.ravel(), basis[:89], target.ravel())


# ---------------------------------------------------------------------------- dense mesh layout
def test_dense_grid_layout(morphable):
    grid = morphable.dense.mean.reshape(64, 64, 3)  # point k = 64 * i + j
    assert morphable.dense.num_points == 4096
    assert np.all(np.diff(grid[16:48, 32, 0]) > 0)  # i walks +x across the face
    assert np.all(np.diff(grid[32, 8:56, 1]) < 0)  # j walks -y (down the face)
    on_face = morphable.dense_on_face
    assert on_face.shape == (4096,) and 3000 < on_face.sum() < 4096
    assert on_face.reshape(64, 64)[32, 32] and not on_face.reshape(64, 64)[0, 0]


def test_dense_triangles(morphable):
    triangles = morphable.dense_triangles
    assert triangles.ndim == 2 and triangles.shape[1] == 3 and triangles.dtype == np.int64
    assert triangles.min() >= 0 and triangles.max() < 4096
    assert morphable.dense_on_face[triangles].all()  # only over on-face points
    i, j = np.divmod(triangles, 64)
    assert np.all(np.ptp(i, axis=1) == 1) and np.all(np.ptp(j, axis=1) == 1)  # each inside one grid cell
    # consistent winding: every directed edge occurs once (neighbours traverse a shared edge oppositely)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    assert len(np.unique(edges, axis=0)) == len(edges)
    # counter-clockwise seen from +z: normals of the mean face point to the viewer
    points = morphable.dense.mean.reshape(-1, 3)
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    normals = np.cross(b - a, c - a)
    assert normals[:, 2].sum() / np.linalg.norm(normals, axis=1).sum() > 0.4
    frontal = np.abs(a[:, 0]) < 40000  # away from the cheeks, where the surface turns sideways
    assert np.all(normals[frontal, 2] > 0)
    area = np.linalg.norm(normals, axis=1)
    assert area[normals[:, 2] > 0].sum() > 0.95 * area.sum()


def test_dense_triangles_border_has_no_staircase(morphable):
    # every grid cell with >= 3 on-face corners is covered: full cells by two triangles, three-corner cells by the
    # triangle of those corners (the border runs along cell diagonals, issue 13's jagged forehead edge)
    on_face = morphable.dense_on_face.reshape(64, 64)
    corners = on_face[:-1, :-1].astype(int) + on_face[1:, :-1] + on_face[:-1, 1:] + on_face[1:, 1:]
    i, j = np.divmod(morphable.dense_triangles, 64)
    cells = (i.min(axis=1), j.min(axis=1))  # the cell (i, j) each triangle lies in
    per_cell = np.zeros((63, 63), int)
    np.add.at(per_cell, cells, 1)
    assert (corners == 3).sum() > 0
    np.testing.assert_array_equal(per_cell, np.select([corners == 4, corners == 3], [2, 1], 0))


# ---------------------------------------------------------------------------- display mesh
def test_display_mesh(morphable):
    assert morphable.display_mean.shape == (38365, 3)
    assert morphable.display_triangles.shape == (76073, 3)
    assert morphable.display_triangles.max() == 38364


def test_display_vertices_follow_dense_deformation(morphable):
    params = np.zeros((1, NUM_PARAMS))
    params[0, :12] = compose_pose(1.0, np.eye(3), np.zeros((1, 3))).reshape(12)  # [I | 0]: model space itself
    np.testing.assert_allclose(morphable.display_vertices(params)[0].T, morphable.display_mean, atol=1e-6)
    deformed = params.copy()
    deformed[0, 12:] = random_params(morphable, 1, seed=5)[0, 12:]
    moved = morphable.display_vertices(deformed)[0].T - morphable.display_mean
    dense_offsets = (
        morphable.dense.vertices(deformed[:, 12:52], deformed[:, 52:])
        - morphable.dense.vertices(params[:, 12:52], params[:, 52:])
    )[0].T
    # display vertices sitting on an on-face dense point move with it
    on_face = np.flatnonzero(morphable.dense_on_face)
    grid = torch.as_tensor(morphable.dense.mean.reshape(-1, 3)[on_face])
    distance, index = torch.cdist(torch.as_tensor(morphable.display_mean, dtype=grid.dtype), grid).min(dim=1)
    close = distance.numpy() < 300
    assert close.sum() > 200
    expected = dense_offsets[on_face[index.numpy()[close]]]
    relative = np.linalg.norm(moved[close] - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert np.median(relative) < 0.05
    # and the pose applies on top
    posed = deformed.copy()
    posed[0, :12] = random_params(morphable, 1, seed=6)[0, :12]
    pose = posed[0, :12].reshape(1, 3, 4)
    np.testing.assert_allclose(
        morphable.display_vertices(posed), project(pose, morphable.display_vertices(deformed)), rtol=1e-9, atol=1e-6
    )


# ---------------------------------------------------------------------------- torch
def test_torch_matches_numpy(morphable):
    params = random_params(morphable, 3, seed=1)
    module = TorchMorphable(morphable)
    tensor = torch.as_tensor(params, dtype=torch.float32)
    with torch.no_grad():
        landmarks, dense = module.landmarks(tensor).numpy(), module.dense_points(tensor).numpy()
    assert landmarks.shape == (3, 3, 68) and dense.shape == (3, 3, 4096)
    np.testing.assert_allclose(landmarks, morphable.landmarks_model(params), atol=2e-2)  # float32, ~100 px values
    np.testing.assert_allclose(dense, morphable.dense_model(params), atol=2e-2)


def test_torch_normalisation_matches_stats(morphable):
    module = TorchMorphable(morphable)
    normalized = torch.randn(2, NUM_PARAMS)
    np.testing.assert_allclose(
        module.denormalize(normalized).numpy(), morphable.stats.denormalize(normalized.numpy()), rtol=1e-5
    )


def test_batched_torch_reconstruction_has_gradients(morphable):
    module = TorchMorphable(morphable)
    params = torch.as_tensor(random_params(morphable, 4, seed=2), dtype=torch.float32).requires_grad_(True)
    (module.landmarks(params).square().mean() + module.dense_points(params).square().mean()).backward()
    assert params.grad is not None and torch.isfinite(params.grad).all()
    assert (params.grad.abs().sum(dim=1) > 0).all()
    assert (params.grad[:, :12].abs().sum(dim=1) > 0).all() and (params.grad[:, 12:].abs().sum(dim=1) > 0).all()


def test_torch_reconstruction_gradcheck_float64(morphable):
    module = TorchMorphable(morphable).double()
    params = torch.as_tensor(random_params(morphable, 2, seed=4)).requires_grad_(True)
    # columns scaled to O(1) so finite differences see every parameter group
    scale = torch.as_tensor(morphable.stats.std, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: module.landmarks(x * scale), (params / scale,), eps=1e-4, atol=1e-3, fast_mode=True
    )
