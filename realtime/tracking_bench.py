"""Tracking benchmark with exact ground truth: ``main.py bench --tracking``.

Scenes come from :mod:`realtime.tracking_scenes` (held-out faces moved by a smooth camera; multi-face scenes
with faces entering, leaving, crossing and occluding each other, and non-face distractors). Each pipeline runs
over the same frames in the same process:

- ``ours``: the product pipeline (detector when the tracker asks + DRTN + tracking + presence) with causal
  smoothing (``live``'s default), offline smoothing (``video``'s default: the same
  :class:`realtime.offline_smoothing.FixedLagSmoother` behind the pipeline, its frames scored as they come out,
  ``lag_frames`` late) and smoothing off;
- ``peer``: MediaPipe BlazeFace on every frame + the 3DDFA_V2 teacher (``create_backend("teacher")``), each
  frame alone (IMAGE mode, with the landmark re-crop), ids carried by box IoU from frame to frame.

Metrics (faces matched to ground truth by the IoU of their landmark boxes, Hungarian, IoU >= 0.3):

- NME: mean landmark error over the face size ``sqrt(w * h)`` of the ground-truth landmark box, %.
- jitter: mean norm of the landmarks' second difference over three consecutive matched frames / face size, %,
  beside the ground truth's own on the same frames (its true acceleration); and the jitter beyond the true
  motion: the same of the landmarks' error (prediction - truth), which a smoother can remove without lag.
- MOTA = 1 - (misses + false positives + id switches) / ground-truth faces (CLEAR MOT). A face counts when
  >= 50 % of its landmarks are in the frame and not covered by another face; a track on a face less visible
  than that is neither a hit nor a false positive.
- presence ROC: each reported face's ``presence`` against whether it matched a face (AUC, rates at 0.5).

The detector tables (:func:`run_detector_comparison`): YuNet, MediaPipe's BlazeFace and the BlazeFace ONNX at
several input sizes and with tiles, on the multi-face scenes plus a close-up and a 1080p crowd: recall, false
detections and median ms per frame by frame size; recall by face size and by |yaw| (:class:`YawEstimator`); the
agreement of their boxes with YuNet's and MediaPipe's, on those faces and on the shared photos.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realtime.tracker import box_iou
from realtime.tracking_scenes import Scene, SceneFrame, default_data_dir, standard_scenes

LOGGER = logging.getLogger(__name__)

MATCH_IOU = 0.3
VISIBLE_FOR_COUNT = 0.5
MIN_FACE_FOR_COUNT_PX = 20.0


@dataclass(frozen=True)
class Prediction:
    """One reported face: ``track_id``, ``landmarks`` (68, 2) image pixels, ``presence`` in [0, 1]."""

    track_id: int
    landmarks: np.ndarray
    presence: float = 1.0


def _landmark_box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou(a, b)[0, 0])


@dataclass
class GroupStats:
    """Accumulated counts and errors of one scene group."""

    frames: int = 0
    truths: int = 0
    hits: int = 0
    misses: int = 0
    false_positives: int = 0
    id_switches: int = 0
    nme: list[float] = field(default_factory=list)
    jitter: list[float] = field(default_factory=list)
    truth_jitter: list[float] = field(default_factory=list)
    error_jitter: list[float] = field(default_factory=list)
    presence: list[tuple[float, bool]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mota(self) -> float:
        return 1.0 - (self.misses + self.false_positives + self.id_switches) / max(self.truths, 1)


class SceneScorer:
    """Scores one pipeline's predictions on one scene, frame by frame (CLEAR MOT bookkeeping)."""

    def __init__(self, stats: GroupStats):
        self.stats = stats
        self._last_track_of: dict[int, int] = {}  # face id -> track id of its last match
        self._history: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray, float]]] = {}

    def add(self, frame: SceneFrame, predictions: list[Prediction]) -> None:
        from scipy.optimize import linear_sum_assignment

        stats = self.stats
        stats.frames += 1
        truths = frame.truths
        counted = [t.visible >= VISIBLE_FOR_COUNT and t.size >= MIN_FACE_FOR_COUNT_PX for t in truths]
        stats.truths += sum(counted)
        matched_truth: dict[int, int] = {}
        if truths and predictions:
            iou = np.array(
                [[_iou(_landmark_box(t.landmarks), _landmark_box(p.landmarks)) for p in predictions] for t in truths]
            )
            rows, cols = linear_sum_assignment(-iou)
            matched_truth = {int(c): int(r) for r, c in zip(rows, cols) if iou[r, c] >= MATCH_IOU}
        hit_truths = set()
        for col, prediction in enumerate(predictions):
            row = matched_truth.get(col)
            if row is None:
                stats.false_positives += 1
                stats.presence.append((prediction.presence, False))
                continue
            truth = truths[row]
            if not counted[row]:
                continue  # a track on a face mostly hidden or outside: neither a hit nor a false positive
            stats.presence.append((prediction.presence, True))
            hit_truths.add(row)
            stats.hits += 1
            previous = self._last_track_of.get(truth.face_id)
            if previous is not None and previous != prediction.track_id:
                stats.id_switches += 1
            self._last_track_of[truth.face_id] = prediction.track_id
            size = truth.size
            stats.nme.append(float(np.linalg.norm(prediction.landmarks - truth.landmarks, axis=1).mean() / size))
            history = self._history.setdefault((truth.face_id, prediction.track_id), [])
            history.append((frame.index, prediction.landmarks.astype(np.float64), truth.landmarks, size))
            if len(history) >= 3 and history[-3][0] == frame.index - 2 and history[-2][0] == frame.index - 1:
                (_, p0, g0, _), (_, p1, g1, s1), (_, p2, g2, _) = history[-3:]
                stats.jitter.append(float(np.linalg.norm(p2 - 2 * p1 + p0, axis=1).mean() / s1))
                stats.truth_jitter.append(float(np.linalg.norm(g2 - 2 * g1 + g0, axis=1).mean() / s1))
                error = (p2 - g2) - 2 * (p1 - g1) + (p0 - g0)
                stats.error_jitter.append(float(np.linalg.norm(error, axis=1).mean() / s1))
            del history[:-3]
        stats.misses += sum(1 for row, c in enumerate(counted) if c and row not in hit_truths)


