"""Pose bookkeeping between crops: a label's pose moves exactly with every crop transform.

A 62-vector's pose maps model vertices into the *model frame* of one crop (see :mod:`drtn.crop`). Re-cropping
(jitter, scale, in-plane rotation) or mirroring the image changes only that frame, so the new pose is the old one
composed with an exact 4x4 frame change; identity and expression stay as they are (mirroring is handled by
re-fitting, not here).
"""
from __future__ import annotations

import numpy as np

from drtn.crop import CROP_SIZE, image_to_crop_affine


def image_to_model_matrix(image_to_crop: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """4x4 map from image (x, y down, z) to the model frame of a crop given its 2x3 image->crop similarity."""
    a = np.asarray(image_to_crop, dtype=np.float64)
    scale = np.sqrt(abs(np.linalg.det(a[:, :2])))
    to_crop = np.eye(4)
    to_crop[:2, :2], to_crop[:2, 3] = a[:, :2], a[:, 2]
    to_crop[2, 2] = scale
    # crop -> model frame: x + 1, size - y, z + 1 (3DDFA convention)
    to_model = np.array([[1.0, 0, 0, 1.0], [0, -1.0, 0, size], [0, 0, 1.0, 1.0], [0, 0, 0, 1.0]])
    return to_model @ to_crop


def box_image_to_model_matrix(roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """4x4 image -> model frame for an axis-aligned ROI box."""
    return image_to_model_matrix(image_to_crop_affine(roi_box, size), size)


def pose_to_image(pose_model: np.ndarray, roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(..., 3, 4) model-frame pose of the crop ``roi_box`` -> image-frame pose (x right, y down)."""
    to_image = np.linalg.inv(box_image_to_model_matrix(roi_box, size))
    return _apply(to_image, pose_model)


def pose_to_crop(pose_image: np.ndarray, image_to_crop: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(..., 3, 4) image-frame pose -> model-frame pose of the crop given by a 2x3 image->crop similarity."""
    return _apply(image_to_model_matrix(image_to_crop, size), pose_image)


def _apply(matrix: np.ndarray, pose: np.ndarray) -> np.ndarray:
    pose = np.asarray(pose, dtype=np.float64)
    linear = matrix[:3, :3] @ pose[..., :3]
    translation = (matrix[:3, :3] @ pose[..., 3:])[..., 0] + matrix[:3, 3]
    return np.concatenate([linear, translation[..., None]], axis=-1)
