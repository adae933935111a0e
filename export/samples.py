"""Real face crops for export self-checks, parity tests and benchmarks, without a face detector.

A folder of images with 300W ``.pts`` landmark files beside them (e.g. ``shared/data/300w/helen_testset``) gives
crops through :func:`drtn.crop.roi_box_from_landmarks`, exactly as the tracker re-crops a face; an image without
landmarks gives a centred square crop.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from drtn.crop import CROP_SIZE, crop_image, roi_box_from_landmarks

LOGGER = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_pts(path: str | os.PathLike) -> np.ndarray:
    """Read a 300W ``.pts`` file (``version: 1`` / ``n_points: 68`` / ``{`` x y lines ``}``).

    Returns:
        (K, 2) float64 image pixels (the file's 1-based coordinates are kept as written).
    Raises:
        ValueError: the file does not follow the format; the message names it.
    """
    lines = Path(path).read_text().split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "{")
        end = next(i for i, line in enumerate(lines) if line.strip() == "}")
        points = np.array([[float(v) for v in line.split()] for line in lines[start + 1 : end]], dtype=np.float64)
    except (StopIteration, ValueError) as error:
        raise ValueError(f"{path}: not a 300W .pts landmark file ({error})") from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"{path}: expected K lines of 'x y', got array of shape {points.shape}")
    return points


def centered_box(image_shape: tuple[int, ...]) -> np.ndarray:
    """Detection-free ROI: the largest centred square of the image, ``(x0, y0, x1, y1)``."""
    height, width = image_shape[:2]
    side = min(height, width)
    x0, y0 = (width - side) / 2, (height - side) / 2
    return np.array([x0, y0, x0 + side, y0 + side], dtype=np.float64)


def load_face_crops(folder: str | os.PathLike, limit: int = 16, crop_size: int = CROP_SIZE) -> np.ndarray:
    """Crop up to ``limit`` faces from a folder (sorted by name, so the selection is reproducible).

    Images with a ``.pts`` file of the same stem are cropped around their landmarks; the others are cropped
    to their centred square.

    Returns:
        (K, crop_size, crop_size, 3) uint8 BGR crops, K <= limit (0 if the folder holds no readable image).
    Raises:
        FileNotFoundError: ``folder`` does not exist.
    """
    import cv2  # OpenCV comes with mediapipe; only needed to read pixels

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"face-crop folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    # Prefer landmark-annotated images: their crops are the ones the tracker makes.
    images.sort(key=lambda p: not p.with_suffix(".pts").is_file())
    crops = []
    for path in images:
        if len(crops) >= limit:
            break
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            LOGGER.warning("skipping unreadable image %s", path)
            continue
        pts = path.with_suffix(".pts")
        box = roi_box_from_landmarks(read_pts(pts) - 1.0) if pts.is_file() else centered_box(image.shape)  # 1-based
        crops.append(crop_image(image, box, crop_size))
    if not crops:
        return np.zeros((0, crop_size, crop_size, 3), dtype=np.uint8)
    return np.stack(crops)


def random_crops(count: int, crop_size: int = CROP_SIZE, seed: int = 0) -> np.ndarray:
    """(count, S, S, 3) uint8 uniform noise crops (reproducible)."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, crop_size, crop_size, 3), dtype=np.uint8)
