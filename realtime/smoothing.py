"""Causal temporal smoothing of face parameters with the One-Euro filter (Casiez et al., CHI 2012).

The One-Euro filter is a first-order low-pass whose cutoff rises with the signal's speed: at rest it
removes jitter (cutoff ``min_cutoff``), in fast motion it follows with little lag (cutoff
``min_cutoff + beta * |speed|``). It only looks at past samples, so it adds no latency beyond its own lag.

The 62 parameters are relative to each frame's crop box, and that box moves every frame, so raw pose values
jump even when the face is still. :class:`FaceSmoother` therefore filters the pose in *image* space, in
quantities whose units do not depend on the face size, so one ``beta`` suits every face:

- rotation as a unit quaternion (sign kept on the previous sample's hemisphere, renormalised after filtering),
- translation (image position of the model origin) divided by the face size at the start of the track,
- log of the image-space scale,
- the small symmetric stretch that the network's ``s*R`` has beyond a scaled rotation (polar decomposition),
- identity and expression coefficients divided by their dataset standard deviation (``ParamStats.std``).

Speeds are in these units per second; cutoffs in Hz.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from drtn.configs import check_known_keys
from drtn.crop import CROP_SIZE, crop_to_image_affine
from drtn.params import EXP_SLICE, ID_SLICE, NUM_PARAMS, ParamStats


@dataclass(frozen=True)
class OneEuroConfig:
    """One-Euro filter settings.

    Attributes:
        min_cutoff: cutoff frequency at rest, Hz; lower = smoother and laggier when still.
        beta: cutoff increase per unit of speed (units/s); higher = less lag in fast motion.
        d_cutoff: cutoff of the low-pass on the speed estimate, Hz.
    """

    min_cutoff: float = 1.0
    beta: float = 1.0
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"OneEuroConfig.{name}: expected a positive frequency in Hz, got {getattr(self, name)}")
        if self.beta < 0:
            raise ValueError(f"OneEuroConfig.beta: expected >= 0, got {self.beta}")


@dataclass(frozen=True)
class SmoothingOptions:
    """Per-group One-Euro settings for :class:`FaceSmoother`; ``enabled=False`` passes parameters through.

    Defaults were chosen on the shared talking-head clips: still faces lose their frame-to-frame jitter, head
    turns lag by about one frame at 30 fps.
    """

    enabled: bool = True
    pose: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=1.0, beta=2.0))
    identity: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=0.3, beta=0.5))
    expression: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=2.0, beta=1.0))

    @classmethod
    def from_dict(cls, values: dict) -> "SmoothingOptions":
        """Build from a dict (group values may be dicts); an unknown key raises ``ValueError``."""
        check_known_keys(cls, values)
        out = {}
        for key, value in values.items():
            if key != "enabled" and isinstance(value, dict):
                check_known_keys(OneEuroConfig, value, owner=f"SmoothingOptions.{key}")
                value = OneEuroConfig(**value)
            out[key] = value
        return cls(**out)

    def with_all_groups(self, config: OneEuroConfig) -> "SmoothingOptions":
        """The same options with ``config`` for pose, identity and expression alike."""
        return SmoothingOptions(enabled=self.enabled, pose=config, identity=config, expression=config)


class OneEuroFilter:
    """Vectorised, causal One-Euro filter over a fixed-size vector.

    Call with ``(values (D,), timestamp_s)`` for strictly increasing timestamps; the first call returns its
    input unchanged.
    """

    def __init__(self, config: OneEuroConfig | None = None):
        self.config = config or OneEuroConfig()
        self.reset()

    def reset(self) -> None:
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None
        self._time_s: float | None = None

    @staticmethod
    def _alpha(cutoff_hz, dt_s: float):
        tau = 1.0 / (2.0 * math.pi * cutoff_hz)
        return 1.0 / (1.0 + tau / dt_s)

    def __call__(self, values: np.ndarray, timestamp_s: float) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        if self._value is None:
            self._value, self._speed, self._time_s = x.copy(), np.zeros_like(x), float(timestamp_s)
            return x.copy()
        if x.shape != self._value.shape:
            raise ValueError(f"OneEuroFilter: expected values of shape {self._value.shape}, got {x.shape}")
        dt = float(timestamp_s) - self._time_s
        if not dt > 0:
            raise ValueError(f"OneEuroFilter: timestamps must increase, got {timestamp_s} s after {self._time_s} s")
        speed = (x - self._value) / dt
        alpha_speed = self._alpha(self.config.d_cutoff, dt)
        self._speed = alpha_speed * speed + (1 - alpha_speed) * self._speed
        cutoff = self.config.min_cutoff + self.config.beta * np.abs(self._speed)
        alpha = self._alpha(cutoff, dt)
        self._value = alpha * x + (1 - alpha) * self._value
        self._time_s = float(timestamp_s)
        return self._value.copy()


# ------------------------------------------------------------------------------------------- pose <-> image
@dataclass(frozen=True)
class ImagePose:
    """A face pose in image space, split into parts that filter well.

    Attributes:
        scale_px: image pixels per model unit (mean of the linear part's stretch).
        rotation: (3, 3) orthonormal, det +1, in the model frame's axes.
        stretch: (3, 3) symmetric, trace 3: what the network's ``s*R`` has beyond a scaled rotation.
        translation_px: (3,) image position (x, y pixels) and depth of the model origin.
    """

    scale_px: float
    rotation: np.ndarray
    stretch: np.ndarray
    translation_px: np.ndarray


def _image_frame(roi_box: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis scale ``a`` (3,) and offset ``c`` (3,) with ``image = a * flip(model) + c`` (see drtn.crop).

    drtn.crop maps a model-frame point p to image pixels as
    ``x = ax * (p.x - 1) + ox``, ``y = ay * (size - p.y) + oy``, ``z = az * (p.z - 1)``.
    """
    affine = crop_to_image_affine(roi_box, crop_size)
    ax, ay = affine[0, 0], affine[1, 1]
    az = (ax + ay) / 2
    scale = np.array([ax, -ay, az])
    offset = np.array([affine[0, 2] - ax, ay * crop_size + affine[1, 2], -az])
    return scale, offset


def pose_to_image(pose: np.ndarray, roi_box: np.ndarray, crop_size: int = CROP_SIZE) -> ImagePose:
    """``[s*R | t]`` (3, 4) relative to ``roi_box`` -> its :class:`ImagePose` (exact; no information lost)."""
    pose = np.asarray(pose, dtype=np.float64).reshape(3, 4)
    linear = pose[:, :3]
    # polar decomposition linear = R @ S: R the nearest rotation, S symmetric (the network's small non-rigid part)
    u, singular, vt = np.linalg.svd(linear)
    if np.linalg.det(u @ vt) < 0:
        u[:, 2] = -u[:, 2]
    rotation = u @ vt
    stretch = rotation.T @ linear
    scale = float(np.trace(stretch) / 3.0)
    axis_scale, offset = _image_frame(roi_box, crop_size)
    return ImagePose(scale * axis_scale[2], rotation, stretch / scale, axis_scale * pose[:, 3] + offset)


def pose_from_image(image_pose: ImagePose, roi_box: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """Inverse of :func:`pose_to_image`: the (3, 4) pose relative to ``roi_box``."""
    axis_scale, offset = _image_frame(roi_box, crop_size)
    linear = (image_pose.scale_px / axis_scale[2]) * image_pose.rotation @ image_pose.stretch
    translation = (np.asarray(image_pose.translation_px) - offset) / axis_scale
    return np.concatenate([linear, translation[:, None]], axis=1)


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion ``(w, x, y, z)`` (Shepperd's method, stable for all angles)."""
    r = np.asarray(rotation, dtype=np.float64)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def quaternion_to_rotation(quaternion: np.ndarray) -> np.ndarray:
    """(4,) quaternion ``(w, x, y, z)`` (normalised here) -> (3, 3) rotation."""
    w, x, y, z = np.asarray(quaternion, dtype=np.float64) / np.linalg.norm(quaternion)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


class _TrackFilter:
    """The filters of one face track."""

    def __init__(self, options: SmoothingOptions, reference_size_px: float):
        self.reference_size_px = max(reference_size_px, 1.0)
        self.rotation = OneEuroFilter(options.pose)
        self.translation = OneEuroFilter(options.pose)
        self.log_scale = OneEuroFilter(options.pose)
        self.stretch = OneEuroFilter(options.pose)
        self.identity = OneEuroFilter(options.identity)
        self.expression = OneEuroFilter(options.expression)
        self.last_quaternion: np.ndarray | None = None


class FaceSmoother:
    """Causal One-Euro smoothing of the 62 parameters, one filter state per track id.

    Args:
        options: filter settings; ``enabled=False`` makes :meth:`smooth` return its input.
        stats: parameter statistics; their std normalises identity and expression.
        crop_size: the crop size the parameters refer to.
    """

    def __init__(self, options: SmoothingOptions, stats: ParamStats, crop_size: int = CROP_SIZE):
        self.options = options
        self.crop_size = crop_size
        self._shape_std = np.asarray(stats.std, dtype=np.float64)
        self._tracks: dict[int, _TrackFilter] = {}

    def reset(self) -> None:
        self._tracks.clear()

    def retain(self, track_ids) -> None:
        """Forget the filter state of every track not in ``track_ids``."""
        keep = set(int(t) for t in track_ids)
        for track_id in list(self._tracks):
            if track_id not in keep:
                del self._tracks[track_id]

    def smooth(self, track_ids, params: np.ndarray, roi_boxes: np.ndarray, timestamp_ms: float) -> np.ndarray:
        """Filter one frame's faces.

        Args:
            track_ids: (N,) ints, one per face.
            params: (N, 62) de-normalised parameters, each relative to its ``roi_boxes`` row.
            roi_boxes: (N, 4) crop boxes ``(x0, y0, x1, y1)``, image pixels.
            timestamp_ms: the frame's time; must increase from call to call for a given track.
        Returns:
            (N, 62) float32 smoothed parameters, still relative to ``roi_boxes``.
        """
        params = np.asarray(params, dtype=np.float64).reshape(-1, NUM_PARAMS)
        if not self.options.enabled or len(params) == 0:
            return params.astype(np.float32)
        roi_boxes = np.asarray(roi_boxes, dtype=np.float64).reshape(-1, 4)
        if len(roi_boxes) != len(params) or len(track_ids) != len(params):
            raise ValueError(f"FaceSmoother.smooth: got {len(track_ids)} ids, {len(params)} params, {len(roi_boxes)} boxes")
        time_s = timestamp_ms / 1000.0
        out = params.copy()
        for row, (track_id, face, box) in enumerate(zip(track_ids, params, roi_boxes)):
            pose = pose_to_image(face[:12], box, self.crop_size)
            state = self._tracks.get(int(track_id))
            if state is None:
                state = self._tracks[int(track_id)] = _TrackFilter(self.options, reference_size_px=box[2] - box[0])
            quaternion = rotation_to_quaternion(pose.rotation)
            if state.last_quaternion is not None and float(quaternion @ state.last_quaternion) < 0:
                quaternion = -quaternion  # q and -q are the same rotation: stay on the previous hemisphere
            quaternion = state.rotation(quaternion, time_s)
            quaternion /= np.linalg.norm(quaternion)
            state.last_quaternion = quaternion
            upper = np.triu_indices(3)
            stretch = np.zeros((3, 3))
            stretch[upper] = state.stretch(pose.stretch[upper], time_s)
            stretch = stretch + np.triu(stretch, 1).T
            smoothed = ImagePose(
                scale_px=math.exp(float(state.log_scale(np.array([math.log(pose.scale_px)]), time_s)[0])),
                rotation=quaternion_to_rotation(quaternion),
                stretch=stretch,
                translation_px=state.translation(pose.translation_px / state.reference_size_px, time_s) * state.reference_size_px,
            )
            out[row, :12] = pose_from_image(smoothed, box, self.crop_size).reshape(-1)
            for part, state_filter in ((ID_SLICE, state.identity), (EXP_SLICE, state.expression)):
                std = self._shape_std[part]
                out[row, part] = state_filter(face[part] / std, time_s) * std
        return out.astype(np.float32)
