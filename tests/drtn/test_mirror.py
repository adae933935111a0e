"""The mirror of 62-parameter vectors for flipped crops (drtn.mirror): exact pose, fitted shape maps, averaging."""

from __future__ import annotations

import numpy as np
import pytest

from drtn import crop
from drtn.mirror import FLIP_68, MirrorMap, flip_averaged, flip_crops, flip_landmarks
from drtn.morphable import project
from drtn.params import euler_to_rotation

S = 120


@pytest.fixture(scope="module")
def mirror(morphable) -> MirrorMap:
    return MirrorMap.from_morphable(morphable, S)


def _params(morphable, count: int, seed: int = 0, shape_sigma: float = 1.0) -> np.ndarray:
    """Plausible de-normalised parameters: poses within +-60 deg, shapes drawn from the parameter statistics."""
    rng = np.random.default_rng(seed)
    rotation = euler_to_rotation(*rng.uniform(-1.0, 1.0, size=(3, count)))
    scale = rng.uniform(5e-4, 9e-4, size=(count, 1, 1))
    translation = np.stack([rng.uniform(45, 75, count), rng.uniform(45, 75, count), rng.uniform(-10, 10, count)], 1)
    pose = np.concatenate([scale * rotation, translation[:, :, None]], axis=2).reshape(count, 12)
    stats = morphable.stats
    shape = stats.mean[12:] + shape_sigma * stats.std[12:] * rng.standard_normal((count, 50))
    return np.concatenate([pose, shape], axis=1)


def _mirror_points(points: np.ndarray, center_x: float, permutation: np.ndarray) -> np.ndarray:
    """(N, 3, K) model-space points -> reflected about x = center_x and re-indexed."""
    out = points[..., permutation].copy()
    out[:, 0] = 2 * center_x - out[:, 0]
    return out


def test_flip_68_is_the_mirror_correspondence_of_the_mean_landmarks(morphable, mirror):
    points = morphable.sparse.mean.reshape(-1, 3)
    assert np.array_equal(FLIP_68[FLIP_68], np.arange(68))  # an involution
    reflected = points * np.array([-1.0, 1.0, 1.0])
    nearest = np.linalg.norm(reflected[:, None] - points[None], axis=2).argmin(axis=1)
    assert np.array_equal(nearest, FLIP_68)
    # the BFM's symmetry plane is not x = 0: about -350 units (~0.2 % of the face width)
    assert -600 < mirror.center_x < -100


def test_pose_part_is_exact_for_any_points(morphable, mirror):
    """flip(project(pose, V)) re-indexed == project(pose', mirror(V)) exactly, for arbitrary vertex sets."""
    params = _params(morphable, 16)
    pose = params[:, :12].reshape(-1, 3, 4)
    mirrored_pose = mirror.mirror(params)[:, :12].reshape(-1, 3, 4)
    vertices = np.random.default_rng(1).normal(0, 5e4, size=(16, 3, 68))
    expected = flip_landmarks(project(pose, vertices), S)[..., FLIP_68]
    got = project(mirrored_pose, _mirror_points(vertices, mirror.center_x, FLIP_68))
    np.testing.assert_allclose(got, expected, atol=1e-8)
    # still a scaled rotation with the same scale
    rotation = mirrored_pose[:, :, :3] / np.cbrt(np.linalg.det(mirrored_pose[:, :, :3]))[:, None, None]
    np.testing.assert_allclose(rotation @ rotation.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (16, 3, 3)), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(mirrored_pose[:, :, :3]), np.linalg.det(pose[:, :, :3]), rtol=1e-12)


def test_flipping_a_real_crop_is_u_to_size_plus_one_minus_u(shared_dir):
    """The crop convention of drtn.crop: the flipped crop is the crop of the flipped image at the mirrored box,
    and its model-frame points are u -> S + 1 - u."""
    import cv2

    folder = shared_dir / "data" / "300w" / "helen_testset"
    image_path = next(iter(sorted(folder.glob("*.jpg"))), None)
    if image_path is None:
        pytest.skip(f"no HELEN test image in {folder}")
    from export.samples import read_pts

    image = cv2.imread(str(image_path))
    landmarks = read_pts(image_path.with_suffix(".pts")) - 1.0
    box = crop.roi_box_from_landmarks(landmarks)
    width = image.shape[1]
    flipped_image = np.ascontiguousarray(image[:, ::-1])
    flipped_box = np.array([width - box[2], box[1], width - box[0], box[3]])  # pixel edges mirror about W/2
    plain = crop.crop_image(image, box)
    flipped = crop.crop_image(flipped_image, flipped_box)
    assert np.abs(flipped.astype(int) - flip_crops(plain[None])[0].astype(int)).max() <= 2  # fixed-point warp
    flipped_landmarks = landmarks.copy()
    flipped_landmarks[:, 0] = width - 1 - flipped_landmarks[:, 0]
    model = crop.image_to_model(landmarks.T, box)
    model_flipped = crop.image_to_model(flipped_landmarks.T, flipped_box)
    np.testing.assert_allclose(model_flipped[0], S + 1 - model[0], atol=1e-9)
    np.testing.assert_allclose(model_flipped[1], model[1], atol=1e-9)