# ------------------------------------------------------------------------------------------ pipelines
def _predictions(result) -> list[Prediction]:
    return [Prediction(f.track_id, f.landmarks_2d.astype(np.float64), f.presence) for f in result.faces]


class OurTracker:
    """The product pipeline (VIDEO mode) as a benchmark row.

    With ``options.smoothing.mode == "offline"`` the results go through the same
    :class:`realtime.offline_smoothing.FixedLagSmoother` as ``video``'s (``FixedLagSmoother.for_pipeline``), so
    :meth:`step` returns frames late and :meth:`finish_scene` the rest.
    """

    def __init__(self, name: str, backend, options, morphable):
        from realtime.offline_smoothing import FixedLagSmoother
        from realtime.pipeline import FacePipeline

        self.name = name
        self._pipeline = FacePipeline(backend, options, morphable=morphable)
        self._delay = FixedLagSmoother.for_pipeline(self._pipeline)

    def start_scene(self) -> None:
        self._pipeline.reset()
        if self._delay is not None:
            self._delay.reset()

    def __call__(self, image: np.ndarray, timestamp_ms: float) -> list[Prediction]:
        """This frame's predictions (a row without offline smoothing)."""
        if self._delay is not None:
            raise ValueError(f"{self.name}: offline smoothing returns frames late; use step() and finish_scene()")
        return _predictions(self._pipeline.process(image, timestamp_ms))

    def step(self, image: np.ndarray, timestamp_ms: float) -> list[list[Prediction]]:
        """The predictions of every frame finished by this one, oldest first (one list: this frame's)."""
        result = self._pipeline.process(image, timestamp_ms)
        if self._delay is None:
            return [_predictions(result)]
        return [_predictions(done) for _, done in self._delay.push(None, result)]

    def finish_scene(self) -> list[list[Prediction]]:
        """The predictions of the frames still held back (offline smoothing), oldest first."""
        return [] if self._delay is None else [_predictions(done) for _, done in self._delay.flush()]

    def close(self) -> None:
        self._pipeline.close()


class PerFramePeer:
    """Detector on every frame + a backend, each frame alone; ids carried by box IoU (>= 0.3) between frames."""

    def __init__(self, name: str, backend, options, morphable):
        from realtime.pipeline import FacePipeline

        self.name = name
        self._pipeline = FacePipeline(backend, options, morphable=morphable)
        self.start_scene()

    def start_scene(self) -> None:
        self._previous: list[tuple[int, np.ndarray]] = []
        self._next_id = 0

    def __call__(self, image: np.ndarray, timestamp_ms: float) -> list[Prediction]:
        from scipy.optimize import linear_sum_assignment

        faces = self._pipeline.process(image).faces
        boxes = [_landmark_box(f.landmarks_2d.astype(np.float64)) for f in faces]
        ids = [None] * len(faces)
        if self._previous and faces:
            iou = np.array([[_iou(old, new) for new in boxes] for _, old in self._previous])
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= MATCH_IOU:
                    ids[c] = self._previous[r][0]
        for index, value in enumerate(ids):
            if value is None:
                ids[index], self._next_id = self._next_id, self._next_id + 1
        self._previous = list(zip(ids, boxes))
        return [Prediction(i, f.landmarks_2d.astype(np.float64), f.presence) for i, f in zip(ids, faces)]

    def step(self, image: np.ndarray, timestamp_ms: float) -> list[list[Prediction]]:
        return [self(image, timestamp_ms)]

    def finish_scene(self) -> list[list[Prediction]]:
        return []

    def close(self) -> None:
        self._pipeline.close()


