"""Face boxes, square crops and the mappings between model frame, crop and image pixels.

One module for training and inference: a mismatch here silently ruins accuracy.

Frames (all x right, pixels):
- *image*: pixel centres at integer coordinates, y down.
- *crop*: the ``size x size`` network input; the ROI box edges ``[x0, x1]`` map to ``[-0.5, size-0.5]``,
  i.e. the same sampling as ``cv2.resize`` of the box.
- *model frame*: where the 62 params project vertices, 3DDFA convention: ``u = x - 1``, ``v = size - y``
  (y up), ``z`` scaled like x.

An ROI box is ``(x0, y0, x1, y1)`` float, square in practice.
"""

from __future__ import annotations

import numpy as np

from drtn.params import torch_if_tensor

CROP_SIZE = 120  # 3DDFA_V2 crop; the real-time DRTN uses the same
PIXEL_MEAN = 127.5  # x_norm = (pixel - 127.5) / 128, as 3DDFA_V2 (and its teacher model) was trained
PIXEL_SCALE = 1.0 / 128.0


def normalize_crops(crops_bgr: np.ndarray) -> np.ndarray:
    """The one pixel normalisation of training and inference: uint8 BGR crops -> network input.

    Args:
        crops_bgr: (N, S, S, 3) uint8, BGR.
    Returns:
        (N, 3, S, S) float32 C-contiguous, ``(pixel - 127.5) / 128``, channels still BGR.
    """
    images = np.ascontiguousarray(np.asarray(crops_bgr).transpose(0, 3, 1, 2), dtype=np.float32)
    images -= PIXEL_MEAN
    images *= PIXEL_SCALE  # 1/128 is exact in binary: identical to a division
    return images


def roi_box_from_landmarks(landmarks_xy: np.ndarray) -> np.ndarray:
    """Square ROI around 68 landmarks, as 3DDFA_V2 re-crops from the previous frame.

    Args:
        landmarks_xy: (68, 2) or (N, 68, 2) image pixels.
    Returns:
        (4,) or (N, 4) ``(x0, y0, x1, y1)``; side = sqrt(2) * larger side of the landmark box.
    """
    pts = np.asarray(landmarks_xy, dtype=np.float64)
    single = pts.ndim == 2
    pts = pts.reshape(-1, pts.shape[-2], 2)
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    center = (lo + hi) / 2
    radius = (hi - lo).max(axis=1) / 2
    half = np.sqrt(2.0) * radius  # diagonal of the 2r square, as 3DDFA_V2
    box = np.stack([center[:, 0] - half, center[:, 1] - half, center[:, 0] + half, center[:, 1] + half], 1)
    return box[0] if single else box


def roi_box_from_detection(box_xyxy: np.ndarray, scale: float = 1.58, shift_y: float = 0.14) -> np.ndarray:
    """Square ROI from a detector box (3DDFA_V2 recipe: enlarge by ``scale``, shift down by ``shift_y``).

    Args:
        box_xyxy: (4,) or (N, 4) ``(x0, y0, x1, y1)`` image pixels.
    """
    box = np.asarray(box_xyxy, dtype=np.float64)
    single = box.ndim == 1
    box = box.reshape(-1, 4)
    old = ((box[:, 2] - box[:, 0]) + (box[:, 3] - box[:, 1])) / 2
    cx = (box[:, 0] + box[:, 2]) / 2
    cy = (box[:, 1] + box[:, 3]) / 2 + old * shift_y
    half = old * scale / 2
    out = np.stack([cx - half, cy - half, cx + half, cy + half], 1)
    return out[0] if single else out


