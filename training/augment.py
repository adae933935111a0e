"""Training crops: the inference crop policy plus jitter, and photometric / blur / occlusion augmentation.

Crops follow :func:`drtn.crop.roi_box_from_landmarks` (what the tracker uses after the first frame), perturbed
by a random similarity (scale, shift, in-plane rotation) that covers detector boxes and the previous frame's
landmarks being a little off; a share of the crops turns by any angle, because the crop box is axis-aligned and
faces are not (tilted heads, infants lying down). Labels move exactly with the crop. Every random draw comes from a generator
seeded by ``(seed, epoch, index)``, so a batch is reproducible anywhere (exact resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from drtn import crop
from drtn.params import NUM_PARAMS
from training.corpus import Corpus
from training.corruptions import random_context
from training.geometry import pose_to_crop


@dataclass(frozen=True)
class AugmentConfig:
    size: int = crop.CROP_SIZE
    scale_jitter: float = 0.10  # ROI side x U(1 - s, 1 + s)
    shift_jitter: float = 0.07  # ROI centre + U(-s, s) x side
    rotation_degrees: float = 20.0  # in-plane, uniform +-
    rotation_probability: float = 0.5
    # any in-plane angle: faces lying down (InfAnFace test has 41 of 199 beyond 60 deg of roll) and tilted heads
    large_rotation_probability: float = 0.2
    large_rotation_degrees: float = 180.0
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    grayscale_probability: float = 0.05
    blur_probability: float = 0.2
    noise_probability: float = 0.2
    occlusion_probability: float = 0.3
    # context changes of the robustness table (training.corruptions.random_context); 0 keeps the first recipe
    context: tuple[tuple[str, float], ...] = ()
    enabled: bool = True  # False: the plain inference crop (validation)


# The robustness table's kinds of change, each drawn for a share of the training crops (second recipe).
CONTEXT_AUGMENTATION: tuple[tuple[str, float], ...] = (
    ("background", 0.12),
    ("forehead", 0.1),
    ("occlude_part", 0.12),
    ("motion_blur", 0.1),
    ("downscale", 0.15),
    ("jpeg", 0.15),
)


def sample_crop_affine(landmarks: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """2x3 canvas->crop similarity: the landmark ROI box, jittered."""
    box = crop.roi_box_from_landmarks(landmarks)
    if not config.enabled:
        return crop.image_to_crop_affine(box, config.size)
    side = (box[2] - box[0]) * rng.uniform(1 - config.scale_jitter, 1 + config.scale_jitter)
    centre = (box[:2] + box[2:]) / 2 + rng.uniform(-config.shift_jitter, config.shift_jitter, 2) * (box[2] - box[0])
    draw = rng.random()
    if draw < config.large_rotation_probability:
        angle = rng.uniform(-config.large_rotation_degrees, config.large_rotation_degrees)
    elif draw < config.large_rotation_probability + (1 - config.large_rotation_probability) * config.rotation_probability:
        angle = rng.uniform(-config.rotation_degrees, config.rotation_degrees)
    else:
        angle = 0.0
    scale = config.size / side
    # rotate about the crop centre: crop = scale * Rot(angle) (p - centre) + (size - 1) / 2
    theta = np.radians(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    linear = scale * rotation
    offset = (config.size - 1) / 2 - linear @ centre
    return np.concatenate([linear, offset[:, None]], axis=1)


def photometric(
    image: np.ndarray, rng: np.random.Generator, config: AugmentConfig, landmarks: np.ndarray | None = None
) -> np.ndarray:
    """Colour jitter, grayscale, blur, noise and random occluders on a BGR uint8 crop; with ``config.context`` and
    the crop's (68, 2) ``landmarks`` also the robustness table's changes (background, cut forehead, occluded eyes /
    mouth, motion blur, low resolution, JPEG)."""
    if config.context and landmarks is not None:
        image = random_context(image, landmarks, rng, dict(config.context))
    out = image.astype(np.float32)
    out = out * rng.uniform(1 - config.contrast, 1 + config.contrast) + rng.uniform(-1, 1) * config.brightness * 64
    gray = out.mean(axis=2, keepdims=True)
    out = gray + (out - gray) * rng.uniform(1 - config.saturation, 1 + config.saturation)
    if rng.random() < config.grayscale_probability:
        out = np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2)
    if rng.random() < config.blur_probability:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), rng.uniform(0.5, 1.8))
    if rng.random() < config.noise_probability:
        out = out + rng.normal(0, rng.uniform(2, 10), out.shape)
    if rng.random() < config.occlusion_probability:
        size = out.shape[0]
        w, h = (rng.uniform(0.15, 0.45, 2) * size).astype(int)
        x, y = rng.integers(0, size - w), rng.integers(0, size - h)
        if rng.random() < 0.5:
            out[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
        else:  # a patch of noise texture
            out[y : y + h, x : x + w] = rng.uniform(0, 255, (h, w, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Batch:
    images: np.ndarray  # (N, 3, S, S) float32, (BGR - 127.5) / 128
    params: np.ndarray  # (N, 62) de-normalised labels in each crop's model frame
    landmarks: np.ndarray  # (N, 68, 2) target landmarks in crop pixels
    crops: np.ndarray  # (N, S, S, 3) uint8 (for inspection)
    teacher_params: np.ndarray | None = None  # (N, 62) the peer's params in each crop's model frame (NaN rows: none)


def make_batch(
    corpus: Corpus, indices: np.ndarray, seed: int, epoch: int, config: AugmentConfig, keys: np.ndarray | None = None
) -> Batch:
    """Crops and exact labels for corpus rows ``indices``; deterministic in (seed, epoch, key).

    ``keys`` (default: the indices) seed each sample's augmentation, so that a row visited twice in an epoch
    gets two different crops.
    """
    keys = indices if keys is None else keys
    size = config.size
    crops = np.empty((len(indices), size, size, 3), np.uint8)
    params = np.empty((len(indices), NUM_PARAMS), np.float32)
    landmarks = np.empty((len(indices), 68, 2), np.float32)
    teacher = np.full((len(indices), NUM_PARAMS), np.nan, np.float32)
    for row, (index, key) in enumerate(zip(indices, keys)):
        rng = np.random.default_rng([seed, epoch, int(key)])
        affine = sample_crop_affine(corpus.landmarks[index], rng, config)
        image = cv2.warpAffine(
            np.asarray(corpus.canvases[index]), affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        landmarks[row] = corpus.landmarks[index] @ affine[:, :2].T + affine[:, 2]
        crops[row] = photometric(image, rng, config, landmarks[row]) if config.enabled else image
        pose = pose_to_crop(corpus.pose_canvas[index].astype(np.float64), affine, size)
        params[row, :12] = pose.reshape(12)
        params[row, 12:] = corpus.shapes[index]
        if np.isfinite(corpus.teacher_pose_canvas[index]).all():
            teacher[row, :12] = pose_to_crop(corpus.teacher_pose_canvas[index].astype(np.float64), affine, size).reshape(12)
            teacher[row, 12:] = corpus.teacher_shapes[index]
    return Batch(crop.normalize_crops(crops), params, landmarks, crops, teacher)
