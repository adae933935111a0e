"""What cameras and scenes do to a face crop: one implementation for the robustness table and for training.

Every function takes a BGR uint8 crop (S, S, 3) and, where the corruption depends on the face, its 68 landmarks
in crop pixels (68, 2); it returns a new uint8 crop of the same size. None of them moves the face, so a crop's
labels stay exactly valid. ``ROBUSTNESS_CONDITIONS`` are the fixed settings of ``main.py eval``'s robustness
table; :func:`random_context` draws the same kinds of change for training (:mod:`training.augment`).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

EYES = np.arange(36, 48)
BROWS = np.arange(17, 27)
MOUTH = np.arange(48, 68)
JAW = np.arange(0, 17)


def grayscale(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def downscale(image: np.ndarray, factor: float = 0.5) -> np.ndarray:
    """The face seen at ``factor`` of the resolution (area-downsampled, then bilinearly back to the crop size)."""
    size = image.shape[0]
    small = cv2.resize(image, (max(4, int(round(size * factor))),) * 2, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


def jpeg(image: np.ndarray, quality: int = 10) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def motion_blur(image: np.ndarray, length: int = 9, angle_degrees: float = 0.0) -> np.ndarray:
    """A linear motion blur of ``length`` pixels along ``angle_degrees``."""
    length = max(1, int(length))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_degrees, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    kernel /= max(kernel.sum(), 1e-6)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _face_height(landmarks: np.ndarray) -> float:
    return float(np.ptp(landmarks[:, 1]) + np.ptp(landmarks[:, 0])) / 2


def occlude(image: np.ndarray, landmarks: np.ndarray, part: str, colour=(40, 40, 40), pad: float = 0.12) -> np.ndarray:
    """A solid bar over the ``part`` ('eyes': both eyes and brows' lower half, 'mouth'), padded by ``pad`` x face size."""
    points = {"eyes": landmarks[EYES], "mouth": landmarks[MOUTH]}.get(part)
    if points is None:
        raise ValueError(f"occlude: part must be 'eyes' or 'mouth', got {part!r}")
    margin = pad * _face_height(landmarks)
    x0, y0 = np.floor(points.min(0) - margin).astype(int)
    x1, y1 = np.ceil(points.max(0) + margin).astype(int)
    out = image.copy()
    size = image.shape[0]
    out[max(y0, 0) : max(min(y1, size), 0), max(x0, 0) : max(min(x1, size), 0)] = colour
    return out


def face_mask(landmarks: np.ndarray, size: int, forehead: float = 0.35) -> np.ndarray:
    """(S, S) bool: the face and forehead (hull of jaw and brows, the brows lifted by ``forehead`` x face height)."""
    brows = landmarks[BROWS].copy()
    up = landmarks[BROWS].mean(0) - landmarks[JAW].mean(0)  # chin -> brow direction (works for any roll)
    up /= max(np.linalg.norm(up), 1e-6)
    brows += up * forehead * _face_height(landmarks)
    hull = cv2.convexHull(np.concatenate([landmarks[JAW], brows]).astype(np.float32)).astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def busy_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A cluttered backdrop: random coloured rectangles, lines and noise."""
    out = np.full((size, size, 3), rng.integers(0, 256, 3), np.uint8)
    for _ in range(int(rng.integers(6, 14))):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 10, size // 2, 2)
        cv2.rectangle(out, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    for _ in range(int(rng.integers(3, 8))):
        p, q = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(
            out,
            (int(p[0]), int(p[1])),
            (int(q[0]), int(q[1])),
            tuple(int(c) for c in rng.integers(0, 256, 3)),
            int(rng.integers(1, 5)),
        )
    noise = rng.normal(0, 12, out.shape)
    return np.clip(out + noise, 0, 255).astype(np.uint8)


def replace_background(image: np.ndarray, landmarks: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Everything outside :func:`face_mask` taken from ``background`` (S, S, 3), with a 3-pixel soft edge."""
    mask = face_mask(landmarks, image.shape[0]).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (7, 7), 1.5)[..., None]
    return np.clip(np.rint(image * mask + background * (1 - mask)), 0, 255).astype(np.uint8)