def crop_to_image_affine(roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 affine mapping crop pixels to image pixels for one ROI box."""
    x0, y0, x1, y1 = (float(v) for v in roi_box)
    sx, sy = (x1 - x0) / size, (y1 - y0) / size
    # crop pixel u -> image x = x0 + (u + 0.5) * sx - 0.5  (cv2.resize sampling of the box)
    return np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]], dtype=np.float64)


def image_to_crop_affine(roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 affine mapping image pixels to crop pixels (the warp matrix for ``cv2.warpAffine``)."""
    forward = np.vstack([crop_to_image_affine(roi_box, size), [0.0, 0.0, 1.0]])
    return np.linalg.inv(forward)[:2]


def crop_image(image: np.ndarray, roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Cut the ROI out of ``image`` and resize it to ``size x size`` (bilinear, black outside the image).

    Args:
        image: (H, W, 3) or (H, W) uint8.
        roi_box: (4,) ``(x0, y0, x1, y1)``.
    Returns:
        (size, size, C) uint8.
    """
    try:
        import cv2
    except ImportError as error:  # drtn itself needs only numpy+torch; cropping pixels needs OpenCV
        raise ImportError("crop_image needs OpenCV: pip install opencv-contrib-python (or mediapipe)") from error
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"crop_image: expected an (H, W[, C]) image, got shape {image.shape}")
    matrix = image_to_crop_affine(roi_box, size)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def model_to_crop(points_model, size: int = CROP_SIZE):
    """Model-frame points (..., 3, K) -> crop pixels (..., 3, K); numpy or torch (3DDFA: x-1, size-y)."""
    x = points_model[..., 0, :] - 1.0
    y = size - points_model[..., 1, :]
    z = points_model[..., 2, :] - 1.0
    return _stack3(x, y, z, points_model)


def crop_to_model(points_crop, size: int = CROP_SIZE):
    """Inverse of :func:`model_to_crop`."""
    x = points_crop[..., 0, :] + 1.0
    y = size - points_crop[..., 1, :]
    z = points_crop[..., 2, :] + 1.0
    return _stack3(x, y, z, points_crop)


def crop_to_image(points_crop: np.ndarray, roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Crop pixels (3, K) -> image pixels (3, K); z is scaled by the mean crop scale (not shifted)."""
    affine = crop_to_image_affine(roi_box, size)
    out = np.array(points_crop, dtype=np.float64, copy=True)
    out[0] = affine[0, 0] * out[0] + affine[0, 2]
    out[1] = affine[1, 1] * out[1] + affine[1, 2]
    out[2] = out[2] * (affine[0, 0] + affine[1, 1]) / 2
    return out


def image_to_crop(points_image: np.ndarray, roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Image pixels (2 or 3, K) -> crop pixels; inverse of :func:`crop_to_image`."""
    affine = crop_to_image_affine(roi_box, size)
    out = np.array(points_image, dtype=np.float64, copy=True)
    out[0] = (out[0] - affine[0, 2]) / affine[0, 0]
    out[1] = (out[1] - affine[1, 2]) / affine[1, 1]
    if out.shape[0] > 2:
        out[2] = out[2] / ((affine[0, 0] + affine[1, 1]) / 2)
    return out


def model_to_image(points_model: np.ndarray, roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Model-frame points (3, K) of one face -> image pixels (3, K)."""
    return crop_to_image(model_to_crop(np.asarray(points_model, dtype=np.float64), size), roi_box, size)


def image_to_model(points_image: np.ndarray, roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Image pixels (2 or 3, K) -> model frame (same rows)."""
    crop = image_to_crop(points_image, roi_box, size)
    if crop.shape[0] == 2:
        crop = np.vstack([crop, np.zeros((1, crop.shape[1]))])
        return crop_to_model(crop, size)[:2]
    return crop_to_model(crop, size)


# ------------------------------------------------------------------------------------------ poses
# The one crop <-> image conversion of a 62-vector's pose ``[s*R | t]`` (3, 4). A pose maps model vertices into
# the *model frame* of one crop; the same pose in the *image frame* (x right, y down, z scaled like x and not
# shifted, as :func:`crop_to_image`) is that pose composed with an exact 4x4 frame change.


def image_to_model_matrix(image_to_crop: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """4x4 map from image (x, y down, z) to the model frame of a crop given its 2x3 image->crop similarity."""
    a = np.asarray(image_to_crop, dtype=np.float64)
    scale = np.sqrt(abs(np.linalg.det(a[:, :2])))
    to_crop = np.eye(4)
    to_crop[:2, :2], to_crop[:2, 3] = a[:, :2], a[:, 2]
    to_crop[2, 2] = scale
    # crop -> model frame: x + 1, size - y, z + 1 (3DDFA convention, :func:`crop_to_model`)
    to_model = np.array([[1.0, 0, 0, 1.0], [0, -1.0, 0, size], [0, 0, 1.0, 1.0], [0, 0, 0, 1.0]])
    return to_model @ to_crop


def box_image_to_model_matrix(roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """4x4 image -> model frame for an axis-aligned ROI box."""
    return image_to_model_matrix(image_to_crop_affine(roi_box, size), size)


def pose_crop_to_image(pose_model: np.ndarray, roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(..., 3, 4) model-frame pose of the crop ``roi_box`` -> image-frame pose (x right, y down, z like x).

    ``pose_image @ [v; 1]`` gives the same image points as :func:`model_to_image` of ``pose_model @ [v; 1]``.
    """
    return _apply_to_pose(np.linalg.inv(box_image_to_model_matrix(roi_box, size)), pose_model)


def pose_image_to_crop(pose_image: np.ndarray, image_to_crop: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(..., 3, 4) image-frame pose -> model-frame pose of the crop given by a 2x3 image->crop similarity
    (for an ROI box: ``image_to_crop_affine(roi_box)``); the inverse of :func:`pose_crop_to_image`."""
    return _apply_to_pose(image_to_model_matrix(image_to_crop, size), pose_image)


def _apply_to_pose(matrix: np.ndarray, pose: np.ndarray) -> np.ndarray:
    pose = np.asarray(pose, dtype=np.float64)
    linear = matrix[:3, :3] @ pose[..., :3]
    translation = (matrix[:3, :3] @ pose[..., 3:])[..., 0] + matrix[:3, 3]
    return np.concatenate([linear, translation[..., None]], axis=-1)


def _stack3(x, y, z, like):
    torch = torch_if_tensor(like)
    if torch is not None:
        return torch.stack([x, y, z], dim=-2)
    return np.stack([x, y, z], axis=-2)