def group_of(scene: Scene) -> str:
    """Scene group name: ``moving-<speed>`` or ``multi-<W>x<H>``."""
    return scene.name.rsplit("-", 1)[0]


def run_benchmark(rows, scenes: list[Scene]) -> dict[str, dict[str, GroupStats]]:
    """Run every row over every scene (each scene rendered once, frame by frame, for all rows).

    Returns:
        ``{row name: {group name: GroupStats}}``.
    """
    from collections import deque

    results = {row.name: {} for row in rows}
    for scene in scenes:
        group = group_of(scene)
        scorers, waiting = {}, {}
        for row in rows:
            row.start_scene()
            scorers[row.name] = SceneScorer(results[row.name].setdefault(group, GroupStats()))
            waiting[row.name] = deque()  # frames whose predictions the row has not returned yet (offline smoothing)
        for frame in scene:
            for row in rows:
                waiting[row.name].append(frame)
                tick = time.perf_counter()
                finished = row.step(frame.image, frame.timestamp_ms)
                scorers[row.name].stats.seconds += time.perf_counter() - tick
                for predictions in finished:
                    scorers[row.name].add(waiting[row.name].popleft(), predictions)
        for row in rows:
            tick = time.perf_counter()
            finished = row.finish_scene()
            scorers[row.name].stats.seconds += time.perf_counter() - tick
            for predictions in finished:
                scorers[row.name].add(waiting[row.name].popleft(), predictions)
            if waiting[row.name]:
                raise RuntimeError(f"{row.name}: {len(waiting[row.name])} frames of {scene.name} got no predictions")
        LOGGER.info("scene %s done", scene.name)
    return results