def cut_forehead(image: np.ndarray, landmarks: np.ndarray, above_brows: float = 0.0, fill=(0, 0, 0)) -> np.ndarray:
    """The picture ends at the forehead: everything more than ``above_brows`` x face height above the highest brow
    point (towards the top of the head, in the crop's own up direction) becomes ``fill`` (a frame border)."""
    up = landmarks[BROWS].mean(0) - landmarks[JAW].mean(0)
    up /= max(np.linalg.norm(up), 1e-6)
    brow_top = float((landmarks[BROWS] @ up).max()) + above_brows * _face_height(landmarks)
    size = image.shape[0]
    ys, xs = np.mgrid[0:size, 0:size]
    along = xs * up[0] + ys * up[1]
    out = image.copy()
    out[along > brow_top] = fill
    return out


# The robustness table of `main.py eval`: fixed settings, deterministic per face index.
ROBUSTNESS_CONDITIONS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]] = {
    "clean": lambda img, lm, rng: img,
    "grayscale": lambda img, lm, rng: grayscale(img),
    "half resolution": lambda img, lm, rng: downscale(img, 0.5),
    "JPEG q10": lambda img, lm, rng: jpeg(img, 10),
    "motion blur 9 px": lambda img, lm, rng: motion_blur(img, 9, rng.uniform(0, 180)),
    "occluder over eyes": lambda img, lm, rng: occlude(img, lm, "eyes"),
    "occluder over mouth": lambda img, lm, rng: occlude(img, lm, "mouth"),
    "background replaced": lambda img, lm, rng: replace_background(img, lm, busy_background(img.shape[0], rng)),
    "cut at the forehead": lambda img, lm, rng: cut_forehead(img, lm),
}


def corrupt_crops(crops: np.ndarray, landmarks_crop: np.ndarray, condition: str, seed: int = 0) -> np.ndarray:
    """(N, S, S, 3) crops under one named condition of :data:`ROBUSTNESS_CONDITIONS` (deterministic in seed)."""
    if condition not in ROBUSTNESS_CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of: {', '.join(ROBUSTNESS_CONDITIONS)}")
    function = ROBUSTNESS_CONDITIONS[condition]
    return np.stack([function(c, lm, np.random.default_rng([seed, i])) for i, (c, lm) in enumerate(zip(crops, landmarks_crop))])


def random_context(
    image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, probability: dict[str, float]
) -> np.ndarray:
    """Training-time draws of the same changes; ``probability`` maps a kind ('downscale', 'jpeg', 'motion_blur',
    'occlude_part', 'background', 'forehead') to its chance. Draw order is fixed, so batches stay reproducible."""
    out = image
    if rng.random() < probability.get("background", 0.0):
        out = replace_background(out, landmarks, busy_background(out.shape[0], rng))
    if rng.random() < probability.get("forehead", 0.0):
        out = cut_forehead(
            out, landmarks, rng.uniform(-0.03, 0.15), tuple(int(c) for c in rng.integers(0, 256, 3) * (rng.random() < 0.5))
        )
    if rng.random() < probability.get("occlude_part", 0.0):
        out = occlude(
            out,
            landmarks,
            "eyes" if rng.random() < 0.5 else "mouth",
            tuple(int(c) for c in rng.integers(0, 256, 3)),
            rng.uniform(0.05, 0.2),
        )
    if rng.random() < probability.get("motion_blur", 0.0):
        out = motion_blur(out, int(rng.integers(3, 12)), rng.uniform(0, 180))
    if rng.random() < probability.get("downscale", 0.0):
        out = downscale(out, rng.uniform(0.3, 0.7))
    if rng.random() < probability.get("jpeg", 0.0):
        out = jpeg(out, int(rng.integers(5, 40)))
    return out
