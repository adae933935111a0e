"""Face detection with MediaPipe's BlazeFace models, shipped inside the ``mediapipe==0.10.21`` wheel.

``mp.solutions.face_detection`` loads its ``.tflite`` model from the installed package, so detection works
offline with nothing to download. Two models: ``short_range`` (faces within ~2 m, webcam use, ~3 ms at
640x480 on one core) and ``full_range`` (up to ~5 m, any video, ~6 ms).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from realtime.sources import to_bgr
from drtn.configs import check_known_keys

LOGGER = logging.getLogger(__name__)

_MODEL_SELECTION = {"short_range": 0, "full_range": 1}


@dataclass(frozen=True)
class DetectorOptions:
    """Options of :class:`FaceDetector`.

    Attributes:
        model: ``"full_range"`` (default; small and distant faces too) or ``"short_range"`` (close faces, faster).
        min_confidence: detections scoring below this are dropped, in [0, 1].
        min_face_size_px: detections whose box side (mean of width and height) is smaller are dropped; the
            reconstruction of a face a few pixels wide is noise.
        max_input_side_px: larger frames are shrunk to this longer side before detection (0 = never). The
            models see 128 or 192 pixels anyway; shrinking first saves converting megapixels.
    """

    model: str = "full_range"
    min_confidence: float = 0.5
    min_face_size_px: float = 12.0
    max_input_side_px: int = 640

    def __post_init__(self) -> None:
        if self.model not in _MODEL_SELECTION:
            raise ValueError(f"DetectorOptions.model: expected one of {sorted(_MODEL_SELECTION)}, got {self.model!r}")
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
        keypoints_xy: (6, 2) float64 image pixels: right eye, left eye, nose tip, mouth, right ear, left ear
            (MediaPipe order, the subject's right/left).
    """

    box_xyxy: np.ndarray
    score: float
    keypoints_xy: np.ndarray = field(default_factory=lambda: np.zeros((6, 2)))


class FaceDetector:
    """MediaPipe face detector: ``detect(image_bgr) -> list[Detection]``, best score first.

    Use as a context manager or call :meth:`close`. Not thread-safe: one detector per thread.
    """

    def __init__(self, options: DetectorOptions | None = None):
        self.options = options or DetectorOptions()
        try:
            import mediapipe as mp
        except ImportError as error:
            raise ImportError("face detection needs MediaPipe: pip install mediapipe==0.10.21") from error
        self._solution = mp.solutions.face_detection.FaceDetection(
            model_selection=_MODEL_SELECTION[self.options.model], min_detection_confidence=self.options.min_confidence
        )

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Detect faces.

        Args:
            image_bgr: (H, W, 3) uint8 BGR (grayscale and BGRA are converted).
        Returns:
            Detections sorted by score, highest first; empty when there is no face.
        """
        if self._solution is None:
            raise ValueError("FaceDetector is closed")
        image = to_bgr(image_bgr)
        height, width = image.shape[:2]
        if min(height, width) < 8:  # nothing to find, and MediaPipe's resampler dislikes degenerate frames
            return []
        shrink = self.options.max_input_side_px / max(height, width)
        if self.options.max_input_side_px and shrink < 1.0:
            image = cv2.resize(image, (max(round(width * shrink), 1), max(round(height * shrink), 1)), interpolation=cv2.INTER_AREA)
        # MediaPipe reports boxes relative to the image, so they scale back to the full frame as they are
        result = self._solution.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        detections = []
        for raw in result.detections or []:
            relative = raw.location_data.relative_bounding_box
            x0, y0 = relative.xmin * width, relative.ymin * height
            x1, y1 = x0 + relative.width * width, y0 + relative.height * height
            box = np.array([max(x0, 0.0), max(y0, 0.0), min(x1, width - 1.0), min(y1, height - 1.0)])
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            if (box[2] - box[0] + box[3] - box[1]) / 2 < self.options.min_face_size_px:
                continue
            keypoints = np.array([[k.x * width, k.y * height] for k in raw.location_data.relative_keypoints], dtype=np.float64)
            detections.append(Detection(box, float(raw.score[0]) if raw.score else 0.0, keypoints.reshape(-1, 2)))
        detections.sort(key=lambda d: -d.score)
        return detections

    def close(self) -> None:
        if self._solution is not None:
            self._solution.close()
            self._solution = None

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