def roc_auc(pairs: list[tuple[float, bool]]) -> float:
    """Area under the ROC curve of (score, is_positive) pairs (ties count half); nan without both classes."""
    scores = np.array([s for s, _ in pairs], np.float64)
    labels = np.array([p for _, p in pairs], bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def _mean(values) -> float:
    return float(np.mean(values)) * 100 if len(values) else float("nan")


def markdown(results: dict[str, dict[str, GroupStats]], note: str = "") -> str:
    """The two benchmark tables (moving single faces; multi-face scenes) as markdown."""
    rows = list(results)
    groups = list(next(iter(results.values())))
    moving = [g for g in groups if g.startswith("moving")]
    multi = [g for g in groups if g.startswith("multi")]
    lines = []
    if note:
        lines += [note, ""]
    if moving:
        speeds = [g.split("-", 1)[1] for g in moving]
        lines += [
            "Moving face (one held-out face, smooth camera, 640x480): NME % / jitter % of face size; the ground truth's own jitter in the first row",
            "",
            "| pipeline | "
            + " | ".join(f"{s} NME" for s in speeds)
            + " | "
            + " | ".join(f"{s} jitter" for s in speeds)
            + " | ms/frame |",
            "|---|" + "---:|" * (2 * len(moving) + 1),
        ]
        first = results[rows[0]]
        lines.append(
            "| ground truth | "
            + " | ".join("0" for _ in moving)
            + " | "
            + " | ".join(f"{_mean(first[g].truth_jitter):.2f}" for g in moving)
            + " | |"
        )
        for row in rows:
            stats = results[row]
            frames = sum(stats[g].frames for g in moving)
            ms = 1000 * sum(stats[g].seconds for g in moving) / max(frames, 1)
            lines.append(
                f"| {row} | "
                + " | ".join(f"{_mean(stats[g].nme):.2f}" for g in moving)
                + " | "
                + " | ".join(f"{_mean(stats[g].jitter):.2f}" for g in moving)
                + f" | {ms:.1f} |"
            )
        lines += [
            "",
            "Jitter beyond the true motion (second difference of the landmark error, prediction - truth), % of face size",
            "",
            "| pipeline | " + " | ".join(f"{s} jitter beyond truth" for s in speeds) + " |",
            "|---|" + "---:|" * len(moving),
        ]
        for row in rows:
            lines.append(f"| {row} | " + " | ".join(f"{_mean(results[row][g].error_jitter):.2f}" for g in moving) + " |")
        lines.append("")
    if multi:
        lines += [
            "Multi-face scenes (faces entering, leaving, crossing, occluding; distractors): MOTA %, false positives, misses, id switches (of N ground-truth faces), NME %",
            "",
            "| pipeline | " + " | ".join(f"{g[6:]} MOTA | FP | miss | IDSW | NME" for g in multi) + " | ms/frame |",
            "|---|" + "---:|" * (5 * len(multi) + 1),
        ]
        for row in rows:
            stats = results[row]
            cells = []
            for g in multi:
                s = stats[g]
                cells.append(
                    f"{100 * s.mota:.1f} | {s.false_positives} | {s.misses}/{s.truths} | {s.id_switches} | {_mean(s.nme):.2f}"
                )
            frames = sum(stats[g].frames for g in multi)
            ms = 1000 * sum(stats[g].seconds for g in multi) / max(frames, 1)
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {ms:.1f} |")
        lines.append("")
    presence_lines = []
    for row in rows:
        pairs = [pair for stats in results[row].values() for pair in stats.presence]
        negatives = [s for s, p in pairs if not p]
        positives = [s for s, p in pairs if p]
        if pairs:
            tpr = np.mean([s >= 0.5 for s in positives]) if positives else float("nan")
            fpr = np.mean([s >= 0.5 for s in negatives]) if negatives else float("nan")
            presence_lines.append(
                f"| {row} | {roc_auc(pairs):.3f} | {len(positives)} | {len(negatives)} | {100 * tpr:.1f} | {100 * fpr:.1f} |"
            )
    if presence_lines:
        lines += [
            "Presence of the reported faces (all scenes): ROC AUC of `presence` for faces matching a ground-truth face vs not (reported false positives)",
            "",
            "| pipeline | AUC | matched | unmatched | matched with presence >= 0.5, % | unmatched with presence >= 0.5, % |",
            "|---|---:|---:|---:|---:|---:|",
        ] + presence_lines
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ detectors
DETECTOR_CONFIGS = (  # (label, DetectorOptions keyword arguments)
    ("YuNet, longer side 320", dict(model="yunet", max_input_side_px=320)),
    ("YuNet, longer side 640 (default)", dict(model="yunet", max_input_side_px=640)),
    ("YuNet, longer side 960", dict(model="yunet", max_input_side_px=960)),
    ("YuNet, full resolution", dict(model="yunet", max_input_side_px=0)),
    ("YuNet, 640 + tiles", dict(model="yunet", max_input_side_px=640, tiles=True)),
    ("BlazeFace short range (Tasks)", dict(model="blazeface", max_input_side_px=0)),
    ("BlazeFace short range (Tasks), 640 + tiles", dict(model="blazeface", max_input_side_px=640, tiles=True)),
    ("BlazeFace ONNX, longer side 320", dict(model="blazeface-onnx", max_input_side_px=320)),
    ("BlazeFace ONNX, longer side 640 (+ a 320 pass)", dict(model="blazeface-onnx", max_input_side_px=640)),
    ("BlazeFace ONNX, 640 (+ 320) + tiles", dict(model="blazeface-onnx", max_input_side_px=640, tiles=True)),
)
SIZE_BINS_PX = (20.0, 64.0, 128.0, 192.0, 288.0)  # face size sqrt(w * h) of the landmark box, px: bins between, the last open
YAW_BINS_DEG = (0.0, 15.0, 30.0)  # |yaw|: 0-15, 15-30, >= 30 (the held-out faces turn up to ~50)


def _bin_labels(edges: tuple[float, ...], unit: str) -> list[str]:
    return [f"{a:g}-{b:g}{unit}" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]:g}{unit}"]


def _bin_of(value: float, edges: tuple[float, ...]) -> int:
    return int(np.searchsorted(np.asarray(edges), value, side="right")) - 1


