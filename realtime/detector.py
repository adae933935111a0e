"""Face detection: OpenCV's YuNet, MediaPipe Tasks BlazeFace or a BlazeFace ONNX, model files from the asset folder.

Current MediaPipe wheels (1.x) ship no models, so every detector loads its model from the asset folder
(``--assets`` / ``DRTN_ASSETS``):

- ``yunet`` (``detectors/face_detection_yunet_2023mar.onnx``, MIT): OpenCV's multi-scale detector with 5
  keypoints; faces of ~10-300 px per pass, profiles included.
- ``blazeface`` (``mediapipe/blaze_face_short_range.tflite``, Apache-2.0): MediaPipe Tasks ``FaceDetector``,
  BlazeFace short range (faces within ~2 m: webcam use), 6 keypoints.
- ``blazeface-onnx`` (``teacher/blazeface_320.onnx``, MIT, from Shubhamai/StableView): a BlazeFace backbone with
  a RetinaFace-style SSD head (prior boxes on strides 8 and 16, variances 0.1 / 0.2, 5 keypoints), run on ONNX
  Runtime (1 thread) at the frame's own size (after ``max_input_side_px``), padded to a multiple of 32, plus a
  pass at longer side 320 px for large faces.

All return :class:`Detection` in full-frame pixels, best score first.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from drtn.assets import find_assets
from drtn.configs import check_known_keys
from realtime.sources import to_bgr
from realtime.tracker import box_iou

LOGGER = logging.getLogger(__name__)

MODEL_FILES = {
    "yunet": "detectors/face_detection_yunet_2023mar.onnx",
    "blazeface": "mediapipe/blaze_face_short_range.tflite",
    "blazeface-onnx": "teacher/blazeface_320.onnx",
}


@dataclass(frozen=True)
class DetectorOptions:
    """Options of :class:`FaceDetector`.

    Attributes:
        model: ``"yunet"`` (default; multi-scale, profiles), ``"blazeface"`` (MediaPipe Tasks, short range) or
            ``"blazeface-onnx"`` (the StableView BlazeFace on ONNX Runtime; 5 keypoints like YuNet).
        min_confidence: detections scoring below this are dropped, in [0, 1].
        min_face_size_px: detections whose box side (mean of width and height) is smaller are dropped; the
            reconstruction of a face a few pixels wide is noise.
        max_input_side_px: larger frames are shrunk to this longer side before detection (0 = never).
        tiles: on a frame more than 1.25x larger than ``max_input_side_px``, also detect on 2x2 overlapping
            tiles (each shrunk to ``max_input_side_px``): small and turned faces the shrunk frame loses are
            found, for ~5x the cost of one pass; boxes are merged by non-maximum suppression.
    """

    model: str = "yunet"
    min_confidence: float = 0.5
    min_face_size_px: float = 12.0
    max_input_side_px: int = 640
    tiles: bool = False

    def __post_init__(self) -> None:
        if self.model not in MODEL_FILES:
            raise ValueError(f"DetectorOptions.model: expected one of {sorted(MODEL_FILES)}, got {self.model!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"DetectorOptions.min_confidence: expected a value in [0, 1], got {self.min_confidence}")
        if self.min_face_size_px < 0:
            raise ValueError(f"DetectorOptions.min_face_size_px: expected >= 0, got {self.min_face_size_px}")
        if self.max_input_side_px < 0:
            raise ValueError(f"DetectorOptions.max_input_side_px: expected >= 0, got {self.max_input_side_px}")

    @classmethod
    def from_dict(cls, values: dict) -> "DetectorOptions":
        """Build from a dict; an unknown key raises ``ValueError`` (no silent defaults for typos)."""
        check_known_keys(cls, values)
        return cls(**values)


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box_xyxy: (4,) float64 ``(x0, y0, x1, y1)`` image pixels, clipped to the image.
        score: detector confidence in [0, 1].
        keypoints_xy: (K, 2) float64 image pixels: the eyes, nose tip and mouth first (YuNet: right eye, left
            eye, nose tip, right and left mouth corner; BlazeFace: right eye, left eye, nose tip, mouth centre,
            right ear, left ear; the subject's right/left).
    """

    box_xyxy: np.ndarray
    score: float
    keypoints_xy: np.ndarray = field(default_factory=lambda: np.zeros((5, 2)))


