"""Causal temporal smoothing of face parameters, tuned for no lag on moving heads.

The 62 parameters are relative to each frame's crop box, and that box moves every frame, so raw pose values
jump even when the face is still. :class:`FaceSmoother` therefore filters the pose in *image* space (the one
crop<->image conversion is ``drtn.crop.pose_crop_to_image``), split into parts that filter well:

- rotation as a unit quaternion (sign kept on the filter's hemisphere, renormalised after filtering),
- translation: the image position of a pivot on the face (the mean face's landmark centroid, not the model
  origin, which lies far behind the face: the network's rotation and origin-translation errors largely cancel
  on the face, so filtering them apart about the origin added jitter), divided by the crop-box side at the
  start of the track,
- log of the image-space scale,
- the small symmetric stretch that the network's ``s*R`` has beyond a scaled rotation (polar decomposition).

The pose parts go through a :class:`HeadMotionFilter`: a constant-velocity (alpha-beta) filter, so a head
moving at a steady speed is followed without lag, whose cutoff rises with the head's own speed
(``min_cutoff + beta * speed``; speed = translation in crop-box sides per second + rotation in radians per
second, read from the filter's velocity state, so noise does not open it). Identity and expression
coefficients, divided by their dataset standard deviation (``ParamStats.std``), go through One-Euro filters
(Casiez et al., CHI 2012). Cutoffs in Hz.

Measured on the tracking benchmark's moving faces (``main.py bench --tracking``; docs/realtime.md): the
defaults keep the landmark NME within 0.1 points of unsmoothed output at every speed and cut the jitter most
where the head is slow; a One-Euro filter on the pose (the former default) doubled the NME of moving faces.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace

import numpy as np

from drtn.configs import check_known_keys
from drtn.crop import CROP_SIZE, image_to_crop_affine, pose_crop_to_image, pose_image_to_crop
from drtn.params import EXP_SLICE, ID_SLICE, NUM_PARAMS, ParamStats, quaternion_to_rotation, rotation_to_quaternion


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
        for name in ("min_cutoff", "beta", "d_cutoff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"OneEuroConfig.{name}: expected a finite number, got {value!r}")
        for name in ("min_cutoff", "d_cutoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"OneEuroConfig.{name}: expected a positive frequency in Hz, got {getattr(self, name)}")
        if self.beta < 0:
            raise ValueError(f"OneEuroConfig.beta: expected >= 0, got {self.beta}")


@dataclass(frozen=True)
class MotionFilterConfig:
    """:class:`HeadMotionFilter` settings for one pose part.

    Attributes:
        min_cutoff: cutoff frequency of a still head, Hz; lower = smoother.
        beta: cutoff increase per unit of head speed (crop-box sides/s + rad/s), Hz; higher = follows
            accelerations sooner.
    """

    min_cutoff: float = 4.0
    beta: float = 10.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"MotionFilterConfig.{name}: expected a finite number, got {value!r}")
        if not self.min_cutoff > 0:
            raise ValueError(f"MotionFilterConfig.min_cutoff: expected a positive frequency in Hz, got {self.min_cutoff}")
        if self.beta < 0:
            raise ValueError(f"MotionFilterConfig.beta: expected >= 0, got {self.beta}")


POSE_GROUPS = ("rotation", "translation", "scale", "stretch")
SMOOTHING_MODES = ("causal", "offline")
KERNELS = ("uniform", "tricube", "gaussian")
EDGE_MODES = ("asymmetric", "symmetric", "symmetric-lost")


@dataclass(frozen=True)
class OfflineSmoothingOptions:
    """The fixed-lag, two-sided smoother of :mod:`realtime.offline_smoothing` (``video``'s default).

    Each frame's output is a weighted least-squares polynomial fit over the same track's frames ``t - lag_frames
    .. t + lag_frames`` (fewer at a track's ends and the video's end), evaluated at ``t``: a polynomial of degree
    2 follows constant velocity and constant acceleration with no lag. Outputs come ``lag_frames`` frames late.

    Attributes:
        lag_frames: half-width of the window, frames (the output delay).
        pose_order: polynomial degree for the pose parts (rotation, translation, scale, stretch).
        shape_order: polynomial degree for identity and expression (divided by ``ParamStats.std``).
        kernel: weights over the window by distance from ``t``: ``uniform`` (Savitzky-Golay), ``tricube``
            (LOESS) or ``gaussian`` (sigma = half the window).
        edges: ``asymmetric``: near a track's ends the window holds what there is on each side (up to
            ``lag_frames``); ``symmetric``: as many frames after as before (so a track's first and last frames
            are passed as they are); ``symmetric-lost`` (default): symmetric only before the end of a track that
            was lost (a face leaving or hidden: its last outputs are its worst, and an asymmetric fit let them
            pull the frames before), asymmetric at a track's start and at the end of the source.

    Defaults tuned on the tracking benchmark's scene seeds 1 and 2 (docs/realtime.md, "Offline smoothing").
    """

    lag_frames: int = 8
    pose_order: int = 2
    shape_order: int = 2
    kernel: str = "tricube"
    edges: str = "symmetric-lost"

    def __post_init__(self) -> None:
        for name in ("lag_frames", "pose_order", "shape_order"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"OfflineSmoothingOptions.{name}: expected an integer >= 0, got {value!r}")
        if self.lag_frames > 60:
            raise ValueError(f"OfflineSmoothingOptions.lag_frames: expected at most 60 frames, got {self.lag_frames}")
        if self.kernel not in KERNELS:
            raise ValueError(f"OfflineSmoothingOptions.kernel: expected one of {KERNELS}, got {self.kernel!r}")
        if self.edges not in EDGE_MODES:
            raise ValueError(f"OfflineSmoothingOptions.edges: expected one of {EDGE_MODES}, got {self.edges!r}")


@dataclass(frozen=True)
class SmoothingOptions:
    """Per-group filter settings for :class:`FaceSmoother`; ``enabled=False`` passes parameters through.

    The defaults won the tracking benchmark's moving faces (``main.py bench --tracking``; tuned on another
    seed's scenes, docs/realtime.md): rotation, the noisiest part, is smoothed hardest and opened least by
    speed (beta 3); translation and scale follow the head closely.

    ``mode``: ``"causal"`` (the default; ``live``, the API) smooths each frame as it is processed, with the
    filters below. ``"offline"`` (``video``'s default) leaves :meth:`FacePipeline.process`'s results unsmoothed:
    a :class:`realtime.offline_smoothing.FixedLagSmoother` (which ``realtime.video.process_video`` and the
    tracking benchmark put behind the pipeline) smooths them ``offline.lag_frames`` frames late, two-sided.
    Not allowed in LIVE_STREAM mode.
    """

    enabled: bool = True
    mode: str = "causal"
    rotation: MotionFilterConfig = field(default_factory=lambda: MotionFilterConfig(min_cutoff=2.0, beta=3.0))
    translation: MotionFilterConfig = field(default_factory=lambda: MotionFilterConfig(min_cutoff=4.0, beta=20.0))
    scale: MotionFilterConfig = field(default_factory=lambda: MotionFilterConfig(min_cutoff=4.0, beta=10.0))
    stretch: MotionFilterConfig = field(default_factory=lambda: MotionFilterConfig(min_cutoff=4.0, beta=10.0))
    identity: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=0.3, beta=0.5))
    expression: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=2.0, beta=1.0))
    offline: OfflineSmoothingOptions = field(default_factory=OfflineSmoothingOptions)

    def __post_init__(self) -> None:
        if self.mode not in SMOOTHING_MODES:
            raise ValueError(f"SmoothingOptions.mode: expected one of {SMOOTHING_MODES}, got {self.mode!r}")

    @property
    def causal(self) -> bool:
        """Whether :class:`FaceSmoother` smooths in the pipeline (on, ``mode="causal"``)."""
        return self.enabled and self.mode == "causal"

    @property
    def offline_enabled(self) -> bool:
        """Whether a :class:`realtime.offline_smoothing.FixedLagSmoother` smooths the results (on, ``mode="offline"``)."""
        return self.enabled and self.mode == "offline"

    @classmethod
    def from_dict(cls, values: dict) -> "SmoothingOptions":
        """Build from a dict (group values may be dicts); an unknown key raises ``ValueError``."""
        check_known_keys(cls, values)
        out = {}
        for key, value in values.items():
            if key not in ("enabled", "mode") and isinstance(value, dict):
                kind = (
                    MotionFilterConfig if key in POSE_GROUPS else OfflineSmoothingOptions if key == "offline" else OneEuroConfig
                )
                check_known_keys(kind, value, owner=f"SmoothingOptions.{key}")
                value = kind(**value)
            out[key] = value
        return cls(**out)

    def with_pose(self, config: MotionFilterConfig) -> "SmoothingOptions":
        """The same options with ``config`` for every pose part (rotation, translation, scale, stretch)."""
        return replace(self, **{group: config for group in POSE_GROUPS})


class HeadMotionFilter:
    """Causal constant-velocity (alpha-beta) filter over a vector, its cutoff opened by the head's speed.

    Per sample: predict ``x + v * dt``; correct by ``a * residual`` (``a`` the first-order gain of the cutoff
    ``min_cutoff + beta * speed``) and the velocity by ``a^2 / (2 - a) * residual / dt`` (critically damped).
    At a constant velocity the output has no lag. The first two calls return their input (the second sets the
    velocity).

    Args:
        min_cutoff, beta: (D,) per element (see :class:`MotionFilterConfig`).
    """

    def __init__(self, min_cutoff: np.ndarray, beta: np.ndarray):
        self.min_cutoff = np.asarray(min_cutoff, dtype=np.float64)
        self.beta = np.asarray(beta, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        self.value: np.ndarray | None = None
        self.velocity: np.ndarray | None = None
        self._time_s: float | None = None
        self._samples = 0

    def __call__(self, values: np.ndarray, timestamp_s: float, speed: float) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        if self.value is None:
            self.value, self.velocity, self._time_s, self._samples = x.copy(), np.zeros_like(x), float(timestamp_s), 1
            return x.copy()
        dt = float(timestamp_s) - self._time_s
        if not dt > 0:
            raise ValueError(f"HeadMotionFilter: timestamps must increase, got {timestamp_s} s after {self._time_s} s")
        if self._samples == 1:  # the second sample: start from its velocity (no start-up lag on a moving head)
            self.velocity = (x - self.value) / dt
            self.value, self._time_s, self._samples = x.copy(), float(timestamp_s), 2
            return x.copy()
        gain = OneEuroFilter._alpha(self.min_cutoff + self.beta * speed, dt)
        predicted = self.value + self.velocity * dt
        residual = x - predicted
        self.value = predicted + gain * residual
        self.velocity = self.velocity + gain * gain / (2.0 - gain) * residual / dt
        self._time_s = float(timestamp_s)
        return self.value.copy()


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


_FLIP_Y = np.diag([1.0, -1.0, 1.0])  # image axes (y down) -> the model frame's axes (y up)


def decompose_pose(pose: np.ndarray, roi_box: np.ndarray, crop_size: int = CROP_SIZE) -> ImagePose:
    """``[s*R | t]`` (3, 4) relative to ``roi_box`` -> its :class:`ImagePose` (exact; no information lost).

    The image-frame pose is ``drtn.crop.pose_crop_to_image``; its linear part, in the model frame's axes, is
    split by polar decomposition into the nearest rotation and a symmetric stretch.
    """
    image_pose = pose_crop_to_image(np.asarray(pose, dtype=np.float64).reshape(3, 4), roi_box, crop_size)
    linear = _FLIP_Y @ image_pose[:, :3]
    u, _, vt = np.linalg.svd(linear)
    if np.linalg.det(u @ vt) < 0:
        u[:, 2] = -u[:, 2]
    rotation = u @ vt
    stretch = rotation.T @ linear
    scale = float(np.trace(stretch) / 3.0)
    return ImagePose(scale, rotation, stretch / scale, image_pose[:, 3].copy())


def compose_pose(image_pose: ImagePose, roi_box: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """Inverse of :func:`decompose_pose`: the (3, 4) pose relative to ``roi_box``."""
    linear = _FLIP_Y @ (image_pose.scale_px * image_pose.rotation @ image_pose.stretch)
    pose_image = np.concatenate([linear, np.asarray(image_pose.translation_px, dtype=np.float64).reshape(3, 1)], axis=1)
    return pose_image_to_crop(pose_image, image_to_crop_affine(roi_box, crop_size), crop_size)


_UPPER = np.triu_indices(3)
_ROTATION, _TRANSLATION, _SCALE, _STRETCH = slice(0, 4), slice(4, 7), slice(7, 8), slice(8, 14)
POSE_VECTOR_SIZE = 14  # 4 quaternion + 3 pivot position + 1 log scale + 6 stretch (upper triangle)


def pose_to_vector(
    pose: np.ndarray,
    roi_box: np.ndarray,
    pivot_model: np.ndarray,
    reference_size_px: float,
    previous_quaternion: np.ndarray | None = None,
    crop_size: int = CROP_SIZE,
) -> np.ndarray:
    """One face's pose as the (14,) vector the smoothers filter (see the module docstring).

    Args:
        pose: (12,) or (3, 4) ``[s*R | t]`` relative to ``roi_box`` (the parameters' first 12).
        roi_box: (4,) ``(x0, y0, x1, y1)`` crop box, image pixels.
        pivot_model: (3,) model-space point whose image position is the translation.
        reference_size_px: the pivot position is divided by it (the track's first box side).
        previous_quaternion: (4,) the track's previous rotation; the quaternion is put on its hemisphere
            (``q`` and ``-q`` are the same rotation).
    Returns:
        (14,) float64: unit quaternion (w, x, y, z), pivot (x, y, depth) / ``reference_size_px``, log scale
        (pixels per model unit), the stretch's upper triangle.
    """
    image_pose = decompose_pose(pose, roi_box, crop_size)
    quaternion = rotation_to_quaternion(image_pose.rotation)
    if previous_quaternion is not None and float(quaternion @ previous_quaternion) < 0:
        quaternion = -quaternion
    linear = image_pose.scale_px * image_pose.rotation @ image_pose.stretch
    pivot_px = image_pose.translation_px + _FLIP_Y @ (linear @ pivot_model)
    return np.concatenate(
        [quaternion, pivot_px / reference_size_px, [math.log(image_pose.scale_px)], image_pose.stretch[_UPPER]]
    )


def vector_to_pose(
    vector: np.ndarray, roi_box: np.ndarray, pivot_model: np.ndarray, reference_size_px: float, crop_size: int = CROP_SIZE
) -> np.ndarray:
    """Inverse of :func:`pose_to_vector` (the quaternion renormalised): the (12,) pose relative to ``roi_box``."""
    vector = np.asarray(vector, dtype=np.float64)
    stretch = np.zeros((3, 3))
    stretch[_UPPER] = vector[_STRETCH]
    stretch = stretch + np.triu(stretch, 1).T
    scale_px, rotation = math.exp(float(vector[7])), quaternion_to_rotation(vector[_ROTATION])
    image_pose = ImagePose(
        scale_px=scale_px,
        rotation=rotation,
        stretch=stretch,
        translation_px=vector[_TRANSLATION] * reference_size_px - _FLIP_Y @ (scale_px * rotation @ stretch @ pivot_model),
    )
    return compose_pose(image_pose, roi_box, crop_size).reshape(-1)


class _TrackFilter:
    """The filters of one face track."""

    def __init__(self, options: SmoothingOptions, reference_size_px: float):
        self.reference_size_px = max(reference_size_px, 1.0)
        cutoffs, betas = np.empty(14), np.empty(14)
        for part, group in zip((_ROTATION, _TRANSLATION, _SCALE, _STRETCH), POSE_GROUPS):
            cutoffs[part], betas[part] = getattr(options, group).min_cutoff, getattr(options, group).beta
        self.pose = HeadMotionFilter(cutoffs, betas)
        self.identity = OneEuroFilter(options.identity)
        self.expression = OneEuroFilter(options.expression)

    def head_speed(self) -> float:
        """Translation (crop-box sides/s, in the image plane) + rotation (~rad/s) from the velocity state."""
        velocity = self.pose.velocity
        if velocity is None:
            return 0.0
        return float(np.linalg.norm(velocity[4:6]) + 2.0 * np.linalg.norm(velocity[_ROTATION]))


class FaceSmoother:
    """Causal smoothing of the 62 parameters, one filter state per track id (see the module docstring).

    Args:
        options: filter settings; ``enabled=False`` makes :meth:`smooth` return its input.
        stats: parameter statistics; their std normalises identity and expression.
        crop_size: the crop size the parameters refer to.
        pivot_model: (3,) model-space point whose image position is filtered as the translation (the centroid
            of the mean face's 68 landmarks, ``morphable.sparse.mean.reshape(-1, 3).mean(axis=0)``); ``None``: the model
            origin.
            Rotation and translation noise of the network largely cancel on the face (a rotation error about
            the origin, which lies far from the face, comes with the translation that puts the face back), so
            filtering them apart about the origin breaks that cancellation; about the face's centroid they are
            nearly independent.
    """

    def __init__(
        self, options: SmoothingOptions, stats: ParamStats, crop_size: int = CROP_SIZE, pivot_model: np.ndarray | None = None
    ):
        self.options = options
        self.crop_size = crop_size
        self._pivot = np.zeros(3) if pivot_model is None else np.asarray(pivot_model, dtype=np.float64).reshape(3)
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
            state = self._tracks.get(int(track_id))
            if state is None:
                state = self._tracks[int(track_id)] = _TrackFilter(self.options, reference_size_px=box[2] - box[0])
            previous = state.pose.value[_ROTATION] if state.pose.value is not None else None
            vector = pose_to_vector(face[:12], box, self._pivot, state.reference_size_px, previous, self.crop_size)
            vector = state.pose(vector, time_s, state.head_speed())
            out[row, :12] = vector_to_pose(vector, box, self._pivot, state.reference_size_px, self.crop_size)
            for part, state_filter in ((ID_SLICE, state.identity), (EXP_SLICE, state.expression)):
                std = self._shape_std[part]
                out[row, part] = state_filter(face[part] / std, time_s) * std
        return out.astype(np.float32)
