"""The per-frame face pipeline: detect -> track/crop -> batched inference -> presence -> smooth -> reconstruct.

::

    backend = export.backends.create_backend("onnxruntime")
    with FacePipeline(backend, PipelineOptions(running_mode=RunningMode.VIDEO)) as pipeline:
        for frame in open_source("clip.mp4"):
            result = pipeline.process(frame)
            for face in result.faces:
                face.track_id, face.landmarks_2d, face.yaw ...

Running modes (MediaPipe Tasks style):

- ``IMAGE``: every call stands alone: the detector runs on every image, no tracking, no smoothing.
- ``VIDEO``: :meth:`FacePipeline.process` on frames with strictly increasing timestamps: tracking + smoothing.
- ``LIVE_STREAM``: :meth:`FacePipeline.process_async` hands frames to a worker thread that always takes the
  newest one (older waiting frames are dropped) and calls ``options.result_callback(result, frame)``.

The backend is any object with ``crop_size`` (int) and ``infer(crops_bgr (N, S, S, 3) uint8)`` returning an
object with ``params`` (N, 62) de-normalised float32 (see ``export.backends``); the pipeline never asks
which backend it holds. No face gives a :class:`FrameResult` with an empty ``faces`` list, never ``None``.
Each face carries its presence in this frame (:attr:`FaceResult.presence`); in VIDEO and LIVE_STREAM modes a
face whose presence is too low is not reported and its track ends (``PipelineOptions.presence_check``).
"""

from __future__ import annotations

import enum
import logging
import math
import numbers
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from drtn.configs import check_known_keys
from drtn.crop import crop_image, model_to_image, roi_box_from_detection, roi_box_from_landmarks
from drtn.mirror import POSE_MODES, MirrorMap, flip_crops
from drtn.morphable import MorphableModel
from drtn.params import NUM_PARAMS, pose_angles_degrees
from realtime.detector import DetectorOptions, FaceDetector
from realtime.smoothing import FaceSmoother, SmoothingOptions
from realtime.sources import Frame, to_bgr
from realtime.tracker import FaceTracker, TrackerOptions

LOGGER = logging.getLogger(__name__)

STAGES = ("detect", "track_crop", "infer", "reconstruct", "smooth")
_VERIFY_CROP_SIZE = 192  # the full-range detector's input size: the face fills it when a track is checked
PRESENCE_TILE = 128  # side of each face's tile in the presence check's mosaic, pixels