class YawEstimator:
    """|yaw| of a face from its 68 ground-truth landmarks, degrees (0 = frontal): the 3DMM's mean face
    (``landmarks68_bases_v2.json``), turned by each yaw and pitch of a grid (2 and 5 degree steps), projected
    orthographically and fitted to the 51 inner landmarks (brows, eyes, nose, mouth: the jaw line of a turned 300W
    face is its silhouette, not the model's jaw) by a 2D similarity (roll, scale, shift); the best yaw of the grid.

    A label for binning the benchmark's faces (the held-out 300W photos turn up to ~60 degrees), not a tracker.
    """

    YAWS_DEG = np.arange(-90.0, 90.1, 2.0)
    PITCHES_DEG = np.arange(-40.0, 40.1, 5.0)

    def __init__(self, assets_dir: str | None):
        from drtn.assets import find_assets, load_json_asset

        path = find_assets(assets_dir).path("bfm/landmarks68_bases_v2.json")
        mean = np.asarray(load_json_asset(path, keys=("u_base",))["u_base"], np.float64).reshape(68, 3)[17:]
        mean = mean - mean.mean(axis=0)
        yaw, pitch = np.meshgrid(np.radians(self.YAWS_DEG), np.radians(self.PITCHES_DEG), indexing="ij")
        yaw, pitch = yaw.ravel(), pitch.ravel()
        x, y, z = mean.T
        turned_x = np.cos(yaw)[:, None] * x + np.sin(yaw)[:, None] * z  # R = Rx(pitch) @ Ry(yaw)
        turned_z = -np.sin(yaw)[:, None] * x + np.cos(yaw)[:, None] * z
        turned_y = np.cos(pitch)[:, None] * y - np.sin(pitch)[:, None] * turned_z
        self._projections = turned_x + 1j * turned_y  # (G, 51) model points seen from each grid pose, y up
        self._yaws = np.degrees(yaw)

    def __call__(self, landmarks_xy: np.ndarray) -> float:
        points = np.asarray(landmarks_xy, np.float64)[17:]
        target = points[:, 0] - 1j * points[:, 1]  # image y down -> up
        target = target - target.mean()
        projections = self._projections
        similarity = (np.conj(projections) @ target) / np.sum(np.abs(projections) ** 2, axis=1)  # roll + scale
        residual = np.sum(np.abs(target[None] - similarity[:, None] * projections) ** 2, axis=1)
        return float(abs(self._yaws[int(np.argmin(residual))]))


def _counted(truths) -> list:
    return [t for t in truths if t.visible >= VISIBLE_FOR_COUNT and t.size >= MIN_FACE_FOR_COUNT_PX]


def _match_detections(truths, detections) -> tuple[list[tuple[object, object]], int]:
    """Each counted face with the detection that found it (``None``: missed), and the number of detections on
    nothing.

    A detection finds a face when its centre lies in the face's landmark box and its size is within a factor 2
    of the face's; each detection finds one face at most. A detection on a hidden or tiny face is not a false one.
    """
    counted = _counted(truths)
    used, outcome = set(), []
    for truth in counted:
        box = _landmark_box(truth.landmarks)
        hit = None
        for index, detection in enumerate(detections):
            center = (detection.box_xyxy[:2] + detection.box_xyxy[2:]) / 2
            side = math.sqrt(
                max((detection.box_xyxy[2] - detection.box_xyxy[0]) * (detection.box_xyxy[3] - detection.box_xyxy[1]), 1e-6)
            )
            if (
                index not in used
                and box[0] <= center[0] <= box[2]
                and box[1] <= center[1] <= box[3]
                and 0.5 < side / truth.size < 2.0
            ):
                used.add(index)
                hit = detection
                break
        outcome.append((truth, hit))
    on_any = set()
    for index, detection in enumerate(detections):
        center = (detection.box_xyxy[:2] + detection.box_xyxy[2:]) / 2
        if any(b[0] <= center[0] <= b[2] and b[1] <= center[1] <= b[3] for b in (_landmark_box(t.landmarks) for t in truths)):
            on_any.add(index)
    return outcome, len(detections) - len(on_any)


def _detection_hits(truths, detections) -> tuple[int, int, int]:
    """(counted faces, of them found, detections on nothing); see :func:`_match_detections`."""
    outcome, false = _match_detections(truths, detections)
    return len(outcome), sum(hit is not None for _, hit in outcome), false


def _percent(found: int, total: int) -> str:
    return f"{100 * found / total:.1f}" if total else "-"


def _iou_cell(ious: list[float]) -> str:
    if not ious:
        return "-"
    return f"{float(np.median(ious)):.2f} ({100 * float(np.mean(np.asarray(ious) > 0.5)):.0f} %)"


def shared_photos(data) -> list[np.ndarray]:
    """The shared sample photos (``samples/images`` beside the data folder), BGR; empty when absent."""
    import cv2

    folder = Path(data).parent / "samples" / "images"
    images = [cv2.imread(str(path)) for path in sorted(folder.glob("*")) if path.suffix.lower() in (".jpg", ".png")]
    return [image for image in images if image is not None]


