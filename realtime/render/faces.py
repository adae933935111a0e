"""From reconstructed faces to draws: the dense mesh overlay, landmarks, pose axes, and the avatar mesh.

The renderer knows nothing about tracking; this adapter reads the attributes a tracked face carries
(duck-typed, as :class:`realtime.pipeline.FaceResult` has them):

- ``vertices_image`` (4096, 3): dense vertices in image pixels (x right, y down, larger z closer),
- ``landmarks_2d`` (68, 2) image pixels,
- ``params`` (62,) de-normalised 3DDFA parameters (pose ``[s*R | t]`` first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from drtn.params import NUM_POSE, FaceParams, decompose_pose
from realtime.render.scene import AXIS_COLORS, LANDMARK_COLOR, MESH_COLOR, Color, LinesDraw, MeshDraw, Overlay, PointsDraw


@dataclass(frozen=True)
class FaceDrawOptions:
    """What to draw per face (the app's toggles)."""

    show_mesh: bool = True
    show_landmarks: bool = False
    show_axes: bool = False
    mesh_color: Color = MESH_COLOR
    landmark_color: Color = LANDMARK_COLOR
    landmark_size_px: float = 3.0
    axis_width_px: float = 2.5
    axis_length: float = 0.6  # fraction of the landmark box's larger side


def rotation_from_params(params: np.ndarray) -> np.ndarray:
    """(3, 3) rotation ``R`` of the pose ``[s*R | t]`` in the first 12 of the 62 parameters (nearest orthonormal).

    ``R`` maps model axes (x right, y up, z towards the viewer) into the model frame (same orientation).
    """
    pose = FaceParams.from_array(np.asarray(params, dtype=np.float64).reshape(-1)).pose[0]
    return decompose_pose(pose)[1][0]


def pose_axes_segments(params: np.ndarray, origin_xy: np.ndarray, length_px: float) -> np.ndarray:
    """(3, 2, 2) image-pixel segments of the head's x (right), y (up) and z (forward) axes from ``origin_xy``.

    The model frame has y up and the image y down, so the image direction of model axis ``k`` is
    ``(R[0, k], -R[1, k])``; a forward-facing z axis is foreshortened to (almost) a point.
    """
    rotation = rotation_from_params(params)
    directions = np.stack([rotation[0], -rotation[1]], axis=1)  # (3 axes, 2)
    origin = np.asarray(origin_xy, dtype=np.float64).reshape(1, 2)
    ends = origin + length_px * directions
    return np.stack([np.repeat(origin, 3, axis=0), ends], axis=1).astype(np.float32)


def face_draws(
    faces: Iterable, triangles: np.ndarray | None, options: FaceDrawOptions = FaceDrawOptions()
) -> tuple[list[MeshDraw], list[Overlay]]:
    """Meshes and overlays for tracked faces.

    Args:
        faces: objects with ``vertices_image`` (K, 3), ``landmarks_2d`` (68, 2) and ``params`` (62,).
        triangles: (T, 3) int triangles over the K vertices (``MorphableModel.dense_triangles``), or None: no
            mesh (e.g. while the app still computes them at start-up).
        options: what to draw.
    Returns:
        ``(meshes, overlays)`` for :meth:`OverlayRenderer.render` / :class:`SceneRendererGL`.
    """
    meshes: list[MeshDraw] = []
    overlays: list[Overlay] = []
    for face in faces:
        if options.show_mesh and triangles is not None:
            meshes.append(MeshDraw(face.vertices_image, triangles, options.mesh_color))
        landmarks = np.asarray(face.landmarks_2d, dtype=np.float32)
        if options.show_landmarks:
            overlays.append(PointsDraw(landmarks, options.landmark_color, options.landmark_size_px))
        if options.show_axes:
            size = float((landmarks.max(axis=0) - landmarks.min(axis=0)).max())
            origin = landmarks.mean(axis=0)
            segments = pose_axes_segments(face.params, origin, options.axis_length * size)
            for segment, color in zip(segments, AXIS_COLORS, strict=True):
                overlays.append(LinesDraw(segment[None], color, options.axis_width_px))
    return meshes, overlays


def avatar_mesh(model, params: np.ndarray, kind: str = "dense", follow_pose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The reconstructed face (identity + expression) in a neutral, normalised frame for the avatar view.

    Args:
        model: :class:`drtn.morphable.MorphableModel`.
        params: (62,) de-normalised parameters of one face.
        kind: 'dense' (4,096-point grid, fast) or 'display' (38,365-vertex full mesh).
        follow_pose: rotate by the head's rotation instead of facing front.
    Returns:
        ``(vertices (K, 3) float32, triangles (T, 3) int32)``; world: x right, y up, z towards the viewer
        (BFM model space), centred and scaled so the mean face spans about [-1, 1].
    """
    if kind not in ("dense", "display"):
        raise ValueError(f"avatar_mesh: kind must be 'dense' or 'display', got {kind!r}")
    params = np.asarray(params, dtype=np.float64).reshape(1, -1)
    neutral = params.copy()
    neutral[0, :NUM_POSE] = np.eye(3, 4).reshape(-1)  # [I | 0]: model space, no pose
    if kind == "dense":
        vertices = model.dense_model(neutral)[0].T
        triangles = model.dense_triangles
    else:
        vertices = model.display_vertices(neutral)[0].T
        triangles = model.display_triangles
    # Fixed normalisation from the mean face, so the avatar does not breathe with identity changes.
    low, high = model.display_mean.min(axis=0), model.display_mean.max(axis=0)
    vertices = (vertices - (low + high) / 2) / ((high - low).max() / 2)
    if follow_pose:
        vertices = vertices @ rotation_from_params(params[0]).T
    return vertices.astype(np.float32), np.ascontiguousarray(triangles, dtype=np.int32)


def ict_avatar_mesh(
    retargeter, blendshapes: dict[str, float] | None, params: np.ndarray, follow_pose: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The ICT FaceKit face driven by ARKit blendshapes (and the head pose): the app's default avatar.

    The face is exactly what a VMC receiver gets: each ICT shape takes the weight of its ARKit name (ICT's
    left / right halves of ``browInnerUp`` and ``cheekPuff`` both take the ARKit weight).

    Args:
        retargeter: :class:`realtime.blendshapes.BlendshapeRetargeter` (holds the ICT model and its alignment).
        blendshapes: ``{ARKit name: weight}`` of one face, or None (neutral).
        params: (62,) de-normalised parameters of the face (for the head rotation).
        follow_pose: rotate by the head's rotation instead of facing front.
    Returns:
        ``(vertices (9409, 3) float32, triangles (18460, 3) int32)``; world: x right, y up, z towards the viewer
        (the BFM frame, like :func:`avatar_mesh`), centred and scaled so the neutral face spans about [-1, 1].
    """
    vertices = retargeter.avatar_vertices(blendshapes)
    if follow_pose:
        vertices = vertices @ rotation_from_params(params).T
    return vertices.astype(np.float32), retargeter.ict.triangles
