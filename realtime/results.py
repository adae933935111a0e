"""Typed views of a tracked face: pose as a 4x4 image-space transform, quaternion and Euler angles, identity and
expression coefficients -- so consumers never slice the raw 62-vector (``params[:12]``, ``params[52:]``).

:class:`realtime.pipeline.FaceResult` keeps the raw parameters relative to its crop; :func:`face_pose` and
:class:`FaceOutput` turn them into quantities that mean something without the crop:

>>> output = FaceOutput.from_face(face, crop_size=pipeline.crop_size)          # doctest: +SKIP
>>> output.pose.matrix_image @ [x, y, z, 1]       # a BFM model-space point -> image pixels (x, y) + depth z
>>> output.pose.quaternion_wxyz, output.pose.euler_degrees.yaw, output.expression

Frames: *model space* is the BFM's (x right, y up, z towards the viewer; micrometre-like BFM units); *image
space* is the frame's pixels (x right, y down, pixel centres at integers) with depth z in pixels, larger z
nearer the camera (see :mod:`drtn.crop`). The projection is weak perspective, so the 4x4 matrix's last row is
``[0, 0, 0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drtn.crop import CROP_SIZE, crop_to_image_affine
from drtn.params import (
    NUM_PARAMS,
    FaceParams,
    decompose_pose,
    quaternion_to_rotation,  # noqa: F401 (re-exported with the typed results)
    rotation_to_euler,
)
from drtn.params import rotation_to_quaternion as rotation_to_quaternion_wxyz


@dataclass(frozen=True)
class EulerAngles:
    """Head rotation in degrees, 3DDFA convention ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)`` (``drtn.params``)."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class FacePose:
    """The pose of one face, in image terms.

    Attributes:
        matrix_image: (4, 4) float64: BFM model space -> image pixels + depth (x right, y down, z nearer = larger),
            the whole weak-perspective projection including scale; ``matrix_image @ [v, 1]`` gives the same
            points as :attr:`FaceResult.vertices_image` for the dense model's vertices ``v``.
        rotation: (3, 3) float64 orthonormal head rotation ``R`` (model axes -> camera axes x right, y up,
            z towards the viewer; the nearest rotation to the network's ``s*R``).
        quaternion_wxyz: (4,) float64 unit quaternion of :attr:`rotation`, ``w >= 0``.
        euler_degrees: yaw, pitch, roll of :attr:`rotation`.
        scale_px: image pixels per BFM model unit.
        translation_px: (3,) float64 image position (x, y, depth z) of the model origin.
    """

    matrix_image: np.ndarray
    rotation: np.ndarray
    quaternion_wxyz: np.ndarray
    euler_degrees: EulerAngles
    scale_px: float
    translation_px: np.ndarray