def run_detector_comparison(
    scenes: list[Scene], assets_dir: str | None, every: int = 4, configs=DETECTOR_CONFIGS, yaw=None, photos=None
) -> str:
    """Recall, false detections and cost of each detector setting on the multi-face scenes (every ``every``-th
    frame), by frame size; then recall by face size and by |yaw| (all frame sizes together); then the agreement
    of the boxes with YuNet's and MediaPipe's (when among ``configs``) on those faces and on ``photos``; markdown.

    Args:
        yaw: ``landmarks (68, 2) -> |yaw| degrees`` (default :class:`YawEstimator` on the asset folder).
        photos: BGR images for the box agreement (e.g. :func:`shared_photos`).
    """
    from realtime.detector import DetectorOptions, FaceDetector

    yaw = yaw or YawEstimator(assets_dir)
    sizes = sorted({scene.size for scene in scenes if scene.kind == "multi"}, key=lambda s: s[0] * s[1])
    frames = {
        size: [
            f
            for scene in scenes
            if scene.kind == "multi" and scene.size == size
            for f in (scene.render(i) for i in range(0, len(scene), every))
        ]
        for size in sizes
    }
    size_labels, yaw_labels = _bin_labels(SIZE_BINS_PX, " px"), _bin_labels(YAW_BINS_DEG, " deg")
    size_totals, yaw_totals = [0] * len(size_labels), [0] * len(yaw_labels)
    truth_bins = {}  # (frame size, frame number, face id) -> (size bin, yaw bin)
    for size in sizes:
        for number, frame in enumerate(frames[size]):
            for truth in _counted(frame.truths):
                bins = (_bin_of(truth.size, SIZE_BINS_PX), _bin_of(yaw(truth.landmarks), YAW_BINS_DEG))
                truth_bins[(size, number, truth.face_id)] = bins
                size_totals[bins[0]] += 1
                yaw_totals[bins[1]] += 1
    lines = [
        f"Detectors on the multi-face scenes (every {every}th frame; 640x480 with a close-up of two large faces, 1920x1080 "
        "a crowd of eight smaller ones): recall of visible faces %, false detections per frame, median ms per frame (OpenCV and ONNX Runtime on 1 thread)",
        "",
        "| detector | " + " | ".join(f"{w}x{h} recall | FP/frame | ms" for w, h in sizes) + " |",
        "|---|" + "---:|" * (3 * len(sizes)),
    ]
    by_bin = [
        "",
        "The same detections: recall % by face size (sqrt(w*h) of the landmark box) and by |yaw| (the mean 3DMM face "
        "fitted to the true landmarks), all frame sizes together; faces per bin in the header",
        "",
        "| detector | "
        + " | ".join(f"{label} ({n})" for label, n in zip(size_labels, size_totals))
        + " | "
        + " | ".join(f"yaw {label} ({n})" for label, n in zip(yaw_labels, yaw_totals))
        + " |",
        "|---|" + "---:|" * (len(size_labels) + len(yaw_labels)),
    ]
    from contextlib import ExitStack

    import cv2

    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # YuNet on one thread, like the ONNX Runtime detector
    with ExitStack() as stack:
        stack.callback(cv2.setNumThreads, cv2_threads)
        detectors = [stack.enter_context(FaceDetector(DetectorOptions(**kwargs), assets_dir)) for _, kwargs in configs]
        for detector in detectors:
            detector.detect(frames[sizes[0]][0].image)  # warm up
        # every frame through every detector in turn (the order rotating), so that a busy moment of the machine
        # falls on all of them; the cost is the median over the frames
        seconds = {(row, size): [] for row in range(len(configs)) for size in sizes}
        tallies = {(row, size): [0, 0, 0] for row in range(len(configs)) for size in sizes}  # counted, found, false
        size_found = [[0] * len(size_labels) for _ in configs]
        yaw_found = [[0] * len(yaw_labels) for _ in configs]
        boxes = {}  # (row, frame size, frame number, face id) -> the box that found the face
        turn = 0
        for size in sizes:
            for number, frame in enumerate(frames[size]):
                turn += 1
                for offset in range(len(configs)):
                    row = (turn + offset) % len(configs)
                    tick = time.perf_counter()
                    detections = detectors[row].detect(frame.image)
                    seconds[(row, size)].append(time.perf_counter() - tick)
                    outcome, extra = _match_detections(frame.truths, detections)
                    tally = tallies[(row, size)]
                    tally[0], tally[2] = tally[0] + len(outcome), tally[2] + extra
                    for truth, detection in outcome:
                        hit = detection is not None
                        tally[1] += hit
                        size_bin, yaw_bin = truth_bins[(size, number, truth.face_id)]
                        size_found[row][size_bin] += hit
                        yaw_found[row][yaw_bin] += hit
                        if hit:
                            boxes[(row, size, number, truth.face_id)] = detection.box_xyxy
        photo_found = [[d.detect(image) for image in photos or []] for d in detectors]
    references = [
        (name, next((row for row, (_, kwargs) in enumerate(configs) if kwargs == wanted), None))
        for name, wanted in (
            ("YuNet 640", dict(model="yunet", max_input_side_px=640)),
            ("MediaPipe", dict(model="blazeface", max_input_side_px=0)),
        )
    ]
    references = [(name, ref) for name, ref in references if ref is not None]
    agreement = [
        "",
        "Box agreement: IoU of each detector's box with the reference's box on the same face, median (and % > 0.5); "
        f"benchmark faces both found, then the {len(photos or [])} shared photos (every face the reference finds, "
        "missed = IoU 0)",
        "",
        "| detector | "
        + " | ".join(f"benchmark IoU with {name}" for name, _ in references)
        + (" | photos: faces | " + " | ".join(f"photo IoU with {name}" for name, _ in references) if photos else "")
        + " |",
        "|---|" + "---:|" * (len(references) + ((1 + len(references)) if photos else 0)),
    ]
    for row, (label, _) in enumerate(configs):
        cells = []
        for _, ref in references:
            ious = [
                _iou(box, boxes[(ref,) + key[1:]]) for key, box in boxes.items() if key[0] == row and (ref,) + key[1:] in boxes
            ]
            cells.append(_iou_cell(ious))
        if photos:
            cells.append(str(sum(len(found) for found in photo_found[row])))
            for _, ref in references:
                ious = [
                    max((_iou(face.box_xyxy, mine.box_xyxy) for mine in mine_found), default=0.0)
                    for ref_found, mine_found in zip(photo_found[ref], photo_found[row])
                    for face in ref_found
                ]
                cells.append(_iou_cell(ious))
        agreement.append(f"| {label} | " + " | ".join(cells) + " |")
    for row, (label, _) in enumerate(configs):
        cells = []
        for size in sizes:
            counted, found, false = tallies[(row, size)]
            ms = 1000 * float(np.median(seconds[(row, size)])) if seconds[(row, size)] else float("nan")
            cells.append(f"{_percent(found, counted)} | {false / max(len(frames[size]), 1):.2f} | {ms:.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        by_bin.append(
            f"| {label} | "
            + " | ".join(_percent(f, n) for f, n in zip(size_found[row], size_totals))
            + " | "
            + " | ".join(_percent(f, n) for f, n in zip(yaw_found[row], yaw_totals))
            + " |"
        )
    return "\n".join(lines + by_bin + (agreement if references else []))