def test_mirror_moves_the_landmarks_to_their_flipped_partners(morphable, mirror):
    """Shapes drawn at 1 std of every coefficient (harder than real faces; real predictions: tests/export/test_flip.py):
    landmarks of mirror(p) == flipped, re-indexed landmarks of p within a small tolerance (the 40 + 10 bases are not
    closed under mirroring: a fitted, not exact, map)."""
    params = _params(morphable, 64, seed=2)
    expected = flip_landmarks(morphable.landmarks_model(params), S)[..., FLIP_68]
    error = np.linalg.norm((morphable.landmarks_model(mirror.mirror(params)) - expected)[:, :2], axis=1)
    assert error.mean() < 0.4 and np.median(error) < 0.3  # pixels of the 120 crop
    # without the shape maps (coefficients copied) the error is several times larger
    naive = mirror.mirror(params)
    naive[:, 12:] = params[:, 12:]
    naive_error = np.linalg.norm((morphable.landmarks_model(naive) - expected)[:, :2], axis=1)
    assert naive_error.mean() > 2.5 * error.mean()


def test_mirror_twice_is_the_identity(morphable, mirror):
    params = _params(morphable, 32, seed=3)
    twice = mirror.mirror(mirror.mirror(params))
    np.testing.assert_allclose(twice[:, :12], params[:, :12], rtol=0, atol=1e-9)  # the pose part is exact
    error = np.linalg.norm((morphable.landmarks_model(twice) - morphable.landmarks_model(params))[:, :2], axis=1)
    assert error.mean() < 0.15 and error.max() < 1.0


def test_affine_form_matches_and_dense_mesh_follows(morphable, mirror):
    params = _params(morphable, 8, seed=4)
    matrix, offset = mirror.affine()
    assert matrix.shape == (62, 62) and offset.shape == (62,)
    np.testing.assert_allclose(params @ matrix.T + offset, mirror.mirror(params))
    grid = 64
    k = np.arange(grid * grid)
    dense_flip = (grid - 1 - k // grid) * grid + k % grid
    on_face = morphable.dense_on_face
    expected = flip_landmarks(morphable.dense_model(params), S)[..., dense_flip]
    error = np.linalg.norm((morphable.dense_model(mirror.mirror(params)) - expected)[:, :2], axis=1)[:, on_face]
    assert error.mean() < 0.4


@pytest.mark.parametrize("pose_mode", ["linear", "rotation"])
def test_average_of_consistent_predictions_is_the_prediction(morphable, mirror, pose_mode):
    params = _params(morphable, 8, seed=5)
    averaged = mirror.average(params, mirror.mirror(params), pose_mode)
    error = np.linalg.norm((morphable.landmarks_model(averaged) - morphable.landmarks_model(params))[:, :2], axis=1)
    assert error.mean() < 0.08  # half of mirror(mirror(p)) - p


def test_rotation_average_keeps_the_scale_linear_shrinks_it(morphable, mirror):
    base = _params(morphable, 1, seed=6)
    turned = [base.copy(), base.copy()]
    for sign, p in zip((1, -1), turned):
        pose = p[0, :12].reshape(3, 4)
        pose[:, :3] = 7e-4 * euler_to_rotation(0.0, sign * 0.5, 0.0)[0]
        p[0, :12] = pose.reshape(12)
    scales = {}
    for mode in ("linear", "rotation"):
        averaged = mirror.average(turned[0], mirror.mirror(turned[1]), mode)[0, :12].reshape(3, 4)[:, :3]
        scales[mode] = np.cbrt(np.linalg.det(averaged))
    assert scales["rotation"] == pytest.approx(7e-4, rel=1e-9)
    assert scales["linear"] < 0.99 * 7e-4
    with pytest.raises(ValueError, match="pose_mode"):
        mirror.average(base, base, "slerp")


def test_flip_averaged_predictor_makes_one_call_on_2n_crops(morphable, mirror):
    """A predictor that is exactly mirror-consistent (marker pixel tells flipped crops) averages to itself."""
    params = _params(morphable, 3, seed=7)
    crops = np.zeros((3, S, S, 3), np.uint8)
    crops[:, :, 0] = 255  # the left column; flipped crops have it on the right
    calls = []

    def predict(batch):
        calls.append(len(batch))
        flipped = batch[:, 0, 0, 0] == 0
        out = np.tile(params, (2, 1))
        out[flipped] = mirror.mirror(params)[np.flatnonzero(flipped) % 3]
        return out

    averaged = flip_averaged(predict, mirror)(crops)
    assert calls == [6] and averaged.shape == (3, 62)
    error = np.linalg.norm((morphable.landmarks_model(averaged) - morphable.landmarks_model(params))[:, :2], axis=1)
    assert error.mean() < 0.08  # half of mirror(mirror(p)) - p
    assert flip_averaged(predict, mirror)(crops[:0]).shape == (0, 62)
