"""Face tracks with stable ids: crop boxes carried from each frame's landmarks to the next.

The tracker holds no model: the pipeline asks it whether to run the detector, hands it detections, crops
the faces at :attr:`Track.roi_box`, and hands back the landmarks (and each face's presence) found in those
crops. After a detection seeds a track, each next crop follows the previous frames' 68 landmarks
(``drtn.crop.roi_box_from_landmarks`` through an alpha-beta filter predicted one frame ahead, see
``TrackerOptions.box_gain``), so faces keep being tracked through poses the detector misses.

The detector runs when there is no track, when a track was lost in the previous frame, or every
``detect_every_n_frames`` frames; its boxes are matched to tracks by IoU (greedy, highest first), unmatched
boxes start new tracks (up to ``max_faces``) or revive a track lost in the last ``id_memory_frames`` frames
whose predicted box they overlap. A track ends when its face's presence stays under ``min_presence`` for
``max_absent_frames`` frames (the face is gone: turned away, covered, never a face), its landmarks are not
finite, its box falls under ``min_face_size_px``, jumps in size by more than ``max_scale_change`` in one
frame, keeps less than ``min_visible_fraction`` of its landmark box inside the image (the face left the
frame), ``max_missed_detections`` detector runs in a row found no face on it (when the pipeline checks no
presence), or it duplicates an older track.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from drtn.configs import check_known_keys
from drtn.crop import roi_box_from_landmarks

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerOptions:
    """Options of :class:`FaceTracker`.

    Attributes:
        max_faces: most faces tracked at once.
        detect_every_n_frames: also run the detector every N frames to find new faces and confirm tracks;
            0 = only when there is no track or one was lost.
        iou_match_threshold: least IoU between a detection's crop box and a track's box to match them.
        duplicate_iou_threshold: two tracks whose boxes overlap more than this follow the same face: the
            younger one is dropped.
        max_missed_detections: a track that this many detector runs in a row found no face on (neither in the
            frame nor, with ``verify``, in its own crop) is dropped (0 = never: rely on the landmark checks).
        min_face_size_px: smallest crop-box side, pixels; smaller tracks are lost, smaller detections ignored.
        min_visible_fraction: least fraction of the landmark bounding box inside the image.
        max_scale_change: largest ratio of a track's box side between two frames.
        min_presence: a face whose presence (``FacePipeline``'s per-frame check) is under this is not
            reported in that frame; after ``max_absent_frames`` such frames in a row its track ends (one frame
            of grace lets a track whose crop lagged a fast face catch up).
        id_memory_frames: a lost track is remembered this many frames: a new detection on its predicted box
            (last box moved on at its last velocity) gets its id back (brief occlusions, crossings, blinks of
            the detector).
        box_gain, box_gain_speed, box_predict: the next crop box follows the landmark box through an
            alpha-beta filter of its centre and log side, gain ``min(1, box_gain + box_gain_speed * speed)``
            (speed in box sides per frame), predicted one frame ahead when ``box_predict``. A crop that does
            not jump with the landmarks' noise removes most of the output's jitter at its source (a still
            face in identical frames gets identical crops), and the prediction keeps a moving face centred.
            ``box_gain=1, box_predict=False``: the crop box of the last landmarks (3DDFA_V2).
    """

    max_faces: int = 16
    detect_every_n_frames: int = 5
    iou_match_threshold: float = 0.3
    duplicate_iou_threshold: float = 0.5
    max_missed_detections: int = 2
    min_face_size_px: float = 20.0
    min_visible_fraction: float = 0.4
    max_scale_change: float = 1.6
    box_gain: float = 0.5
    box_gain_speed: float = 10.0
    box_predict: bool = True
    min_presence: float = 0.5
    max_absent_frames: int = 2
    id_memory_frames: int = 30

    def __post_init__(self) -> None:
        checks = (
            ("max_faces", self.max_faces >= 1, ">= 1"),
            ("detect_every_n_frames", self.detect_every_n_frames >= 0, ">= 0"),
            ("iou_match_threshold", 0.0 < self.iou_match_threshold <= 1.0, "in (0, 1]"),
            ("duplicate_iou_threshold", 0.0 < self.duplicate_iou_threshold <= 1.0, "in (0, 1]"),
            ("max_missed_detections", self.max_missed_detections >= 0, ">= 0"),
            ("min_face_size_px", self.min_face_size_px >= 0.0, ">= 0"),
            ("min_visible_fraction", 0.0 <= self.min_visible_fraction <= 1.0, "in [0, 1]"),
            ("max_scale_change", self.max_scale_change > 1.0, "> 1"),
            ("box_gain", 0.0 < self.box_gain <= 1.0, "in (0, 1]"),
            ("min_presence", 0.0 <= self.min_presence <= 1.0, "in [0, 1]"),
            ("max_absent_frames", self.max_absent_frames >= 1, ">= 1"),
            ("id_memory_frames", self.id_memory_frames >= 0, ">= 0"),
            ("box_gain_speed", self.box_gain_speed >= 0.0, ">= 0"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"TrackerOptions.{name}: expected {expected}, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: dict) -> "TrackerOptions":
        """Build from a dict; an unknown key raises ``ValueError``."""
        check_known_keys(cls, values)
        return cls(**values)


@dataclass
class Track:
    """One tracked face.

    Attributes:
        track_id: stable id; a new face never gets an id used before (a track lost and re-detected at once keeps its id).
        roi_box: (4,) float64 ``(x0, y0, x1, y1)`` image pixels: where to crop the face in the next frame.
        from_detection: ``roi_box`` comes from a detector box (the track is new), not from landmarks.
        detection_score: score of the detection that started or last confirmed the track.
        frames_tracked: frames with landmarks so far.
        missed_detections: detector runs in a row that found no face on this track.
    """

    track_id: int
    roi_box: np.ndarray
    from_detection: bool = True
    detection_score: float = 0.0
    frames_tracked: int = 0
    missed_detections: int = 0
    box_state: np.ndarray | None = None  # (3,) filtered centre x, y and log side of the landmark box
    box_velocity: np.ndarray | None = None  # (3,) per frame
    presence: float = 1.0  # the last frame's face presence
    absent_frames: int = 0  # frames in a row with presence under min_presence
    last_present_box: np.ndarray | None = None  # roi_box after the last frame its face was present


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix of (A, 4) and (B, 4) ``(x0, y0, x1, y1)`` boxes -> (A, B)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _visible_fraction(landmarks_xy: np.ndarray, width: int, height: int) -> float:
    """Fraction of the landmarks' bounding box that lies inside the image."""
    x0, y0 = landmarks_xy.min(axis=0)
    x1, y1 = landmarks_xy.max(axis=0)
    area = max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6)
    inside = max(min(x1, width) - max(x0, 0.0), 0.0) * max(min(y1, height) - max(y0, 0.0), 0.0)
    return float(inside / area)


