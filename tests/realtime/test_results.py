"""realtime.results: the typed pose (4x4 image transform, quaternion, Euler) against the pipeline's own geometry."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from drtn.crop import model_to_image
from drtn.morphable import project
from drtn.params import FaceParams, compose_pose, euler_to_rotation, pose_angles_degrees
from realtime.results import FaceOutput, face_pose, quaternion_to_rotation, rotation_to_quaternion_wxyz


def _params(pitch: float, yaw: float, roll: float, scale: float = 1.5e-3, rng=None) -> np.ndarray:
    rng = rng or np.random.default_rng(0)
    pose = compose_pose(scale, euler_to_rotation(pitch, yaw, roll), np.array([[60.0, 62.0, 5.0]]))[0]
    return np.concatenate([pose.reshape(-1), rng.normal(0, 1e5, 40), rng.normal(0, 0.5, 10)]).astype(np.float64)


@pytest.mark.parametrize(
    "angles", [(0.0, 0.0, 0.0), (0.3, -1.2, 2.9), (-1.4, 0.7, -3.0), (3.1, 0.1, 0.2), (0.0, np.pi / 2 - 1e-3, 0.0)]
)
def test_quaternion_round_trips_every_rotation(angles):
    rotation = euler_to_rotation(*angles)[0]
    quaternion = rotation_to_quaternion_wxyz(rotation)
    assert quaternion[0] >= 0 and abs(np.linalg.norm(quaternion) - 1) < 1e-12
    np.testing.assert_allclose(quaternion_to_rotation(quaternion), rotation, atol=1e-12)


def test_quaternion_of_a_known_rotation():
    # 90 degrees about +z: (cos 45, 0, 0, sin 45)
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(rotation_to_quaternion_wxyz(rotation), [np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-12)
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        rotation_to_quaternion_wxyz(np.eye(4))


@pytest.mark.parametrize("crop_size", [120, 160])
def test_matrix_image_maps_model_points_like_the_pipeline(crop_size):
    params = _params(0.2, -0.5, 0.1)
    roi_box = np.array([103.5, 48.25, 351.0, 295.75])
    points = np.random.default_rng(1).normal(0, 5e4, (3, 50))  # BFM model-space points
    pose = FaceParams.from_array(params).pose
    expected = model_to_image(project(pose, points[None])[0], roi_box, crop_size)  # what the pipeline computes
    result = face_pose(params, roi_box, crop_size)
    got = result.matrix_image @ np.vstack([points, np.ones((1, 50))])
    np.testing.assert_allclose(got[:3], expected, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(got[3], 1.0)
    yaw, pitch, roll = pose_angles_degrees(params[None])[0]
    assert (result.euler_degrees.yaw, result.euler_degrees.pitch, result.euler_degrees.roll) == pytest.approx(
        (yaw, pitch, roll)
    )
    np.testing.assert_allclose(quaternion_to_rotation(result.quaternion_wxyz), result.rotation, atol=1e-12)
    # the model origin lands at the translation; one model unit spans scale_px image pixels
    np.testing.assert_allclose(result.translation_px, (result.matrix_image @ [0, 0, 0, 1])[:3])
    box_scale = (roi_box[2] - roi_box[0]) / crop_size
    assert result.scale_px == pytest.approx(1.5e-3 * box_scale, rel=1e-9)


def test_face_output_splits_the_parameters_by_name():
    params = _params(0.0, 0.3, 0.0).astype(np.float32)
    face = SimpleNamespace(track_id=3, params=params, roi_box=np.array([0.0, 0.0, 120.0, 120.0]), landmarks_2d=np.zeros((68, 2)),
                           landmarks_3d=np.zeros((68, 3)), vertices_image=np.zeros((0, 3)), detection_score=0.9)  # fmt: skip
    output = FaceOutput.from_face(face)
    np.testing.assert_array_equal(output.identity, params[12:52])
    np.testing.assert_array_equal(output.expression, params[52:])
    assert output.presence is None and output.blendshapes is None  # the pipeline gives neither (yet)
    assert output.yaw == pytest.approx(np.degrees(0.3), abs=1e-3)
    face.presence, face.blendshapes = 0.75, {"jawOpen": 0.5}
    output = FaceOutput.from_face(face)
    assert output.presence == 0.75 and output.blendshapes == {"jawOpen": 0.5}
