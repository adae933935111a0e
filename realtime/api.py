"""The Python API: 3D face tracking in the MediaPipe Tasks style (options, running mode, typed result).

::

    import cv2
    from realtime.api import FaceTracker, FaceTrackerOptions, RunningMode

    options = FaceTrackerOptions(running_mode=RunningMode.IMAGE)
    with FaceTracker.create_from_options(options) as tracker:
        result = tracker.detect(cv2.imread("photo.jpg"))
        for face in result.faces:
            face.yaw, face.pose.quaternion_wxyz, face.pose.matrix_image   # pose
            face.identity, face.expression                                 # (40,), (10,) coefficients
            face.landmarks_2d, face.vertices_image                        # (68, 2), (4096, 3) image pixels
            tracker.write_obj(face, "face.obj", image=photo)               # the 38,365-vertex mesh with UVs

Running modes, as MediaPipe's:

- ``IMAGE``: :meth:`FaceTracker.detect` -- every image stands alone (detector on each, no tracking state).
- ``VIDEO``: :meth:`FaceTracker.detect_for_video` with strictly increasing timestamps -- tracking and smoothing.
- ``LIVE_STREAM``: :meth:`FaceTracker.detect_async` -- a worker takes the newest frame and calls
  ``options.result_callback(result, image_bgr, timestamp_ms)``; frames arriving while it is busy are dropped.

Calling the method of another mode, or a non-increasing timestamp, raises ``ValueError``. No face gives a
result with an empty ``faces`` list, never ``None``. Faces are :class:`realtime.results.FaceOutput`.

(Not to be confused with :class:`realtime.tracker.FaceTracker`, the pipeline's internal track keeper.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from realtime.pipeline import FacePipeline, PipelineOptions, RunningMode
from realtime.results import FaceOutput

__all__ = ["FaceOutput", "FaceTracker", "FaceTrackerOptions", "FaceTrackerResult", "RunningMode"]


@dataclass(frozen=True)
class FaceTrackerResult:
    """The faces of one image.

    Attributes:
        faces: one :class:`~realtime.results.FaceOutput` per face (by track id); empty when there is none.
        timestamp_ms: the image's timestamp (0 in IMAGE mode).
        image_size: ``(width, height)``.
    """

    faces: list[FaceOutput]
    timestamp_ms: float
    image_size: tuple[int, int]


@dataclass(frozen=True)
class FaceTrackerOptions:
    """Options of :class:`FaceTracker`.

    Attributes:
        running_mode: IMAGE, VIDEO or LIVE_STREAM (see the module docstring).
        backend: ``"onnxruntime"`` (default, the bundled model), ``"torch"``, ``"tensorrt"`` or ``"teacher"``.
        assets_dir: the asset folder (``None``: ``$DRTN_ASSETS``, then ``~/.cache/drtn/assets``).
        max_faces: most faces at once.
        min_detection_confidence: face detector score threshold in [0, 1].
        detector_model: ``"yunet"`` (default), ``"blazeface"`` (MediaPipe Tasks) or ``"blazeface-onnx"`` (the BlazeFace
            ONNX on ONNX Runtime); see :mod:`realtime.detector`.
        smoothing: causal smoothing in VIDEO / LIVE_STREAM modes (each result returned with its own frame, as
            ``live``). The two-sided offline smoother of ``main.py video`` returns results frames late, which
            ``detect_for_video`` cannot: put a :class:`realtime.offline_smoothing.FixedLagSmoother` behind a
            :class:`realtime.pipeline.FacePipeline` for that (docs/realtime.md, "Offline smoothing").
        threads: inference threads of the backend.
        result_callback: ``(FaceTrackerResult, image_bgr, timestamp_ms) -> None``, LIVE_STREAM only.
    """

    running_mode: RunningMode = RunningMode.IMAGE
    backend: str = "onnxruntime"
    assets_dir: str | None = None
    max_faces: int = 4
    min_detection_confidence: float = 0.5
    detector_model: str = "yunet"
    smoothing: bool = True
    threads: int = 2
    result_callback: Callable[[FaceTrackerResult, np.ndarray, float], None] | None = field(default=None, repr=False)

    def __post_init__(self):
        if not isinstance(self.running_mode, RunningMode):
            raise ValueError(f"FaceTrackerOptions.running_mode: expected a RunningMode, got {self.running_mode!r}")
        live = self.running_mode is RunningMode.LIVE_STREAM
        if live != (self.result_callback is not None):
            raise ValueError(
                "FaceTrackerOptions: LIVE_STREAM mode needs a result_callback, and only LIVE_STREAM mode takes one"
            )
        if int(self.max_faces) < 1:
            raise ValueError(f"FaceTrackerOptions.max_faces: expected >= 1, got {self.max_faces}")
        if not 0.0 <= float(self.min_detection_confidence) <= 1.0:
            raise ValueError(
                f"FaceTrackerOptions.min_detection_confidence: expected a value in [0, 1], got {self.min_detection_confidence}"
            )

    def pipeline_options(self, callback=None) -> PipelineOptions:
        """The :class:`~realtime.pipeline.PipelineOptions` these options stand for."""
        from realtime.detector import DetectorOptions
        from realtime.smoothing import SmoothingOptions
        from realtime.tracker import TrackerOptions

        return PipelineOptions(
            running_mode=self.running_mode,
            assets_dir=self.assets_dir,
            detector=DetectorOptions(model=self.detector_model, min_confidence=float(self.min_detection_confidence)),
            tracker=TrackerOptions(max_faces=int(self.max_faces)),
            smoothing=SmoothingOptions(enabled=bool(self.smoothing)),
            result_callback=callback,
        )


class FaceTracker:
    """Detects, tracks and reconstructs faces in 3D (see the module docstring).

    Args:
        options: :class:`FaceTrackerOptions`.
        backend: an already created inference backend (default: ``options.backend`` from
            :func:`export.backends.create_backend`, the bundled model).
    """

    def __init__(self, options: FaceTrackerOptions | None = None, backend=None):
        self.options = options or FaceTrackerOptions()
        if backend is None:
            from export.backends import create_backend

            backend = create_backend(self.options.backend, assets=self.options.assets_dir, threads=self.options.threads)
        callback = self._on_live_result if self.options.running_mode is RunningMode.LIVE_STREAM else None
        self._pipeline = FacePipeline(backend, self.options.pipeline_options(callback))
        self._topology = None

    @classmethod
    def create_from_options(cls, options: FaceTrackerOptions) -> "FaceTracker":
        return cls(options)

    # ------------------------------------------------------------------------------------------ detection
    def detect(self, image_bgr: np.ndarray) -> FaceTrackerResult:
        """IMAGE mode: the faces of one (H, W[, 3|4]) uint8 BGR(A) or grayscale image."""
        self._require(RunningMode.IMAGE, "detect")
        return self._result(self._pipeline.process(image_bgr))

    def detect_for_video(self, image_bgr: np.ndarray, timestamp_ms: float) -> FaceTrackerResult:
        """VIDEO mode: the faces of one frame; ``timestamp_ms`` must increase from call to call."""
        self._require(RunningMode.VIDEO, "detect_for_video")
        return self._result(self._pipeline.process(image_bgr, float(timestamp_ms)))

    def detect_async(self, image_bgr: np.ndarray, timestamp_ms: float) -> None:
        """LIVE_STREAM mode: queue a frame; the result goes to ``options.result_callback``."""
        self._require(RunningMode.LIVE_STREAM, "detect_async")
        self._pipeline.process_async(image_bgr, float(timestamp_ms))

    # ------------------------------------------------------------------------------------------ meshes
    def mesh(self, face: FaceOutput, image_size: tuple[int, int]):
        """The face's 38,365-vertex mesh with UVs (:class:`realtime.meshio.FaceMesh`, y-up mesh frame)."""
        from realtime.meshio import MeshTopology, face_mesh

        if self._topology is None:
            self._topology = MeshTopology.load(self._pipeline.morphable, self.options.assets_dir)
        return face_mesh(self._pipeline.morphable, face, self._pipeline.crop_size, image_size, self._topology)

    def write_obj(self, face: FaceOutput, path: str | Path, image: np.ndarray, texture: bool = True) -> list[Path]:
        """Write the face's mesh as OBJ with UVs (and a texture sampled from ``image``); returns the files."""
        from realtime.meshio import sample_texture, write_obj

        mesh = self.mesh(face, (image.shape[1], image.shape[0]))
        return write_obj(path, mesh, sample_texture(image, mesh, self._topology) if texture else None)

    def write_ply(self, face: FaceOutput, path: str | Path, image: np.ndarray, colors: bool = True) -> Path:
        """Write the face's mesh as binary PLY (UVs as ``s``, ``t``; vertex colours from ``image``)."""
        from realtime.meshio import sample_vertex_colors, write_ply

        mesh = self.mesh(face, (image.shape[1], image.shape[0]))
        return write_ply(path, mesh, sample_vertex_colors(image, mesh) if colors else None)

    # ------------------------------------------------------------------------------------------ lifetime
    def close(self) -> None:
        self._pipeline.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ internals
    def _require(self, mode: RunningMode, method: str) -> None:
        if self.options.running_mode is not mode:
            raise ValueError(
                f"FaceTracker.{method} is for {mode.name} mode; this tracker runs in {self.options.running_mode.name} mode"
            )

    def _result(self, frame_result) -> FaceTrackerResult:
        faces = [FaceOutput.from_face(face, self._pipeline.crop_size) for face in frame_result.faces]
        return FaceTrackerResult(faces, float(frame_result.timestamp_ms), tuple(frame_result.image_size))

    def _on_live_result(self, frame_result, frame) -> None:
        self.options.result_callback(self._result(frame_result), frame.image_bgr, frame.timestamp_ms)