class _YuNet:
    def __init__(self, model_path: Path, options: DetectorOptions):
        if not hasattr(cv2, "FaceDetectorYN"):
            raise ImportError("the yunet detector needs OpenCV >= 4.8 (cv2.FaceDetectorYN): pip install opencv-contrib-python")
        self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), options.min_confidence, 0.3, 5000)
        self._size = (0, 0)

    def __call__(self, image_bgr: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        height, width = image_bgr.shape[:2]
        if self._size != (width, height):
            self._net.setInputSize((width, height))
            self._size = (width, height)
        _, faces = self._net.detect(image_bgr)
        found = []
        for row in faces if faces is not None else []:
            x, y, w, h = (float(v) for v in row[:4])
            found.append((np.array([x, y, x + w, y + h]), float(row[14]), np.asarray(row[4:14], np.float64).reshape(5, 2)))
        return found

    def close(self) -> None:
        self._net = None


class _BlazeFace:
    def __init__(self, model_path: Path, options: DetectorOptions):
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise ImportError("the blazeface detector needs MediaPipe's Tasks API: pip install 'mediapipe>=1.2'") from error
        self._mp = mp
        detector_options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=options.min_confidence,
        )
        self._detector = vision.FaceDetector.create_from_options(detector_options)

    def __call__(self, image_bgr: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        height, width = image_bgr.shape[:2]
        rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        found = []
        for raw in result.detections:
            box = raw.bounding_box
            x0, y0 = float(box.origin_x), float(box.origin_y)
            score = float(raw.categories[0].score) if raw.categories else 0.0
            keypoints = np.array([[k.x * width, k.y * height] for k in raw.keypoints], np.float64).reshape(-1, 2)
            found.append((np.array([x0, y0, x0 + float(box.width), y0 + float(box.height)]), score, keypoints))
        return found

    def close(self) -> None:
        self._detector.close()


class _BlazeFaceOnnx:
    """``teacher/blazeface_320.onnx`` on ONNX Runtime: SSD prior boxes decoded, then non-maximum suppression.

    The network (input ``input`` (1, 3, H, W) float32 BGR in 0-255, as StableView feeds it; any H, W) puts
    per prior box: ``boxes`` (1, N, 4) offsets ``(dx, dy, dw, dh)``, ``scores`` (1, N, 2) softmax (background,
    face), ``landmark`` (1, N, 10) offsets of 5 points. Priors: on the stride-8 grid boxes of 8 and 11 px, on the
    stride-16 grid 14, 19, 26, 38, 64 and 149 px, at cell centres, row-major with the sizes innermost; decoding
    ``centre = prior_centre + d * 0.1 * prior_size``, ``size = prior_size * exp(d * 0.2)`` (keypoints like centres).
    An input larger than 1.25 x 320 px is also run shrunk to 320 px (the priors end at 149 px: a close webcam face
    is found there), and both passes' boxes are merged by IoU non-maximum suppression. Subtracting RetinaFace's
    channel means (104, 117, 123) instead finds the same faces but adds 0.2-0.5 false detections per frame on the
    tracking benchmark's distractors (raw pixels: 0.00-0.03).
    """

    STRIDES = (8, 16)
    PRIOR_SIZES_PX = ((8.0, 11.0), (14.0, 19.0, 26.0, 38.0, 64.0, 149.0))
    VARIANCES = (0.1, 0.2)
    PAD_TO = 32
    NATIVE_SIDE_PX = 320  # a second pass at this longer side on larger inputs finds the faces over ~150 px
    NMS_IOU = 0.4
    MAX_CANDIDATES = 750

    def __init__(self, model_path: Path, options: DetectorOptions):
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise ImportError("the blazeface-onnx detector needs ONNX Runtime: pip install onnxruntime") from error
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = 1
        session_options.inter_op_num_threads = 1
        session_options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(model_path), session_options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime's own exception types (InvalidProtobuf, Fail, ...): not RuntimeErrors
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"ONNX Runtime cannot load it: {reason.split(' failed:')[-1].strip()}") from None
        inputs = [(i.name, len(i.shape)) for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if len(inputs) != 1 or inputs[0][1] != 4 or outputs != ["boxes", "scores", "landmark"]:
            raise ValueError(f"not the BlazeFace ONNX detector (inputs {inputs}, outputs {outputs})")
        self._input = inputs[0][0]
        self._min_confidence = options.min_confidence
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def _priors_for(self, height: int, width: int) -> np.ndarray:
        """(N, 4) prior boxes ``(cx, cy, w, h)`` in input pixels of a padded (height, width) input."""
        key = (height, width)
        if key not in self._priors:
            blocks = []
            for stride, sizes in zip(self.STRIDES, self.PRIOR_SIZES_PX):
                ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
                centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride
                block = np.empty((len(centres), len(sizes), 4), np.float32)
                block[:, :, :2] = centres[:, None, :]
                block[:, :, 2:] = np.asarray(sizes, np.float32)[None, :, None]
                blocks.append(block.reshape(-1, 4))
            self._priors[key] = np.concatenate(blocks)
        return self._priors[key]

    def __call__(self, image_bgr: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        height, width = image_bgr.shape[:2]
        candidates = [self._candidates(image_bgr, 1.0)]
        if max(height, width) > 1.25 * self.NATIVE_SIDE_PX:  # large faces: the priors stop at 149 px
            shrink = self.NATIVE_SIDE_PX / max(height, width)
            small = cv2.resize(
                image_bgr, (max(round(width * shrink), 1), max(round(height * shrink), 1)), interpolation=cv2.INTER_AREA
            )
            candidates.append(self._candidates(small, width / small.shape[1]))
        box = np.concatenate([c[0] for c in candidates])
        if len(box) == 0:
            return []
        score = np.concatenate([c[1] for c in candidates])
        points = np.concatenate([c[2] for c in candidates])
        order = np.argsort(-score, kind="stable")
        box, score, points = box[order], score[order], points[order]
        return [(box[i], float(score[i]), points[i]) for i in _box_nms(box, self.NMS_IOU)]

    def _candidates(self, image_bgr: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decoded boxes (M, 4) xyxy, scores (M,), keypoints (M, 5, 2) above the confidence threshold, in the
        pixels of ``image_bgr`` times ``scale``."""
        height, width = image_bgr.shape[:2]
        padded_h = -(-height // self.PAD_TO) * self.PAD_TO
        padded_w = -(-width // self.PAD_TO) * self.PAD_TO
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)  # black padding on the right and bottom
        blob[0, :, :height, :width] = image_bgr.transpose(2, 0, 1)
        boxes, scores, landmarks = self._session.run(None, {self._input: blob})
        priors = self._priors_for(padded_h, padded_w)
        if boxes.shape[1] != len(priors):
            raise RuntimeError(f"blazeface-onnx: {boxes.shape[1]} outputs for {len(priors)} prior boxes")
        score = scores[0, :, 1]
        keep = np.flatnonzero(score >= self._min_confidence)
        keep = keep[np.argsort(-score[keep], kind="stable")][: self.MAX_CANDIDATES]
        prior = priors[keep].astype(np.float64)
        delta = boxes[0, keep].astype(np.float64)
        centre = prior[:, :2] + delta[:, :2] * self.VARIANCES[0] * prior[:, 2:]
        size = prior[:, 2:] * np.exp(delta[:, 2:] * self.VARIANCES[1])
        box = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        offsets = landmarks[0, keep].astype(np.float64).reshape(-1, 5, 2)
        points = prior[:, None, :2] + offsets * self.VARIANCES[0] * prior[:, None, 2:]
        return box * scale, score[keep].astype(np.float64), points * scale

    def close(self) -> None:
        self._session = None


def _box_nms(boxes: np.ndarray, iou_threshold: float) -> list[int]:
    """Indices of the boxes kept by greedy IoU non-maximum suppression; ``boxes`` (N, 4) xyxy, best first."""
    order = np.arange(len(boxes))
    kept = []
    while len(order):
        first, rest = order[0], order[1:]
        kept.append(int(first))
        order = rest[box_iou(boxes[first], boxes[rest])[0] <= iou_threshold]
    return kept


def _non_maximum_suppression(detections: list[Detection], iou_threshold: float) -> list[Detection]:
    """Keep the best-scoring of boxes overlapping more than ``iou_threshold`` (intersection over the smaller box,
    so a face cut by a tile border does not survive beside its whole box)."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        a = detection.box_xyxy
        duplicate = False
        for other in kept:
            b = other.box_xyxy
            inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
            smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            if smaller > 0 and inter / smaller > iou_threshold:
                duplicate = True
                break
        if not duplicate:
            kept.append(detection)
    return kept


class FaceDetector:
    """Face detector: ``detect(image_bgr) -> list[Detection]``, best score first.

    Use as a context manager or call :meth:`close`. Not thread-safe: one detector per thread.

    Args:
        options: detector options.
        assets_dir: the asset folder holding the model file (default ``DRTN_ASSETS``, then the user cache).
    """

    def __init__(self, options: DetectorOptions | None = None, assets_dir: str | os.PathLike | None = None):
        self.options = options or DetectorOptions()
        model_path = find_assets(assets_dir, required=(MODEL_FILES[self.options.model],)).path(MODEL_FILES[self.options.model])
        try:
            self._impl = {"yunet": _YuNet, "blazeface": _BlazeFace, "blazeface-onnx": _BlazeFaceOnnx}[self.options.model](
                model_path, self.options
            )
        except (cv2.error, RuntimeError, ValueError) as error:  # a corrupt model file: one line naming it
            reason = (
                "OpenCV cannot parse it"
                if isinstance(error, cv2.error)
                else (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            )
            raise ValueError(
                f"cannot load the {self.options.model} face detector model {model_path}: corrupt or not a model file ({reason})"
            ) from None

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Detect faces.

        Args:
            image_bgr: (H, W, 3) uint8 BGR (grayscale and BGRA are converted).
        Returns:
            Detections sorted by score, highest first; empty when there is no face.
        """
        if self._impl is None:
            raise ValueError("FaceDetector is closed")
        image = to_bgr(image_bgr)
        height, width = image.shape[:2]
        if min(height, width) < 8:  # nothing to find, and the resamplers dislike degenerate frames
            return []
        passes = [(0, 0, width, height)]
        limit = self.options.max_input_side_px
        if self.options.tiles and limit and max(height, width) > 1.25 * limit:
            overlap_x, overlap_y = width // 10, height // 10
            half_w, half_h = width // 2, height // 2
            for x0, x1 in ((0, half_w + overlap_x), (half_w - overlap_x, width)):
                for y0, y1 in ((0, half_h + overlap_y), (half_h - overlap_y, height)):
                    passes.append((x0, y0, x1, y1))
        detections = []
        for x0, y0, x1, y1 in passes:
            detections += self._detect_region(image, x0, y0, x1, y1)
        if len(passes) > 1:
            detections = _non_maximum_suppression(detections, 0.4)
        detections.sort(key=lambda d: -d.score)
        return detections

    def _detect_region(self, image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> list[Detection]:
        """Detections in ``image[y0:y1, x0:x1]`` (shrunk to ``max_input_side_px``), in full-frame pixels."""
        height, width = image.shape[:2]
        region = image[y0:y1, x0:x1]
        scale = 1.0
        shrink = self.options.max_input_side_px / max(region.shape[:2])
        if self.options.max_input_side_px and shrink < 1.0:
            region = cv2.resize(
                region,
                (max(round(region.shape[1] * shrink), 1), max(round(region.shape[0] * shrink), 1)),
                interpolation=cv2.INTER_AREA,
            )
            scale = (x1 - x0) / region.shape[1]
        offset = np.array([x0, y0, x0, y0], np.float64)
        detections = []
        for box, score, keypoints in self._impl(np.ascontiguousarray(region)):
            box = box * scale + offset
            box = np.array([max(box[0], 0.0), max(box[1], 0.0), min(box[2], width - 1.0), min(box[3], height - 1.0)])
            if box[2] <= box[0] or box[3] <= box[1] or score < self.options.min_confidence:
                continue
            if (box[2] - box[0] + box[3] - box[1]) / 2 < self.options.min_face_size_px:
                continue
            detections.append(Detection(box, score, keypoints * scale + offset[:2]))
        return detections

    def close(self) -> None:
        if self._impl is not None:
            self._impl.close()
            self._impl = None

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