CAUSAL_ROW = "ours (causal smoothing: live default)"
OFFLINE_ROW = "ours (offline smoothing: video default)"
OFF_ROW = "ours (smoothing off)"
FLIP_CAUSAL_ROW = "ours + flip (causal smoothing)"
FLIP_OFFLINE_ROW = "ours + flip (offline smoothing)"
FLIP_OFF_ROW = "ours + flip (smoothing off)"


def build_rows(
    assets_dir: str | None,
    threads: int = 1,
    only: tuple[str, ...] | None = None,
    flip_average: bool = False,
    offline=None,
):
    """The benchmark rows: ours with causal smoothing (``live``'s default), with offline smoothing (``video``'s
    default: :class:`realtime.offline_smoothing.FixedLagSmoother`, as ``video`` applies it) and without; ours
    keeping tracks whatever their presence (its presence ROC is the check's own), our tracker with the teacher,
    the per-frame peer; with ``flip_average`` also the three smoothing rows with mirror-averaged inference
    (``PipelineOptions.flip_average``). ``offline``: :class:`realtime.smoothing.OfflineSmoothingOptions` of the
    offline rows (default: the product's)."""
    from dataclasses import replace

    from drtn.morphable import MorphableModel
    from realtime.arguments import create_backend
    from realtime.detector import DetectorOptions
    from realtime.pipeline import PipelineOptions, RunningMode

    morphable = MorphableModel.load(assets_dir)
    ours = create_backend("onnxruntime", assets_dir, threads=threads)
    teacher = create_backend("teacher", assets_dir, threads=threads)
    default = PipelineOptions(assets_dir=assets_dir, compute_dense=False, compute_blendshapes=False)
    offline_smoothing = replace(default.smoothing, mode="offline", **({"offline": offline} if offline is not None else {}))
    smoothing = {
        "causal": default.smoothing,
        "offline": offline_smoothing,
        "off": replace(default.smoothing, enabled=False),
    }
    named = [(CAUSAL_ROW, "causal", False), (OFFLINE_ROW, "offline", False), (OFF_ROW, "off", False)]
    if flip_average:
        named += [(FLIP_CAUSAL_ROW, "causal", True), (FLIP_OFFLINE_ROW, "offline", True), (FLIP_OFF_ROW, "off", True)]
    specs = {
        name: (lambda name=name, mode=mode, flip=flip: OurTracker(
            name, ours, replace(default, smoothing=smoothing[mode], flip_average=flip), morphable
        ))
        for name, mode, flip in named
    }  # fmt: skip
    specs.update(
        {
            "ours (presence not used)": lambda: OurTracker(
                "ours (presence not used)",
                ours,
                replace(default, tracker=replace(default.tracker, min_presence=0.0)),
                morphable,
            ),
            "ours, teacher backend (tracking without our model)": lambda: OurTracker(
                "ours, teacher backend (tracking without our model)", teacher, default, morphable
            ),
            "peer: BlazeFace every frame + teacher": lambda: PerFramePeer(
                "peer: BlazeFace every frame + teacher",
                teacher,
                PipelineOptions(
                    running_mode=RunningMode.IMAGE,
                    assets_dir=assets_dir,
                    compute_dense=False,
                    compute_blendshapes=False,
                    detector=DetectorOptions(model="blazeface"),
                ),
                morphable,
            ),
        }
    )
    return [make() for name, make in specs.items() if only is None or name in only]