def _predicted_box(track: Track, frames: int) -> np.ndarray:
    """Where a lost track's box would be ``frames`` frames after its loss, moving on at its last velocity."""
    box = track.last_present_box if track.last_present_box is not None else track.roi_box
    if track.box_velocity is None:
        return box
    shift = track.box_velocity[:2] * min(frames + track.absent_frames, 10)  # extrapolate a few frames at most
    return box + np.r_[shift, shift]


class FaceTracker:
    """Keeps face tracks and decides when the detector must run (see the module docstring)."""

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids restart at 0."""
        self.tracks: list[Track] = []
        self._next_id = 0
        self._frames_since_detection = 0
        self._lost_since_detection = True
        self._recently_lost: list[tuple[Track, int]] = []  # (track, frame lost): a detection on them revives the id
        self._frame = 0

    def needs_detection(self) -> bool:
        """Whether the detector should run on the coming frame."""
        if not self.tracks or self._lost_since_detection:
            return True
        every = self.options.detect_every_n_frames
        return every > 0 and self._frames_since_detection >= every

    def apply_detections(
        self, roi_boxes: np.ndarray, scores: np.ndarray, verify: Callable[[Track], bool] | None = None
    ) -> list[int]:
        """Match a detector run's crop boxes to the tracks; start tracks for unmatched faces.

        Args:
            roi_boxes: (M, 4) crop boxes made from detector boxes (``drtn.crop.roi_box_from_detection``).
            scores: (M,) detector scores.
            verify: second chance for a track no box matched, e.g. the detector run on the track's own crop,
                where the face is large (turned faces are found more often there than in the whole frame).
        Returns:
            ids of the tracks dropped because too many detector runs missed them.
        """
        roi_boxes = np.asarray(roi_boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        self._frames_since_detection = 0
        self._lost_since_detection = False
        keep = (roi_boxes[:, 2] - roi_boxes[:, 0]) >= self.options.min_face_size_px
        roi_boxes, scores = roi_boxes[keep], scores[keep]
        matched_tracks: set[int] = set()
        matched_detections: set[int] = set()
        if self.tracks and len(roi_boxes):
            iou = box_iou(np.stack([t.roi_box for t in self.tracks]), roi_boxes)
            for flat in np.argsort(-iou, axis=None):
                row, col = np.unravel_index(flat, iou.shape)
                if iou[row, col] < self.options.iou_match_threshold:
                    break
                if row in matched_tracks or col in matched_detections:
                    continue
                matched_tracks.add(int(row))
                matched_detections.add(int(col))
                self.tracks[row].missed_detections = 0
                self.tracks[row].detection_score = float(scores[col])
        dropped = []
        for row, track in enumerate(self.tracks):
            if row not in matched_tracks:
                if verify is not None and verify(track):
                    track.missed_detections = 0
                    continue
                track.missed_detections += 1
                limit = self.options.max_missed_detections
                if limit and track.missed_detections >= limit:
                    dropped.append(track.track_id)
        if dropped:
            LOGGER.debug("tracks %s dropped: no detection on them for %d runs", dropped, self.options.max_missed_detections)
            self._recently_lost.extend((t, self._frame) for t in self.tracks if t.track_id in dropped)
            self.tracks = [t for t in self.tracks if t.track_id not in dropped]
        memory = self.options.id_memory_frames
        self._recently_lost = [(t, lost_at) for t, lost_at in self._recently_lost if self._frame - lost_at <= memory]
        for col in np.argsort(-scores):
            if col in matched_detections or len(self.tracks) >= self.options.max_faces:
                continue
            if (
                self.tracks
                and box_iou(np.stack([t.roi_box for t in self.tracks]), roi_boxes[col]).max()
                >= self.options.iou_match_threshold
            ):
                continue  # a second box on a face already tracked
            track_id = None
            if self._recently_lost:
                # a track lost in the last frames (occluded, crossed, its box degenerated) found again keeps its id
                predicted = np.stack([_predicted_box(t, self._frame - lost_at) for t, lost_at in self._recently_lost])
                iou = box_iou(predicted, roi_boxes[col])[:, 0]
                if iou.max() >= self.options.iou_match_threshold:
                    track_id = self._recently_lost.pop(int(iou.argmax()))[0].track_id
            if track_id is None:
                track_id, self._next_id = self._next_id, self._next_id + 1
            self.tracks.append(Track(track_id, roi_boxes[col].copy(), from_detection=True, detection_score=float(scores[col])))
        return dropped

    def update(
        self, track_ids, landmarks_xy: np.ndarray, image_size: tuple[int, int], presence: np.ndarray | None = None
    ) -> list[int]:
        """Take each track's landmarks in this frame; set its next crop box or drop it.

        Args:
            track_ids: (N,) ids of the tracks that were cropped this frame.
            landmarks_xy: (N, 68, 2) image pixels.
            image_size: ``(width, height)`` of the frame.
            presence: (N,) this frame's face presence per track, or None (not checked).
        Returns:
            ids of the tracks lost in this frame (the detector will run on the next one).
        """
        width, height = image_size
        landmarks_xy = (
            np.asarray(landmarks_xy, dtype=np.float64).reshape(len(track_ids), -1, 2)
            if len(track_ids)
            else np.zeros((0, 68, 2))
        )
        by_id = {t.track_id: t for t in self.tracks}
        lost: list[int] = []
        presence = np.ones(len(track_ids)) if presence is None else np.asarray(presence, dtype=np.float64).reshape(-1)
        for track_id, points, present in zip(track_ids, landmarks_xy, presence):
            track = by_id.get(int(track_id))
            if track is None:
                raise ValueError(f"FaceTracker.update: unknown track id {track_id}")
            reason = None
            track.presence = float(present)
            track.absent_frames = track.absent_frames + 1 if present < self.options.min_presence else 0
            if track.absent_frames >= self.options.max_absent_frames:
                reason = f"presence under {self.options.min_presence} for {track.absent_frames} frames"
            elif not np.isfinite(points).all():
                reason = "landmarks not finite"
            else:
                box = roi_box_from_landmarks(points)
                side, old_side = box[2] - box[0], track.roi_box[2] - track.roi_box[0]
                if side < self.options.min_face_size_px:
                    reason = f"box side {side:.1f} px < {self.options.min_face_size_px}"
                elif not track.from_detection and not (
                    1.0 / self.options.max_scale_change <= side / max(old_side, 1e-6) <= self.options.max_scale_change
                ):
                    reason = f"box side jumped {old_side:.1f} -> {side:.1f} px"
                elif _visible_fraction(points, width, height) < self.options.min_visible_fraction:
                    reason = "face left the frame"
            if reason is not None:
                LOGGER.debug("track %d lost: %s", track.track_id, reason)
                lost.append(track.track_id)
                continue
            track.roi_box = self._next_box(track, box)
            if track.absent_frames == 0:
                track.last_present_box = track.roi_box.copy()
            track.from_detection = False
            track.frames_tracked += 1
        lost.extend(self._drop_duplicates(exclude=lost))
        if lost:
            self._recently_lost.extend((t, self._frame) for t in self.tracks if t.track_id in lost)
            self.tracks = [t for t in self.tracks if t.track_id not in lost]
            self._lost_since_detection = True
        self._frames_since_detection += 1
        self._frame += 1
        return lost

    def _next_box(self, track: Track, box: np.ndarray) -> np.ndarray:
        """The crop box of the next frame from this frame's landmark box (see ``TrackerOptions.box_gain``)."""
        measured = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, np.log(box[2] - box[0])])
        options = self.options
        if track.box_state is None or track.from_detection:
            state, velocity = measured, np.zeros(3)
        else:
            side = np.exp(track.box_state[2])
            speed = float(np.hypot(*track.box_velocity[:2]) / side)  # box sides per frame
            gain = min(1.0, options.box_gain + options.box_gain_speed * speed)
            if track.frames_tracked < 2:  # a young track: its velocity is not known yet
                gain = 1.0
            if options.box_predict:
                predicted = track.box_state + track.box_velocity
                residual = measured - predicted
                state = predicted + gain * residual
                velocity = track.box_velocity + gain * gain / (2.0 - gain) * residual
            else:
                state, velocity = track.box_state + gain * (measured - track.box_state), np.zeros(3)
        track.box_state, track.box_velocity = state, velocity
        center_x, center_y, log_side = state + velocity if options.box_predict else state
        half = np.exp(log_side) / 2
        return np.array([center_x - half, center_y - half, center_x + half, center_y + half])

    def _drop_duplicates(self, exclude: list[int]) -> list[int]:
        """Tracks that converged on the same face as an older track."""
        alive = [t for t in self.tracks if t.track_id not in exclude]
        if len(alive) < 2:
            return []
        iou = box_iou(np.stack([t.roi_box for t in alive]), np.stack([t.roi_box for t in alive]))
        dropped = []
        for i in range(len(alive)):
            for j in range(i + 1, len(alive)):
                if (
                    iou[i, j] > self.options.duplicate_iou_threshold
                    and alive[i].track_id not in dropped
                    and alive[j].track_id not in dropped
                ):
                    younger = alive[i] if alive[i].track_id > alive[j].track_id else alive[j]
                    dropped.append(younger.track_id)
        if dropped:
            LOGGER.debug("tracks %s dropped: duplicates of older tracks", dropped)
        return dropped