def model_frame_to_image_matrix(roi_box: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """(4, 4) float64 affine map of the crop's model frame (``drtn.crop``) to image pixels + depth.

    The same mapping as :func:`drtn.crop.model_to_image`: ``u = x - 1``, ``v = size - y``, ``z - 1`` in the crop,
    then the crop-to-image affine; depth is scaled by the mean of the x and y scales.
    """
    affine = crop_to_image_affine(np.asarray(roi_box, dtype=np.float64), crop_size)
    sx, sy = affine[0, 0], affine[1, 1]
    sz = (sx + sy) / 2
    return np.array(
        [
            [sx, 0.0, 0.0, affine[0, 2] - sx],
            [0.0, -sy, 0.0, affine[1, 2] + sy * crop_size],
            [0.0, 0.0, sz, -sz],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def face_pose(params: np.ndarray, roi_box: np.ndarray, crop_size: int = CROP_SIZE) -> FacePose:
    """The :class:`FacePose` of one face's de-normalised parameters relative to its ROI box.

    Args:
        params: (62,) de-normalised parameters (``FaceResult.params``).
        roi_box: (4,) ``(x0, y0, x1, y1)`` the parameters refer to (``FaceResult.roi_box``).
        crop_size: the backend's crop size (``FacePipeline.crop_size``; 120 for the bundled model).
    """
    params = np.asarray(params, dtype=np.float64).reshape(-1)
    if params.shape != (NUM_PARAMS,):
        raise ValueError(f"face_pose: expected {NUM_PARAMS} parameters, got shape {params.shape}")
    pose = FaceParams.from_array(params).pose[0]  # (3, 4) [s*R | t], model frame
    to_image = model_frame_to_image_matrix(roi_box, crop_size)
    matrix = to_image @ np.vstack([pose, [0.0, 0.0, 0.0, 1.0]])
    scale, rotation, _ = decompose_pose(pose)
    pitch, yaw, roll = np.degrees(rotation_to_euler(rotation)[0])
    return FacePose(
        matrix_image=matrix,
        rotation=rotation[0],
        quaternion_wxyz=rotation_to_quaternion_wxyz(rotation[0]),
        euler_degrees=EulerAngles(float(yaw), float(pitch), float(roll)),
        scale_px=float(scale[0] * to_image[2, 2]),
        translation_px=matrix[:3, 3].copy(),
    )


@dataclass(frozen=True)
class FaceOutput:
    """One face with named fields (what the Python API returns and the records write).

    Attributes:
        track_id: stable id across frames (VIDEO / LIVE_STREAM); order within the image in IMAGE mode.
        pose: :class:`FacePose`.
        identity: (40,) float32 identity (shape) coefficients ``alpha_id``.
        expression: (10,) float32 expression coefficients ``beta_exp``.
        landmarks_2d: (68, 2) float32 image pixels.
        landmarks_3d: (68, 3) float32 image pixels + depth (larger z nearer).
        vertices_image: (4096, 3) float32 dense vertices like ``landmarks_3d``; (0, 3) without dense output.
        roi_box: (4,) float64 the crop the raw parameters refer to.
        params: (62,) float32 the raw de-normalised parameters (for tools that speak 3DDFA).
        detection_score: score of the detection that started or last confirmed the track.
        presence: confidence that the tracked face is still there (``None`` when the pipeline gives none).
        blendshapes: ARKit-style blendshape name -> weight in [0, 1] when enabled, else ``None``.
    """

    track_id: int
    pose: FacePose
    identity: np.ndarray
    expression: np.ndarray
    landmarks_2d: np.ndarray
    landmarks_3d: np.ndarray
    vertices_image: np.ndarray
    roi_box: np.ndarray
    params: np.ndarray
    detection_score: float
    presence: float | None = None
    blendshapes: dict[str, float] | None = None

    @staticmethod
    def from_face(face, crop_size: int = CROP_SIZE) -> "FaceOutput":
        """Build from a :class:`realtime.pipeline.FaceResult` (or any object with its attributes)."""
        split = FaceParams.from_array(np.asarray(face.params, dtype=np.float32))
        presence = getattr(face, "presence", None)
        blendshapes = getattr(face, "blendshapes", None)
        return FaceOutput(
            track_id=int(face.track_id),
            pose=face_pose(face.params, face.roi_box, crop_size),
            identity=np.asarray(split.identity[0]),
            expression=np.asarray(split.expression[0]),
            landmarks_2d=face.landmarks_2d,
            landmarks_3d=face.landmarks_3d,
            vertices_image=face.vertices_image,
            roi_box=np.asarray(face.roi_box, dtype=np.float64),
            params=np.asarray(face.params, dtype=np.float32),
            detection_score=float(face.detection_score),
            presence=None if presence is None else float(presence),
            blendshapes=None if blendshapes is None else {str(k): float(v) for k, v in blendshapes.items()},
        )

    @property
    def yaw(self) -> float:
        return self.pose.euler_degrees.yaw

    @property
    def pitch(self) -> float:
        return self.pose.euler_degrees.pitch

    @property
    def roll(self) -> float:
        return self.pose.euler_degrees.roll


def face_rotation(params: np.ndarray) -> np.ndarray:
    """(3, 3) head rotation of one face's (62,) parameters (the typed split, no slicing at call sites)."""
    return decompose_pose(FaceParams.from_array(np.asarray(params, dtype=np.float64)).pose[0])[1][0]