def detector_scenes(data, scale: str, scenes: list[Scene]) -> list[Scene]:
    """The multi-face scenes of ``scenes``, a 640x480 webcam close-up of two large faces (0.55-0.9 of the frame
    height; 60 frames, 16 tiny) and a 1920x1080 crowd of eight smaller faces (27-324 px; 120 frames, 16 tiny)."""
    from realtime.tracking_scenes import load_held_out_faces, multi_face_scene

    crowd = load_held_out_faces(data, 10, seed=7)
    return [s for s in scenes if s.kind == "multi"] + [
        multi_face_scene(
            crowd[8:],
            seed=78,
            frames=16 if scale == "tiny" else 60,
            size=(640, 480),
            distractors=2,
            name="multi-640x480-closeup",
            face_range=(0.55, 0.9),
        ),
        multi_face_scene(
            crowd[:8],
            seed=77,
            frames=16 if scale == "tiny" else 120,
            size=(1920, 1080),
            distractors=8,
            name="multi-1920x1080-0",
            face_range=(0.025, 0.3),
        ),
    ]


def run_tracking_bench(args: argparse.Namespace) -> int:
    """``main.py bench --tracking``: print (and with ``-o`` write) the markdown tables.

    Reads from ``args`` (each optional): ``assets``; ``data`` (default ``data`` beside the asset folder);
    ``tiny`` (a small quick version); ``output``; ``flip_average`` (also the ``ours + flip`` rows); ``scene_seed``
    (default 0, the reported tables; the smoothing defaults were tuned on seeds 1 and 2).
    """
    from realtime.threads import limit_blas_threads

    limit_blas_threads(1)
    assets = getattr(args, "assets", None)
    data = getattr(args, "data", None) or default_data_dir(assets)
    scale = "tiny" if getattr(args, "tiny", False) else "full"
    seed = int(getattr(args, "scene_seed", None) or 0)
    scenes = standard_scenes(data, scale, seed=seed)
    rows = build_rows(assets, flip_average=getattr(args, "flip_average", False))
    start = time.perf_counter()
    try:
        results = run_benchmark(rows, scenes)
    finally:
        for row in rows:
            row.close()
    frames = sum(len(s) for s in scenes)
    note = (
        f"Tracking benchmark (`main.py bench --tracking`{' --tiny' if scale == 'tiny' else ''}): {len(scenes)} scenes, {frames} frames "
        f"of held-out faces (300W HELEN test + AFW), scene seed {seed}; {time.perf_counter() - start:.0f} s"
    )
    table = markdown(results, note)
    table += "\n\n" + run_detector_comparison(detector_scenes(data, scale, scenes), assets, photos=shared_photos(data))
    print(table)
    output = getattr(args, "output", None)
    if output:
        from drtn.outputs import atomic_write_text

        atomic_write_text(output, table + "\n")  # checked before the run (export.cli.check_bench_output)
    return 0
