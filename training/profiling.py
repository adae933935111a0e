"""Face profiling (as 300W-LP): rotate a fitted face in 3D and re-render its own image texture.

Given an image and its fitted 62 params, the face is turned by ``delta_yaw`` (and ``delta_pitch``: looking up or
down) about its own centre (and may get a new expression); every output pixel on the new face takes its colour from where the same surface point was in
the source image (the dense mesh, rasterised by point splatting with a z-buffer), and the background moves
with a smooth displacement field that follows the face border, so no ghost of the old face remains beside the
new one. The labels of the new image follow exactly from the transform: the new pose, same identity, the
(new) expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from drtn import crop
from drtn.morphable import MorphableModel
from drtn.params import FaceParams, compose_pose, decompose_pose, euler_to_rotation, rotation_to_euler
from training.geometry import pose_to_crop, pose_to_image

# barycentric sample pattern for splatting one triangle (6 subdivisions: 28 samples, spacing << 1 px here)
_SUBDIV = 6
_BARY = np.array([(i / _SUBDIV, j / _SUBDIV) for i in range(_SUBDIV + 1) for j in range(_SUBDIV + 1 - i)])


@dataclass(frozen=True)
class ProfiledFace:
    """A generated sample: ``image`` (S, S, 3) with its 68 model landmarks and params for ``roi_box``."""

    image: np.ndarray
    landmarks: np.ndarray  # (68, 2) pixels of ``image``
    roi_box: np.ndarray  # (4,) box from ``landmarks`` (inference crop policy)
    params: np.ndarray  # (62,) model frame of ``roi_box``
    yaw_degrees: float
    pitch_degrees: float = 0.0


def lift_similarity(affine: np.ndarray) -> np.ndarray:
    """2x3 similarity on (x, y) -> 4x4 acting on (x, y, z, 1) with z scaled alike."""
    out = np.eye(4)
    out[:2, :2], out[:2, 3] = affine[:, :2], affine[:, 2]
    out[2, 2] = np.sqrt(abs(np.linalg.det(affine[:, :2])))
    return out


def splat_attributes(points_xyz: np.ndarray, triangles: np.ndarray, attributes: np.ndarray, size: int):
    """Rasterise a mesh by dense barycentric splatting with a z-buffer (nearest = largest z wins).

    Args:
        points_xyz: (K, 3) canvas pixels + depth.
        triangles: (T, 3) indices.
        attributes: (K, A) per-vertex values to interpolate.
        size: canvas side.
    Returns:
        (size, size, A) float32 attribute image and (size, size) bool coverage mask.
    """
    a, b, c = (points_xyz[triangles[:, k]] for k in range(3))
    u, v = _BARY[:, 0][None, :, None], _BARY[:, 1][None, :, None]
    samples = a[:, None] * (1 - u - v) + b[:, None] * u + c[:, None] * v  # (T, S, 3)
    attr_a, attr_b, attr_c = (attributes[triangles[:, k]] for k in range(3))
    values = attr_a[:, None] * (1 - u - v) + attr_b[:, None] * u + attr_c[:, None] * v
    samples = samples.reshape(-1, 3)
    values = values.reshape(-1, attributes.shape[1])
    px = np.rint(samples[:, 0]).astype(np.int64)
    py = np.rint(samples[:, 1]).astype(np.int64)
    inside = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    px, py, depth, values = px[inside], py[inside], samples[inside, 2], values[inside]
    order = np.argsort(depth, kind="stable")  # far first; later (nearer) writes win
    flat = py[order] * size + px[order]
    image = np.zeros((size * size, attributes.shape[1]), np.float32)
    mask = np.zeros(size * size, bool)
    image[flat] = values[order]
    mask[flat] = True
    return image.reshape(size, size, -1), mask.reshape(size, size)


def sample_target_yaw(current_yaw_degrees: float, rng: np.random.Generator, low: float, high: float) -> float:
    """A target yaw in [low, high] degrees, turned further the way the face already looks (either way if frontal)."""
    magnitude = rng.uniform(low, high)  # drawn before the side: keeps the corpus' random sequence
    side = np.sign(current_yaw_degrees) if abs(current_yaw_degrees) > 5 else rng.choice([-1, 1])
    return float(magnitude * side)


def sample_profile_pose(
    current_yaw_degrees: float, current_pitch_degrees: float, rng: np.random.Generator, config: "ProfilePoseConfig"
) -> tuple[float, float]:
    """Target (yaw, pitch) in degrees for one profile: yaw only, pitch only or both (``config`` shares).

    Yaw turns further the way the face already looks (:func:`sample_target_yaw`); pitch goes up or down at random
    (further the way it already looks when it is already beyond 10 degrees). Untouched angles stay as they are.
    """
    draw = rng.random()
    yaw, pitch = current_yaw_degrees, current_pitch_degrees
    if draw < config.yaw_only + config.both:
        low, high = config.yaw_range if draw < config.yaw_only else config.both_yaw_range
        yaw = sample_target_yaw(current_yaw_degrees, rng, low, high)
    if draw >= config.yaw_only:
        low, high = config.pitch_range if draw >= config.yaw_only + config.both else config.both_pitch_range
        magnitude = rng.uniform(low, high)
        side = np.sign(current_pitch_degrees) if abs(current_pitch_degrees) > 10 else rng.choice([-1, 1])
        pitch = float(magnitude * side)
    return float(yaw), float(pitch)


@dataclass(frozen=True)
class ProfilePoseConfig:
    """Where profiles go on the pose sphere: shares of yaw-only / both (the rest: pitch only) and their ranges."""

    yaw_only: float = 0.45
    both: float = 0.30
    yaw_range: tuple[float, float] = (35.0, 90.0)
    pitch_range: tuple[float, float] = (20.0, 45.0)
    both_yaw_range: tuple[float, float] = (25.0, 75.0)
    both_pitch_range: tuple[float, float] = (15.0, 40.0)

    def __post_init__(self) -> None:
        if not (0 <= self.yaw_only and 0 <= self.both and self.yaw_only + self.both <= 1):
            raise ValueError(
                f"ProfilePoseConfig: shares yaw_only={self.yaw_only}, both={self.both} must be >= 0 and sum to <= 1"
            )


def rotate_params(
    params: np.ndarray,
    delta_yaw: float,
    centre_model: np.ndarray,
    new_expression: np.ndarray | None = None,
    delta_pitch: float = 0.0,
) -> np.ndarray:
    """Turn a face by ``delta_yaw`` (and ``delta_pitch``) radians of its Euler angles about its centre (model
    space point (3,)), in the same model frame."""
    fp = FaceParams.from_array(np.asarray(params, dtype=np.float64))
    scale, rotation, translation = decompose_pose(fp.pose)
    pitch, yaw, roll = rotation_to_euler(rotation)[0]
    new_rotation = euler_to_rotation(pitch + delta_pitch, yaw + delta_yaw, roll)[0]
    centre = centre_model.reshape(3)
    new_translation = translation[0] + scale[0] * (rotation[0] @ centre - new_rotation @ centre)
    pose = compose_pose(scale, new_rotation[None], new_translation[None])
    expression = fp.expression if new_expression is None else np.asarray(new_expression, dtype=np.float64).reshape(1, -1)
    return FaceParams(pose, fp.identity, expression).to_array()[0]


def profile_face(
    image: np.ndarray,
    roi_box: np.ndarray,
    params: np.ndarray,
    delta_yaw_degrees: float,
    morphable: MorphableModel,
    new_expression: np.ndarray | None = None,
    canvas_size: int = 256,
    canvas_margin: float = 1.25,
    delta_pitch_degrees: float = 0.0,
) -> ProfiledFace:
    """Render ``image``'s face turned by ``delta_yaw_degrees`` / ``delta_pitch_degrees`` (and with
    ``new_expression``) on a square canvas.

    Args:
        image: (H, W, 3) uint8 BGR.
        roi_box, params: the fitted label (params in the model frame of ``roi_box``).
        canvas_margin: canvas side relative to the new ROI box (room for crop jitter in training).
    """
    dense = morphable.dense
    on_face = morphable.dense_on_face
    triangles = morphable.dense_triangles
    old = FaceParams.from_array(np.asarray(params, dtype=np.float64))
    shape_old = dense.vertices(old.identity, old.expression)[0]  # (3, K) model space
    centre = shape_old[:, on_face].mean(axis=1)
    new_params = rotate_params(params, np.radians(delta_yaw_degrees), centre, new_expression, np.radians(delta_pitch_degrees))
    new = FaceParams.from_array(new_params)
    shape_new = dense.vertices(new.identity, new.expression)[0]

    pose_old_image = pose_to_image(old.pose[0], roi_box)
    pose_new_image = pose_to_image(new.pose[0], roi_box)
    homogeneous = lambda s: np.vstack([s, np.ones((1, s.shape[1]))])  # noqa: E731
    points_old = (pose_old_image @ homogeneous(shape_old)).T  # (K, 3) image
    points_new = (pose_new_image @ homogeneous(shape_new)).T
    sparse_new = morphable.sparse.vertices(new.identity, new.expression)[0]
    landmarks_new = (pose_new_image @ homogeneous(sparse_new)).T  # (68, 3) image

    # canvas: square around the new ROI box
    box = crop.roi_box_from_landmarks(landmarks_new[:, :2])
    centre_xy = (box[:2] + box[2:]) / 2
    half = (box[2] - box[0]) * canvas_margin / 2
    canvas_box = np.array([centre_xy[0] - half, centre_xy[1] - half, centre_xy[0] + half, centre_xy[1] + half])
    to_canvas = crop.image_to_crop_affine(canvas_box, canvas_size)
    lift = lift_similarity(to_canvas)
    canvas_new = (lift @ np.hstack([points_new, np.ones((len(points_new), 1))]).T).T[:, :3]

    # face pixels: source coordinates of the same surface point
    face_map, face_mask = splat_attributes(canvas_new, triangles, points_old[:, :2], canvas_size)
    face_mask = cv2.erode(face_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # drop ragged rim

    # background: smooth displacement following the face (inverse map, evaluated on a coarse grid)
    coarse = 32
    grid = (np.arange(coarse) + 0.5) * canvas_size / coarse - 0.5
    gx, gy = np.meshgrid(grid, grid)
    back = np.linalg.inv(np.vstack([to_canvas, [0, 0, 1]]))[:2]
    image_x = back[0, 0] * gx + back[0, 2]
    image_y = back[1, 1] * gy + back[1, 2]
    anchors = np.flatnonzero(on_face)[::7]
    displacement = points_new[anchors, :2] - points_old[anchors, :2]
    face_width = np.ptp(points_new[anchors, 0]) + 1e-6
    d2 = (image_x.reshape(-1, 1) - points_new[anchors, 0]) ** 2 + (image_y.reshape(-1, 1) - points_new[anchors, 1]) ** 2
    weights = np.exp(-d2 / (2 * (0.3 * face_width) ** 2))
    field = weights @ displacement / (weights.sum(axis=1, keepdims=True) + 0.2)
    field = cv2.resize(
        field.reshape(coarse, coarse, 2).astype(np.float32), (canvas_size, canvas_size), interpolation=cv2.INTER_LINEAR
    )
    px, py = np.meshgrid(np.arange(canvas_size, dtype=np.float64), np.arange(canvas_size, dtype=np.float64))
    map_x = (back[0, 0] * px + back[0, 2] - field[..., 0]).astype(np.float32)
    map_y = (back[1, 1] * py + back[1, 2] - field[..., 1]).astype(np.float32)
    map_x[face_mask] = face_map[face_mask, 0]
    map_y[face_mask] = face_map[face_mask, 1]
    rendered = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    # labels in the canvas image: landmarks, ROI box from them (inference policy), params in that box's frame
    pose_canvas = lift[:3, :3] @ pose_new_image[:, :3], lift[:3, :3] @ pose_new_image[:, 3] + lift[:3, 3]
    pose_canvas = np.concatenate([pose_canvas[0], pose_canvas[1][:, None]], axis=1)
    landmarks_canvas = (lift @ np.hstack([landmarks_new, np.ones((68, 1))]).T).T[:, :2]
    roi_canvas = crop.roi_box_from_landmarks(landmarks_canvas)
    pose_model = pose_to_crop(pose_canvas, crop.image_to_crop_affine(roi_canvas))
    out_params = FaceParams(pose_model[None], new.identity, new.expression).to_array()[0]
    _, rotation, _ = decompose_pose(new.pose)
    pitch, yaw, _ = np.degrees(rotation_to_euler(rotation)[0])
    return ProfiledFace(rendered, landmarks_canvas, roi_canvas, out_params.astype(np.float32), float(yaw), float(pitch))