def _check_timestamp(value, name: str) -> None:
    """A timestamp must be a finite real number of milliseconds (not a string, bool, NaN or infinity)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number of milliseconds, got {value!r}")


class InferenceBackend(Protocol):
    """What the pipeline needs of a backend (``export.backends`` provides them)."""

    crop_size: int

    def infer(self, crops_bgr: np.ndarray):  # -> object with .params (N, 62) float32, de-normalised
        ...


class RunningMode(enum.Enum):
    IMAGE = "image"
    VIDEO = "video"
    LIVE_STREAM = "live_stream"


@dataclass(frozen=True)
class PipelineOptions:
    """Options of :class:`FacePipeline`.

    Attributes:
        running_mode: see the module docstring.
        assets_dir: the asset folder (``None``: ``$DRTN_ASSETS``, then the user cache; see ``drtn.assets``).
        detector, tracker, smoothing: options of the stages.
        refine_new_faces: after a detection, run the network a second time on a crop made from the first
            pass's landmarks (3DDFA_V2 does the same): detector boxes frame faces differently from landmarks.
        compute_dense: reconstruct the 4,096 dense vertices of each face (the mesh overlay needs them).
        compute_blendshapes: fill :attr:`FaceResult.blendshapes` (52 ARKit weights retargeted from the
            expression, ``realtime.blendshapes``; ~0.7 ms per frame, needs the asset folder's ICT model).
        presence_check: measure each face's presence every frame: YuNet run on the face's own crop (made from
            this frame's landmarks, all faces of the frame in one mosaic); the score of a face centred in its
            tile is the presence, 0 when none is found. In VIDEO / LIVE_STREAM mode a track whose presence is
            under ``tracker.min_presence`` ends in that frame. Off: presence is the detection score.
        flip_average: mirror-averaged inference (``drtn.mirror``): the network also sees each face's crop
            mirrored (one backend call on 2N crops) and the mirror of that prediction is averaged with the plain
            one. About 2x the network time per face; off by default (docs/STATUS.md, "Mirror-averaged inference").
        flip_pose: how the two poses are averaged with ``flip_average``: ``"linear"`` or ``"rotation"``.
        result_callback: ``(FrameResult, Frame) -> None``, required in LIVE_STREAM mode, called on the
            worker thread.
    """

    running_mode: RunningMode = RunningMode.VIDEO
    assets_dir: str | None = None
    detector: DetectorOptions = field(default_factory=DetectorOptions)
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    refine_new_faces: bool = True
    compute_dense: bool = True
    compute_blendshapes: bool = True
    presence_check: bool = True
    flip_average: bool = False
    flip_pose: str = "linear"
    result_callback: Callable[["FrameResult", Frame], None] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.running_mode, RunningMode):
            raise ValueError(f"PipelineOptions.running_mode: expected a RunningMode, got {self.running_mode!r}")
        if self.running_mode is RunningMode.LIVE_STREAM and self.result_callback is None:
            raise ValueError("PipelineOptions: LIVE_STREAM mode needs a result_callback")
        if self.running_mode is not RunningMode.LIVE_STREAM and self.result_callback is not None:
            raise ValueError(f"PipelineOptions: result_callback is only used in LIVE_STREAM mode, not {self.running_mode.name}")
        if self.running_mode is RunningMode.LIVE_STREAM and self.smoothing.offline_enabled:
            raise ValueError(
                "PipelineOptions: offline smoothing delays each result by frames still to come; "
                "LIVE_STREAM mode needs smoothing mode 'causal' (or smoothing off)"
            )
        if self.flip_pose not in POSE_MODES:
            raise ValueError(f"PipelineOptions.flip_pose: expected one of {POSE_MODES}, got {self.flip_pose!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "PipelineOptions":
        """Build from a (nested) dict; unknown keys raise ``ValueError``; ``running_mode`` may be a string."""
        check_known_keys(cls, values)
        out = dict(values)
        if isinstance(out.get("running_mode"), str):
            try:
                out["running_mode"] = RunningMode[out["running_mode"].upper()]
            except KeyError:
                raise ValueError(
                    f"PipelineOptions.running_mode: expected one of {[m.name for m in RunningMode]}, got {values['running_mode']!r}"
                ) from None
        for key, kind in (("detector", DetectorOptions), ("tracker", TrackerOptions), ("smoothing", SmoothingOptions)):
            if isinstance(out.get(key), dict):
                out[key] = kind.from_dict(out[key])
        return cls(**out)


@dataclass(frozen=True)
class FaceResult:
    """One face in one frame. Image coordinates are pixels, x right, y down.

    Attributes:
        track_id: stable id of the face across frames (VIDEO / LIVE_STREAM); per-image order in IMAGE mode.
        roi_box: (4,) float64 ``(x0, y0, x1, y1)``: the square crop the parameters refer to.
        params: (62,) float32 de-normalised (12 pose + 40 identity + 10 expression), smoothed when smoothing
            is on; the pose maps to the crop's 120x120 model frame (``drtn.crop``).
        landmarks_2d: (68, 2) float32 image pixels.
        landmarks_3d: (68, 3) float32: image x, y and depth z (same pixel scale; larger z = nearer the camera).
        yaw, pitch, roll: head pose in degrees (3DDFA convention, ``drtn.params.pose_angles_degrees``).
        vertices_image: (4096, 3) float32 dense vertices in image space like ``landmarks_3d`` (triangles:
            ``FacePipeline.dense_triangles``); (0, 3) when ``compute_dense`` is off.
        detection_score: score of the detection that started or last confirmed the track.
        presence: this frame's face confidence in [0, 1] (see :class:`PipelineOptions`); a track whose
            presence falls below ``tracker.min_presence`` ends in that frame and is not reported.
        blendshapes: the 52 ARKit blendshape weights in [0, 1] by name (``realtime.blendshapes.ARKIT_NAMES``),
            retargeted from ``params``' expression; None when ``compute_blendshapes`` is off.
    """

    track_id: int
    roi_box: np.ndarray
    params: np.ndarray
    landmarks_2d: np.ndarray
    landmarks_3d: np.ndarray
    yaw: float
    pitch: float
    roll: float
    vertices_image: np.ndarray
    detection_score: float = 0.0
    presence: float = 1.0
    blendshapes: dict[str, float] | None = None


@dataclass(frozen=True)
class FrameResult:
    """The faces of one frame.

    Attributes:
        faces: one :class:`FaceResult` per tracked face, by track id; empty when there is no face.
        timings_ms: milliseconds per stage (:data:`STAGES`) and ``total``.
        frame_index, timestamp_ms: of the processed frame.
        image_size: ``(width, height)`` of the frame.
    """

    faces: list[FaceResult]
    timings_ms: dict[str, float]
    frame_index: int = 0
    timestamp_ms: float = 0.0
    image_size: tuple[int, int] = (0, 0)


class FacePipeline:
    """Face tracking and 3D reconstruction over frames (see the module docstring).

    Args:
        backend: inference backend (``crop_size``, ``infer``); not closed by the pipeline.
        options: pipeline options.
        morphable: a loaded morphable model (default: loaded from ``options.assets_dir``).
        detector: any object with ``detect(image_bgr) -> list[Detection]`` (default: a FaceDetector of ``options.detector``: YuNet).
    """

    def __init__(
        self,
        backend: InferenceBackend,
        options: PipelineOptions | None = None,
        morphable: MorphableModel | None = None,
        detector=None,
    ):
        for attribute in ("infer", "crop_size"):
            if not hasattr(backend, attribute):
                raise ValueError(f"FacePipeline: the backend must have '{attribute}' (got {type(backend).__name__})")
        self.options = options or PipelineOptions()
        self.backend = backend
        self.crop_size = int(backend.crop_size)
        self.morphable = morphable if morphable is not None else MorphableModel.load(self.options.assets_dir)
        self._owns_detector = detector is None
        self.detector = detector if detector is not None else FaceDetector(self.options.detector, self.options.assets_dir)
        self._presence_detector = None
        if self.options.presence_check:  # its own YuNet: a low threshold (scores are the presence), no resizing
            self._presence_detector = FaceDetector(
                DetectorOptions(model="yunet", min_confidence=0.05, min_face_size_px=0.0, max_input_side_px=0),
                self.options.assets_dir,
            )
        self._mirror = MirrorMap.from_morphable(self.morphable, self.crop_size) if self.options.flip_average else None
        if self._mirror is not None and getattr(getattr(backend, "info", None), "flip_average", False):
            LOGGER.warning(
                "the model graph already averages each crop with its mirror (export --flip-average); "
                "flip_average on top of it runs the network 4 times per face"
            )
        self.tracker = FaceTracker(self.options.tracker)
        self.smoother = FaceSmoother(
            self.options.smoothing,
            self.morphable.stats,
            self.crop_size,
            pivot_model=self.morphable.sparse.mean.reshape(-1, 3).mean(axis=0),
        )
        self.retargeter = None
        if self.options.compute_blendshapes:
            from realtime.blendshapes import BlendshapeRetargeter

            self.retargeter = BlendshapeRetargeter.load(self.options.assets_dir)
        self._last_timestamp_ms: float | None = None
        self._frame_counter = 0
        self._lock = threading.Lock()  # one frame at a time through the stateful stages
        # LIVE_STREAM worker state
        self._condition = threading.Condition()
        self._pending: Frame | None = None
        self._worker: threading.Thread | None = None
        self._worker_error: BaseException | None = None
        self._closed = False
        self.dropped_frames = 0

    # ------------------------------------------------------------------------------------------ public API
    @property
    def dense_triangles(self) -> np.ndarray:
        """(T, 3) int32 triangles over :attr:`FaceResult.vertices_image` (computed once, ~1 s)."""
        if not hasattr(self, "_dense_triangles"):
            self._dense_triangles = self.morphable.dense_triangles.astype(np.int32)
        return self._dense_triangles

    def process(self, frame: Frame | np.ndarray, timestamp_ms: float | None = None) -> FrameResult:
        """Process one frame synchronously (IMAGE and VIDEO modes).

        Thread-safe: calls from several threads run one at a time; in VIDEO mode a call whose timestamp is not
        above the last one processed (e.g. it lost the race to another thread) raises ``ValueError``.

        Args:
            frame: a :class:`Frame`, or an image: (H, W[, 1|3|4]) uint8, BGR(A) or grayscale.
            timestamp_ms: the image's time when ``frame`` is an array (required in VIDEO mode).
        Raises:
            ValueError: LIVE_STREAM mode (use :meth:`process_async`), a missing, non-numeric, non-finite or
                non-increasing timestamp in VIDEO mode, or an invalid image.
        """
        if self.options.running_mode is RunningMode.LIVE_STREAM:
            raise ValueError("FacePipeline.process is for IMAGE and VIDEO modes; in LIVE_STREAM mode use process_async")
        if self._closed:
            raise ValueError("FacePipeline is closed")
        with self._lock:  # the timestamp check and the stateful stages under one lock
            return self._process_frame(self._as_frame(frame, timestamp_ms))

    def process_async(self, frame: Frame | np.ndarray, timestamp_ms: float | None = None) -> None:
        """Queue a frame for the LIVE_STREAM worker; a frame still waiting is replaced (and counted as dropped).

        Raises:
            ValueError: not in LIVE_STREAM mode, or a non-increasing timestamp.
            RuntimeError: the worker failed on an earlier frame (that error is chained).
        """
        if self.options.running_mode is not RunningMode.LIVE_STREAM:
            raise ValueError(f"FacePipeline.process_async is for LIVE_STREAM mode, not {self.options.running_mode.name}")
        with self._condition:
            frame = self._as_frame(frame, timestamp_ms)  # under the lock: callers on several threads stay ordered
            if self._closed:
                raise ValueError("FacePipeline is closed")
            if self._worker_error is not None:
                raise RuntimeError("the pipeline worker failed on an earlier frame") from self._worker_error
            if self._pending is not None:
                self.dropped_frames += 1
            self._pending = frame
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="FacePipeline-worker", daemon=True)
                self._worker.start()
            self._condition.notify()

    def reset(self) -> None:
        """Forget all tracks, filter states and the last timestamp (e.g. when the source changes)."""
        with self._lock:
            self.tracker.reset()
            self.smoother.reset()
            self._last_timestamp_ms = None

    def close(self) -> None:
        """Stop the LIVE_STREAM worker (finishing its current frame) and release the detector."""
        with self._condition:
            self._closed = True
            self._pending = None
            self._condition.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        if self._owns_detector and self.detector is not None:
            self.detector.close()
            self.detector = None
        if self._presence_detector is not None:
            self._presence_detector.close()
            self._presence_detector = None

    def __enter__(self) -> "FacePipeline":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ internals
    def _as_frame(self, frame: Frame | np.ndarray, timestamp_ms: float | None) -> Frame:
        if timestamp_ms is not None:
            _check_timestamp(timestamp_ms, "timestamp_ms")
        if isinstance(frame, Frame):
            _check_timestamp(frame.timestamp_ms, "Frame.timestamp_ms")
            if timestamp_ms is not None and float(timestamp_ms) != frame.timestamp_ms:
                raise ValueError(
                    f"got a Frame with timestamp_ms={frame.timestamp_ms} and a different timestamp_ms={timestamp_ms}"
                )
            image, timestamp_ms, index = frame.image_bgr, frame.timestamp_ms, frame.index
        else:
            image, index = frame, self._frame_counter
            if timestamp_ms is None:
                if self.options.running_mode is not RunningMode.IMAGE:
                    raise ValueError(
                        f"{self.options.running_mode.name} mode needs a timestamp_ms with each image (or pass a Frame)"
                    )
                timestamp_ms = 0.0
        image = to_bgr(image)
        if self.options.running_mode is not RunningMode.IMAGE:
            if self._last_timestamp_ms is not None and not timestamp_ms > self._last_timestamp_ms:
                raise ValueError(f"timestamps must increase: got {timestamp_ms} ms after {self._last_timestamp_ms} ms")
            self._last_timestamp_ms = float(timestamp_ms)
        self._frame_counter += 1
        return Frame(image, float(timestamp_ms), int(index))

    def _work(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
                frame, self._pending = self._pending, None
            try:
                with self._lock:
                    result = self._process_frame(frame)
                self.options.result_callback(result, frame)
            except BaseException as error:  # surfaced by the next process_async call
                LOGGER.exception("pipeline worker failed on frame %d", frame.index)
                with self._condition:
                    self._worker_error = error
                    self._worker = None
                return

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        count = len(crops)
        if self._mirror is not None:  # one call on the crops and their mirrors (options.flip_average)
            crops = np.concatenate([crops, flip_crops(crops)])
        params = np.asarray(self.backend.infer(crops).params, dtype=np.float32)
        if params.shape != (len(crops), NUM_PARAMS):
            raise ValueError(f"backend returned params of shape {params.shape}, expected ({len(crops)}, {NUM_PARAMS})")
        if self._mirror is not None:
            params = self._mirror.average(params[:count], params[count:], self.options.flip_pose).astype(np.float32)
        return params

    def _face_in_box(self, image: np.ndarray, roi_box: np.ndarray) -> bool:
        """Whether the detector finds a face near the centre of ``roi_box``'s crop (a track's second chance)."""
        crop = crop_image(image, roi_box, _VERIFY_CROP_SIZE)
        for detection in self.detector.detect(crop):
            center = (detection.box_xyxy[:2] + detection.box_xyxy[2:]) / 2
            if np.all(np.abs(center / _VERIFY_CROP_SIZE - 0.5) < 0.25):
                return True
        return False

    def _presence(self, image: np.ndarray, landmarks_xy: np.ndarray) -> np.ndarray:
        """(N, 68, 2) this frame's landmarks -> (N,) presence in [0, 1] (see ``PipelineOptions.presence_check``).

        Each face is cropped at ``roi_box_from_landmarks`` (the face fills ~70 % of it) into a
        :data:`PRESENCE_TILE` tile; the tiles make one mosaic, so one detector pass serves every face.
        """
        count = len(landmarks_xy)
        columns = int(np.ceil(np.sqrt(count)))
        rows = int(np.ceil(count / columns))
        tile = PRESENCE_TILE
        mosaic = np.zeros((rows * tile, columns * tile, 3), np.uint8)
        boxes = roi_box_from_landmarks(landmarks_xy)
        for index, box in enumerate(boxes):
            row, column = divmod(index, columns)
            mosaic[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile] = crop_image(image, box, tile)
        presence = np.zeros(count, np.float64)
        for detection in self._presence_detector.detect(mosaic):
            center = (detection.box_xyxy[:2] + detection.box_xyxy[2:]) / 2
            column, row = int(center[0] // tile), int(center[1] // tile)
            index = row * columns + column
            if index >= count:
                continue
            offset = center / tile - np.array([column, row]) - 0.5
            side = (detection.box_xyxy[2] - detection.box_xyxy[0] + detection.box_xyxy[3] - detection.box_xyxy[1]) / 2 / tile
            if np.all(np.abs(offset) < 0.2) and 0.3 < side < 1.1:  # the face the landmarks claim, not a neighbour
                presence[index] = max(presence[index], detection.score)
        return presence

    def _landmarks_image(self, params: np.ndarray, roi_boxes: np.ndarray) -> np.ndarray:
        """(N, 62), (N, 4) -> (N, 68, 3) image-space landmarks (x, y, z)."""
        model = self.morphable.landmarks_model(params)
        return np.stack([model_to_image(points, box, self.crop_size).T for points, box in zip(model, roi_boxes)])

    def _process_frame(self, frame: Frame) -> FrameResult:
        start = time.perf_counter()
        image = frame.image_bgr
        height, width = image.shape[:2]
        timings = dict.fromkeys(STAGES, 0.0)
        image_mode = self.options.running_mode is RunningMode.IMAGE
        if image_mode:
            self.tracker.reset()
            self.smoother.reset()

        # detect: only when the tracker asks (no track, a track lost, or every N frames)
        if self.tracker.needs_detection():
            tick = time.perf_counter()
            detections = self.detector.detect(image)
            boxes = roi_box_from_detection(np.stack([d.box_xyxy for d in detections])) if detections else np.zeros((0, 4))
            if image_mode:
                verify = None
            elif self._presence_detector is not None:  # checked in every frame: a live track is a present face
                verify = lambda track: track.presence >= self.tracker.options.min_presence  # noqa: E731
            else:
                verify = lambda track: self._face_in_box(image, track.roi_box)  # noqa: E731
            self.tracker.apply_detections(boxes, np.array([d.score for d in detections]), verify)
            timings["detect"] = (time.perf_counter() - tick) * 1000

        tracks = list(self.tracker.tracks)
        faces: list[FaceResult] = []
        if tracks:
            faces = self._reconstruct_tracks(
                image, tracks, frame.timestamp_ms, timings, smooth=not image_mode and self.options.smoothing.causal
            )
        else:
            self.smoother.retain([])
            self.tracker.update([], np.zeros((0, 68, 2)), (width, height))  # the frame counts (lost ids' memory)
        timings["total"] = (time.perf_counter() - start) * 1000
        return FrameResult(faces, timings, frame.index, frame.timestamp_ms, (width, height))

    def _reconstruct_tracks(
        self, image: np.ndarray, tracks, timestamp_ms: float, timings: dict, smooth: bool
    ) -> list[FaceResult]:
        height, width = image.shape[:2]
        tick = time.perf_counter()
        roi_boxes = np.stack([t.roi_box for t in tracks])
        crops = np.stack([crop_image(image, box, self.crop_size) for box in roi_boxes])
        timings["track_crop"] += (time.perf_counter() - tick) * 1000

        tick = time.perf_counter()
        params = self._infer(crops)  # one batch for all faces of the frame
        timings["infer"] += (time.perf_counter() - tick) * 1000

        tick = time.perf_counter()
        landmarks = self._landmarks_image(params, roi_boxes)
        new_rows = [row for row, track in enumerate(tracks) if track.from_detection and np.isfinite(landmarks[row]).all()]
        if self.options.refine_new_faces and new_rows:
            # second pass for faces seeded by the detector: crop from the first pass's landmarks
            refined_boxes = roi_box_from_landmarks(landmarks[new_rows, :, :2])
            refined_crops = np.stack([crop_image(image, box, self.crop_size) for box in refined_boxes])
            timings["track_crop"] += (time.perf_counter() - tick) * 1000
            tick = time.perf_counter()
            params[new_rows] = self._infer(refined_crops)
            timings["infer"] += (time.perf_counter() - tick) * 1000
            tick = time.perf_counter()
            roi_boxes[new_rows] = refined_boxes
            landmarks[new_rows] = self._landmarks_image(params[new_rows], refined_boxes)
        track_ids = [t.track_id for t in tracks]
        scores = {t.track_id: t.detection_score for t in tracks}
        finite = np.isfinite(landmarks).all(axis=(1, 2))
        presence = np.array([scores[t] for t in track_ids], np.float64)
        if self._presence_detector is not None and finite.any():
            presence[finite] = self._presence(image, landmarks[finite, :, :2])
            presence[~finite] = 0.0
        lost = set(
            self.tracker.update(
                track_ids,
                landmarks[:, :, :2],
                (width, height),
                presence=None
                if self.options.running_mode is RunningMode.IMAGE or self._presence_detector is None
                else presence,
            )
        )
        absent = set()
        if self.options.running_mode is not RunningMode.IMAGE and self._presence_detector is not None:
            absent = {track_id for track_id, value in zip(track_ids, presence) if value < self.tracker.options.min_presence}
        keep = [row for row, track_id in enumerate(track_ids) if track_id not in lost and track_id not in absent]
        timings["track_crop"] += (time.perf_counter() - tick) * 1000
        track_ids = [track_ids[row] for row in keep]
        params, roi_boxes, presence = params[keep], roi_boxes[keep], presence[keep]
        if not keep:
            self.smoother.retain([])
            return []

        tick = time.perf_counter()
        if smooth:
            params = self.smoother.smooth(track_ids, params, roi_boxes, timestamp_ms)
            self.smoother.retain(track_ids)
        timings["smooth"] += (time.perf_counter() - tick) * 1000

        tick = time.perf_counter()
        faces = self.faces_from_params(track_ids, params, roi_boxes, [scores[t] for t in track_ids], presence)
        timings["reconstruct"] += (time.perf_counter() - tick) * 1000
        return faces

    def faces_from_params(
        self, track_ids, params: np.ndarray, roi_boxes: np.ndarray, detection_scores, presence
    ) -> list[FaceResult]:
        """The :class:`FaceResult` of each face from its parameters: everything derived from them (landmarks, pose
        angles, dense vertices, blendshapes) computed here, so the offline smoother
        (:mod:`realtime.offline_smoothing`) rebuilds a face from its smoothed parameters the same way.

        Args:
            track_ids: (N,) ints.
            params: (N, 62) de-normalised, each relative to its ``roi_boxes`` row.
            roi_boxes: (N, 4) crop boxes, image pixels.
            detection_scores, presence: (N,) floats, carried into the results.
        Returns:
            the faces sorted by track id.
        """
        params = np.asarray(params, dtype=np.float32).reshape(-1, NUM_PARAMS)
        roi_boxes = np.asarray(roi_boxes, dtype=np.float64).reshape(-1, 4)
        landmarks = self._landmarks_image(params, roi_boxes).astype(np.float32)
        angles = pose_angles_degrees(params)
        if self.options.compute_dense:
            dense_model = self.morphable.dense_model(params)
            dense = [
                model_to_image(points, box, self.crop_size).T.astype(np.float32) for points, box in zip(dense_model, roi_boxes)
            ]
        else:
            dense = [np.zeros((0, 3), np.float32)] * len(track_ids)
        blendshapes = [None] * len(track_ids)
        if self.retargeter is not None:
            from realtime.blendshapes import as_dict

            blendshapes = [as_dict(weights) for weights in self.retargeter.from_params(params)]
        faces = [
            FaceResult(
                track_id=int(track_id),
                roi_box=roi_boxes[row].copy(),
                params=params[row].astype(np.float32),
                landmarks_2d=np.ascontiguousarray(landmarks[row, :, :2]),
                landmarks_3d=landmarks[row],
                yaw=float(angles[row, 0]),
                pitch=float(angles[row, 1]),
                roll=float(angles[row, 2]),
                vertices_image=dense[row],
                detection_score=float(detection_scores[row]),
                blendshapes=blendshapes[row],
                presence=float(presence[row]),
            )
            for row, track_id in enumerate(track_ids)
        ]
        faces.sort(key=lambda face: face.track_id)
        return faces
