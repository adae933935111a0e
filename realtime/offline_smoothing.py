"""Fixed-lag, two-sided smoothing for processing files (``main.py video``): zero lag, outputs a few frames late.

A causal filter cannot remove the network's frame-to-frame noise without lagging behind a moving head
(:mod:`realtime.smoothing`). A video file is not live, so ``video`` may hold each frame back ``lag_frames``
frames and smooth frame ``t`` with the same track's frames ``t - L .. t + L``:

- each face's parameters are split like the causal smoother's (:func:`realtime.smoothing.pose_to_vector`:
  quaternion on the track's hemisphere, the image position of a pivot on the face over the track's first box
  side, log scale, stretch; identity and expression over ``ParamStats.std``);
- every component is fitted by a weighted least-squares polynomial in time over the window (degree 2 by
  default: a Savitzky-Golay filter where frames are evenly spaced), evaluated at ``t``. A degree-2 fit
  reproduces constant velocity and constant acceleration exactly, so a head that moves smoothly is followed
  with no lag; the fit's own weights are computed from the frames' timestamps, so a skipped frame or an
  uneven frame rate is handled;
- a *segment* is a run of frames in which the track is present in every frame (as the causal smoother, which
  forgets a track the first frame it is missing): windows are cut at a segment's ends, so a track never borrows
  frames across a gap; at a track's start and at the end of the source they are asymmetric (the degree lowered
  when fewer than ``degree + 1`` frames exist), and before the end of a track that was *lost* symmetric (the
  last outputs of a face leaving or being hidden are its worst; an asymmetric fit let them pull the frames
  before it: ``OfflineSmoothingOptions.edges``);
- the pose is composed back with each frame's own crop box and the faces rebuilt from the smoothed parameters
  by :meth:`realtime.pipeline.FacePipeline.faces_from_params` (landmarks, angles, mesh, blendshapes), so
  records and drawings agree. The tracker's crop boxes never see the smoothed values (it follows the raw
  landmarks), so tracking is the same whatever the smoothing.

Frames come out in order, each with its own results, as soon as every face in it has ``L`` later frames or its
segment has ended (a frame with no face, or whose tracks all ended, waits for nothing but the frames before it);
:meth:`FixedLagSmoother.flush` returns the rest (end of video, Ctrl-C).

Layers: :class:`FixedLagParamSmoother` works on parameter arrays (no pipeline; tests drive it with synthetic
poses); :class:`FixedLagSmoother` puts it behind a :class:`~realtime.pipeline.FacePipeline`'s per-frame
results and is what ``process_video`` and ``bench --tracking`` use.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from drtn.crop import CROP_SIZE
from drtn.params import EXP_SLICE, ID_SLICE, NUM_PARAMS, ParamStats
from realtime.smoothing import POSE_VECTOR_SIZE, OfflineSmoothingOptions, pose_to_vector, vector_to_pose

_SHAPE_SLICES = (ID_SLICE, EXP_SLICE)


def local_polynomial_weights(offsets_s: np.ndarray, order: int, kernel: str, half_width_s: float) -> np.ndarray:
    """Weights ``h`` such that ``h @ y`` is the weighted least-squares polynomial fit of ``y`` evaluated at 0.

    Args:
        offsets_s: (n,) sample times minus the evaluation time, seconds (0 is among them).
        order: polynomial degree; lowered to ``n - 1`` when there are fewer samples.
        kernel: ``uniform``, ``tricube`` or ``gaussian`` (see :class:`OfflineSmoothingOptions`).
        half_width_s: the kernel's scale, seconds: the tricube weight reaches 0 there (the smoother passes one
            frame beyond the window, so the window's outermost frames keep a small weight).
    Returns:
        (n,) float64 weights summing to 1 (a fit reproduces constants).
    """
    offsets = np.asarray(offsets_s, dtype=np.float64).reshape(-1)
    count = len(offsets)
    if count == 1:
        return np.ones(1)
    order = min(int(order), count - 1)
    u = offsets / max(half_width_s, 1e-9)  # in kernel widths: a well-conditioned design matrix
    if kernel == "uniform":
        weights = np.ones(count)
    elif kernel == "tricube":
        weights = (1.0 - np.clip(np.abs(u), 0.0, 1.0) ** 3) ** 3
    elif kernel == "gaussian":
        weights = np.exp(-0.5 * (u / 0.5) ** 2)  # sigma: half the kernel's scale
    else:
        raise ValueError(f"kernel: expected uniform, tricube or gaussian, got {kernel!r}")
    design = u[:, None] ** np.arange(order + 1)[None, :]  # (n, order + 1)
    weighted = design * weights[:, None]
    # the first row of (A^T W A)^-1 A^T W: the fit's value at u = 0
    solution = np.linalg.lstsq(design.T @ weighted, weighted.T, rcond=None)[0]
    return solution[0]


@dataclass
class _Segment:
    """A run of consecutive frames of one track: per frame its sequence number, time and component vector."""

    track_id: int
    reference_size_px: float
    first_sequence: int
    times_s: list[float] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)  # (14 + 50,) each
    closed: bool = False
    lost: bool = False  # closed because the track was missing from a frame (not by the end of the source)

    @property
    def last_sequence(self) -> int:
        return self.first_sequence + len(self.vectors) - 1

    def trim_before(self, sequence: int) -> None:
        """Forget the frames before ``sequence`` (no longer in any window)."""
        drop = min(max(sequence - self.first_sequence, 0), len(self.vectors) - 1)
        if drop > 0:
            del self.times_s[:drop], self.vectors[:drop]
            self.first_sequence += drop


@dataclass
class _PendingFrame:
    sequence: int
    faces: list[tuple[_Segment, np.ndarray]]  # (segment, roi_box (4,)) per face
    token: object


class FixedLagParamSmoother:
    """Two-sided smoothing of per-frame face parameters, ``options.lag_frames`` frames late (module docstring).

    Args:
        options: window, degrees, kernel.
        stats: parameter statistics; their std normalises identity and expression.
        crop_size: the crop size the parameters refer to.
        pivot_model: (3,) the model-space pivot whose image position is smoothed as the translation (the pipeline
            passes the mean face's landmark centroid, like the causal smoother).
    """

    def __init__(
        self,
        options: OfflineSmoothingOptions,
        stats: ParamStats,
        crop_size: int = CROP_SIZE,
        pivot_model: np.ndarray | None = None,
    ):
        self.options = options
        self.crop_size = int(crop_size)
        self._pivot = np.zeros(3) if pivot_model is None else np.asarray(pivot_model, dtype=np.float64).reshape(3)
        self._shape_std = np.asarray(stats.std, dtype=np.float64).reshape(-1)
        self.reset()

    def reset(self) -> None:
        """Forget everything, the frames not returned yet included (use :meth:`flush` first to keep them)."""
        self._sequence = 0
        self._last_time_s: float | None = None
        self._open: dict[int, _Segment] = {}
        self._pending: deque[_PendingFrame] = deque()

    @property
    def pending_frames(self) -> int:
        """Frames pushed and not yet returned."""
        return len(self._pending)

    def push(self, track_ids, params: np.ndarray, roi_boxes: np.ndarray, timestamp_ms: float, token=None) -> list:
        """Add one frame's faces; return the frames now final, oldest first.

        Args:
            track_ids: (N,) ints, one per face (each id at most once).
            params: (N, 62) de-normalised unsmoothed parameters, each relative to its ``roi_boxes`` row.
            roi_boxes: (N, 4) crop boxes ``(x0, y0, x1, y1)``, image pixels.
            timestamp_ms: the frame's time; must increase from frame to frame.
            token: anything; returned with the frame (e.g. the frame and its result).
        Returns:
            ``[(token, smoothed params (N_k, 62) float32 in that frame's face order), ...]``.
        Raises:
            ValueError: mismatched lengths, a repeated id, or a timestamp not above the last one.
        """
        params = np.asarray(params, dtype=np.float64).reshape(-1, NUM_PARAMS)
        roi_boxes = np.asarray(roi_boxes, dtype=np.float64).reshape(-1, 4)
        track_ids = [int(t) for t in track_ids]
        if len(roi_boxes) != len(params) or len(track_ids) != len(params):
            raise ValueError(
                f"FixedLagParamSmoother.push: got {len(track_ids)} ids, {len(params)} params, {len(roi_boxes)} boxes"
            )
        if len(set(track_ids)) != len(track_ids):
            raise ValueError(f"FixedLagParamSmoother.push: track ids repeat within a frame: {track_ids}")
        time_s = float(timestamp_ms) / 1000.0
        if self._last_time_s is not None and not time_s > self._last_time_s:
            raise ValueError(f"FixedLagParamSmoother.push: timestamps must increase, got {timestamp_ms} ms after "
                             f"{self._last_time_s * 1000.0} ms")  # fmt: skip
        self._last_time_s = time_s
        sequence = self._sequence
        self._sequence += 1
        for track_id in list(self._open):  # a track missing from this frame: its segment ends
            if track_id not in track_ids:
                segment = self._open.pop(track_id)
                segment.closed = segment.lost = True
        faces = []
        for track_id, face, box in zip(track_ids, params, roi_boxes):
            segment = self._open.get(track_id)
            if segment is None:
                segment = self._open[track_id] = _Segment(track_id, max(float(box[2] - box[0]), 1.0), sequence)
            previous = segment.vectors[-1][:4] if segment.vectors else None
            pose = pose_to_vector(face[:12], box, self._pivot, segment.reference_size_px, previous, self.crop_size)
            shape = [face[part] / self._shape_std[part] for part in _SHAPE_SLICES]
            segment.times_s.append(time_s)
            segment.vectors.append(np.concatenate([pose, *shape]))
            faces.append((segment, box))
        self._pending.append(_PendingFrame(sequence, faces, token))
        return self._ready(final=False)

    def flush(self) -> list:
        """Every frame not returned yet (windows cut at the last frame), as :meth:`push` returns them."""
        for segment in self._open.values():
            segment.closed = True
        self._open.clear()
        return self._ready(final=True)

    def _ready(self, final: bool) -> list:
        lag = self.options.lag_frames
        out = []
        while self._pending:
            frame = self._pending[0]
            if not final and not all(
                segment.closed or segment.last_sequence >= frame.sequence + lag for segment, _ in frame.faces
            ):
                break
            self._pending.popleft()
            out.append((frame.token, self._smooth_frame(frame)))
        oldest = self._pending[0].sequence if self._pending else self._sequence
        for segment in self._open.values():
            segment.trim_before(oldest - lag)
        return out

    def _smooth_frame(self, frame: _PendingFrame) -> np.ndarray:
        options = self.options
        lag = options.lag_frames
        out = np.empty((len(frame.faces), NUM_PARAMS), np.float64)
        for row, (segment, box) in enumerate(frame.faces):
            index = frame.sequence - segment.first_sequence
            start, stop = max(index - lag, 0), min(index + lag + 1, len(segment.vectors))
            times = np.asarray(segment.times_s[start:stop])
            values = np.stack(segment.vectors[start:stop])
            offsets = times - segment.times_s[index]
            # the kernel's scale: one frame beyond the full window's half width, at the track's frame rate
            half_width = (lag + 1) * float(np.median(np.diff(times))) if len(offsets) > 1 else 1.0
            if options.edges == "symmetric" or (options.edges == "symmetric-lost" and segment.lost):
                # as many frames after as before: near the end of a lost track (a face going out of view or
                # behind another, whose last outputs are the worst) the last frames pull no earlier frame
                after = stop - 1 - index
                if after < lag:
                    keep = slice(max(index - start - after, 0), None)
                    times, values, offsets = times[keep], values[keep], offsets[keep]
                if options.edges == "symmetric" and index - start < lag:
                    keep = slice(None, 2 * (index - start) + 1)
                    times, values, offsets = times[keep], values[keep], offsets[keep]
            smoothed = np.empty(values.shape[1])
            pose_weights = local_polynomial_weights(offsets, options.pose_order, options.kernel, half_width)
            smoothed[:POSE_VECTOR_SIZE] = pose_weights @ values[:, :POSE_VECTOR_SIZE]
            if options.shape_order == options.pose_order:
                shape_weights = pose_weights
            else:
                shape_weights = local_polynomial_weights(offsets, options.shape_order, options.kernel, half_width)
            smoothed[POSE_VECTOR_SIZE:] = shape_weights @ values[:, POSE_VECTOR_SIZE:]
            out[row, :12] = vector_to_pose(smoothed[:POSE_VECTOR_SIZE], box, self._pivot, segment.reference_size_px,
                                           self.crop_size)  # fmt: skip
            column = POSE_VECTOR_SIZE
            for part in _SHAPE_SLICES:
                width = part.stop - part.start
                out[row, part] = smoothed[column : column + width] * self._shape_std[part]
                column += width
        return out.astype(np.float32)


class FixedLagSmoother:
    """A VIDEO-mode :class:`~realtime.pipeline.FacePipeline`'s results, smoothed two-sided and returned late.

    ``push(frame, result)`` after each ``pipeline.process(frame)``; it returns ``[(frame, result), ...]``: the
    frames now final, in order, each with its faces rebuilt from the smoothed parameters
    (:meth:`FacePipeline.faces_from_params`; crop box, track id, detection score and presence as reported).
    ``flush()`` returns the rest (end of the source, a stop). The pipeline must not smooth itself (its
    smoothing mode ``"offline"``, see :func:`for_pipeline`).

    Args:
        pipeline: the pipeline whose results are pushed (its morphable model, crop size, options).
        options: window settings (default the pipeline's ``options.smoothing.offline``).
    """

    def __init__(self, pipeline, options: OfflineSmoothingOptions | None = None):
        self.pipeline = pipeline
        self.options = options or pipeline.options.smoothing.offline
        self.params = FixedLagParamSmoother(
            self.options,
            pipeline.morphable.stats,
            pipeline.crop_size,
            pivot_model=pipeline.morphable.sparse.mean.reshape(-1, 3).mean(axis=0),
        )

    @classmethod
    def for_pipeline(cls, pipeline) -> "FixedLagSmoother | None":
        """The smoother ``pipeline``'s options ask for (``smoothing.mode == "offline"`` and on), else None
        (also for objects that are not a pipeline)."""
        options = getattr(getattr(pipeline, "options", None), "smoothing", None)
        if options is None or not getattr(options, "offline_enabled", False):
            return None
        return cls(pipeline, options.offline)

    @property
    def pending_frames(self) -> int:
        return self.params.pending_frames

    def push(self, frame, result) -> list:
        """Add one frame (a :class:`realtime.sources.Frame` or anything) and its ``FrameResult``."""
        faces = result.faces
        return self._rebuild(
            self.params.push(
                [f.track_id for f in faces],
                np.stack([f.params for f in faces]) if faces else np.zeros((0, NUM_PARAMS)),
                np.stack([f.roi_box for f in faces]) if faces else np.zeros((0, 4)),
                result.timestamp_ms,
                token=(frame, result),
            )
        )

    def flush(self) -> list:
        return self._rebuild(self.params.flush())

    def reset(self) -> None:
        self.params.reset()

    def _rebuild(self, ready) -> list:
        out = []
        for (frame, result), params in ready:
            if not result.faces:
                out.append((frame, result))
                continue
            tick = time.perf_counter()
            faces = self.pipeline.faces_from_params(
                [f.track_id for f in result.faces],
                params,
                np.stack([f.roi_box for f in result.faces]),
                [f.detection_score for f in result.faces],
                [f.presence for f in result.faces],
            )
            timings = dict(result.timings_ms)
            timings["smooth"] = timings.get("smooth", 0.0) + (time.perf_counter() - tick) * 1000
            out.append((frame, replace(result, faces=faces, timings_ms=timings)))
        return out
