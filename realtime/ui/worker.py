"""Capture + inference off the GUI thread, and recording of annotated video.

:class:`PipelineWorker` (a ``QThread``) reads frames, runs the :class:`~realtime.pipeline.FacePipeline`,
builds the avatar mesh, and publishes a :class:`Packet` in a one-slot mailbox: the GUI always takes the
newest packet and never queues old ones (``result_ready`` is emitted only when the GUI has taken the last).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from PyQt6 import QtCore, QtGui

from realtime.render.faces import FaceDrawOptions, avatar_mesh, face_draws
from realtime.ui.options import LiveOptions, find_bundled_clip

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewSettings:
    """The GUI's toggles, read by the worker (avatar, recording) and the widgets. Replaced, never mutated."""

    draw: FaceDrawOptions = FaceDrawOptions()
    avatar_mesh: str = "dense"
    avatar_follow_pose: bool = False


@dataclass(frozen=True)
class Packet:
    """One processed frame for the GUI.

    Attributes:
        frame: the source :class:`~realtime.sources.Frame` (image_bgr, timestamp_ms, index).
        result: the pipeline's :class:`~realtime.pipeline.FrameResult`.
        triangles: (T, 3) int32 triangles of ``FaceResult.vertices_image``.
        avatar: ``(vertices (K, 3), triangles (T, 3))`` of the first face in a neutral frame, or None.
        sequence: packets published so far by this worker (1 for the first).
        processing_fps: frames per second of the worker loop (moving average).
        backend: backend kind that produced the result.
    """

    frame: object
    result: object
    triangles: np.ndarray
    avatar: tuple[np.ndarray, np.ndarray] | None
    sequence: int
    processing_fps: float
    backend: str


class QtOffscreenContext:
    """An OpenGL context on a ``QOffscreenSurface``, usable from a worker thread.

    Implements the :class:`realtime.render.context.GLContext` protocol so the headless
    :class:`~realtime.render.offscreen.OverlayRenderer` can record with the same GL as the widgets. Create it on
    the thread that will render; the surface must come from the GUI thread.
    """

    def __init__(self, surface: QtGui.QOffscreenSurface):
        self._surface = surface
        self._context = QtGui.QOpenGLContext()
        self._context.setFormat(surface.requestedFormat())
        if not self._context.create():
            raise RuntimeError("could not create a Qt OpenGL context for recording")
        version = self._context.format().version()
        self.description = f"Qt offscreen OpenGL {version[0]}.{version[1]}"

    def make_current(self) -> None:
        if not self._context.makeCurrent(self._surface):
            raise RuntimeError("could not make the recording OpenGL context current")

    def done_current(self) -> None:
        self._context.doneCurrent()

    def release(self) -> None:
        self._context.doneCurrent()
        self._context = None


class Recorder:
    """Writes annotated frames (the live view's mesh, landmarks, axes) to an mp4 file, in the worker thread."""

    def __init__(self, path: Path, fps: float, frame_size: tuple[int, int], surface: QtGui.QOffscreenSurface | None):
        import cv2

        from realtime.render.offscreen import OverlayRenderer

        self.path = path
        self.frame_size = frame_size
        path.parent.mkdir(parents=True, exist_ok=True)
        context = None
        if surface is not None:
            try:
                context = QtOffscreenContext(surface)
            except RuntimeError as error:  # fall back to EGL / OSMesa
                LOGGER.warning("%s; recording with a headless context", error)
        self._renderer = OverlayRenderer(frame_size[0], frame_size[1], context=context)
        self._context = context
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), frame_size)
        if not self._writer.isOpened():
            self._renderer.close()
            raise RuntimeError(f"cannot write video {path} (OpenCV VideoWriter, mp4v)")
        self.frames_written = 0
        LOGGER.info("recording to %s (%dx%d @ %.1f fps)", path, frame_size[0], frame_size[1], fps)

    def write(self, image_bgr: np.ndarray, faces, triangles: np.ndarray, options: FaceDrawOptions) -> None:
        if (image_bgr.shape[1], image_bgr.shape[0]) != self.frame_size:
            return  # the source changed size mid-recording: skip rather than write a broken file
        meshes, overlays = face_draws([f for f in faces if len(f.vertices_image)], triangles, options)
        self._writer.write(self._renderer.render(image_bgr, meshes, overlays))
        self.frames_written += 1

    def close(self) -> None:
        self._writer.release()
        self._renderer.close()
        if self._context is not None:
            self._context.release()
        LOGGER.info("recorded %d frames to %s", self.frames_written, self.path)


def _is_camera(source) -> bool:
    from realtime.sources import CameraSource

    return isinstance(source, CameraSource)


class PipelineWorker(QtCore.QThread):
    """Reads the source, runs the pipeline, publishes the newest :class:`Packet`.

    Signals:
        result_ready: a new packet is waiting in :meth:`take_latest`.
        status(str): a message for the status bar.
        failed(str): an error that stopped the worker (bad source, backend that cannot start, ...).
        recording_changed(str): path being recorded to, or '' when recording stopped.
        source_finished(): the source ended (and does not loop).
        pipeline_changed(str, bool): the backend kind and smoothing now in use (after a request, or its failure).
    """

    result_ready = QtCore.pyqtSignal()
    status = QtCore.pyqtSignal(str)
    failed = QtCore.pyqtSignal(str)
    recording_changed = QtCore.pyqtSignal(str)
    source_finished = QtCore.pyqtSignal()
    pipeline_changed = QtCore.pyqtSignal(str, bool)

    def __init__(self, options: LiveOptions, recording_surface: QtGui.QOffscreenSurface | None = None, parent=None):
        super().__init__(parent)
        self.options = options
        self.settings = ViewSettings()
        self._recording_surface = recording_surface
        self._lock = threading.Lock()
        self._latest: Packet | None = None
        self._signal_pending = False
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._requested: dict | None = None  # {'backend': ..., 'smoothing': ...} to apply at the next frame
        self._record_request: bool | None = None
        self.backend_kind = options.backend
        self.smoothing = options.smoothing
        self.frames_processed = 0
        self._morphable = None

    # ------------------------------------------------------------------------------------------ GUI side
    def take_latest(self) -> Packet | None:
        """The newest packet (None if none yet); re-arms ``result_ready``."""
        with self._lock:
            self._signal_pending = False
            return self._latest

    def request_pipeline(self, backend: str | None = None, smoothing: bool | None = None) -> None:
        """Switch backend and / or smoothing at the next frame (the pipeline is rebuilt on the worker thread)."""
        with self._lock:
            request = dict(self._requested or {})
            if backend is not None:
                request["backend"] = backend
            if smoothing is not None:
                request["smoothing"] = smoothing
            self._requested = request

    def set_recording(self, on: bool) -> None:
        with self._lock:
            self._record_request = on

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    def stop(self) -> None:
        """Ask the loop to end; returns at once (``wait()`` for the thread)."""
        self._stop.set()
        self._paused.clear()

    # ------------------------------------------------------------------------------------------ worker side
    def run(self) -> None:  # noqa: C901 - one loop, read top to bottom
        pipeline = backend = source = recorder = None
        try:
            source = self._open_source()
            pipeline, backend = self._build_pipeline(self.backend_kind, self.smoothing)
            max_frames = self.options.screenshot_frames if self.options.screenshot is not None else None
            sequence, fps_average, last_tick = 0, 0.0, None
            realtime_playback = self.options.screenshot is None and not _is_camera(source)
            while not self._stop.is_set():
                clock_start, first_timestamp = time.monotonic(), None
                for frame in source:
                    if self._stop.is_set() or (max_frames is not None and sequence >= max_frames):
                        break
                    while self._paused.is_set() and not self._stop.is_set():
                        time.sleep(0.05)
                    pipeline, backend = self._apply_requests(pipeline, backend)
                    recorder = self._apply_recording(recorder, source, frame)
                    if realtime_playback:  # play files at their own speed, not as fast as the CPU allows
                        first_timestamp = frame.timestamp_ms if first_timestamp is None else first_timestamp
                        delay = (frame.timestamp_ms - first_timestamp) / 1000.0 - (time.monotonic() - clock_start)
                        if delay > 0:
                            time.sleep(min(delay, 1.0))
                    result = pipeline.process(frame)
                    settings = self.settings
                    avatar = None
                    if result.faces:
                        avatar = avatar_mesh(pipeline.morphable, result.faces[0].params, settings.avatar_mesh, settings.avatar_follow_pose)
                    if recorder is not None:
                        recorder.write(frame.image_bgr, result.faces, pipeline.dense_triangles, settings.draw)
                    now = time.monotonic()
                    if last_tick is not None:
                        instant = 1.0 / max(now - last_tick, 1e-6)
                        fps_average = instant if fps_average == 0.0 else 0.9 * fps_average + 0.1 * instant
                    last_tick = now
                    sequence += 1
                    self.frames_processed = sequence
                    self._publish(Packet(frame, result, pipeline.dense_triangles, avatar, sequence, fps_average, self.backend_kind))
                if self._stop.is_set() or max_frames is not None and sequence >= max_frames or not self._loops(source):
                    break
                source.close()
                source = self._open_source()  # loop the file: a fresh source, and a fresh time line
                pipeline.reset()
            self.source_finished.emit()
        except (FileNotFoundError, ValueError, ImportError, RuntimeError) as error:  # user-caused: one clear line
            LOGGER.debug("live worker stopped", exc_info=True)
            self.failed.emit(f"{type(error).__name__}: {error}")
        except Exception as error:  # a bug: keep the traceback; never a silent thread death
            LOGGER.exception("live worker stopped")
            self.failed.emit(f"{type(error).__name__}: {error}")
        finally:
            if recorder is not None:
                recorder.close()
                self.recording_changed.emit("")
            for closable in (source, pipeline, backend):
                if closable is not None:
                    try:
                        closable.close()
                    except Exception:  # closing must not hide the first error
                        LOGGER.exception("closing %s failed", type(closable).__name__)

    def _publish(self, packet: Packet) -> None:
        with self._lock:
            self._latest = packet
            if self._signal_pending:
                return  # the GUI has not taken the previous one yet; it will find this one
            self._signal_pending = True
        self.result_ready.emit()

    def _loops(self, source) -> bool:
        from realtime.sources import VideoFileSource

        return self.options.should_loop and isinstance(source, VideoFileSource)

    def _open_source(self):
        from realtime.sources import SourceError, open_source

        spec = self.options.source
        if spec is None or spec == 0:  # the default webcam; without one, the bundled clip
            try:
                source = open_source(0)
                self.status.emit("source: camera 0")
                return source
            except SourceError as error:
                clip = find_bundled_clip(self.options.assets)
                LOGGER.warning("%s; playing the bundled clip %s instead (pass a video file or camera index to choose)", error, clip)
                self.status.emit(f"no webcam ({error}); playing the bundled clip {clip.name}")
                return open_source(str(clip))
        source = open_source(spec)
        self.status.emit(f"source: {getattr(source, 'description', spec)}")
        return source

    def _build_pipeline(self, backend_kind: str, smoothing: bool):
        from realtime.arguments import create_backend
        from realtime.pipeline import FacePipeline, PipelineOptions, RunningMode

        self.status.emit(f"starting backend {backend_kind} ...")
        tick = time.perf_counter()
        backend = create_backend(backend_kind, self.options.assets, model=self.options.model if backend_kind != "teacher" else None)
        try:
            options = self.options.pipeline or PipelineOptions(assets_dir=self.options.assets)
            options = replace(options, running_mode=RunningMode.VIDEO, result_callback=None, smoothing=replace(options.smoothing, enabled=smoothing))
            pipeline = FacePipeline(backend, options, morphable=self._morphable)
            pipeline.dense_triangles  # noqa: B018 - computed once here rather than on the first face
            self._morphable = pipeline.morphable  # loaded once, shared by later pipelines
        except Exception:
            backend.close()
            raise
        self.status.emit(f"backend {backend_kind} ready ({time.perf_counter() - tick:.1f} s), smoothing {'on' if smoothing else 'off'}")
        return pipeline, backend

    def _apply_requests(self, pipeline, backend):
        with self._lock:
            request, self._requested = self._requested, None
        if not request:
            return pipeline, backend
        kind = request.get("backend", self.backend_kind)
        smoothing = request.get("smoothing", self.smoothing)
        if kind == self.backend_kind and smoothing != self.smoothing:  # same backend: keep it, new pipeline
            from realtime.pipeline import FacePipeline

            new_options = replace(pipeline.options, smoothing=replace(pipeline.options.smoothing, enabled=smoothing))
            new_pipeline = FacePipeline(backend, new_options, morphable=pipeline.morphable)
            pipeline.close()
            self.smoothing = smoothing
            self.status.emit(f"smoothing {'on' if smoothing else 'off'}")
            self.pipeline_changed.emit(self.backend_kind, self.smoothing)
            return new_pipeline, backend
        if kind == self.backend_kind:
            return pipeline, backend
        try:
            new_pipeline, new_backend = self._build_pipeline(kind, smoothing)
        except Exception as error:  # keep running on the old backend and say why the new one failed
            LOGGER.warning("backend %s failed to start: %s", kind, error)
            self.status.emit(f"backend {kind} failed: {error}; staying on {self.backend_kind}")
            self.pipeline_changed.emit(self.backend_kind, self.smoothing)
            return pipeline, backend
        pipeline.close()
        backend.close()
        self.backend_kind, self.smoothing = kind, smoothing
        self.pipeline_changed.emit(self.backend_kind, self.smoothing)
        return new_pipeline, new_backend

    def _apply_recording(self, recorder: Recorder | None, source, frame) -> Recorder | None:
        with self._lock:
            request, self._record_request = self._record_request, None
        if request is None or request == (recorder is not None):
            return recorder
        if recorder is not None:
            recorder.close()
            self.recording_changed.emit("")
            self.status.emit(f"saved {recorder.path} ({recorder.frames_written} frames)")
            return None
        path = self.options.record_dir / f"drtn-{datetime.now():%Y%m%d-%H%M%S}.mp4"
        fps = float(getattr(source, "fps", 30.0) or 30.0)
        try:
            recorder = Recorder(path, fps, (frame.image_bgr.shape[1], frame.image_bgr.shape[0]), self._recording_surface)
        except Exception as error:
            LOGGER.warning("cannot record: %s", error)
            self.status.emit(f"cannot record: {error}")
            self.recording_changed.emit("")
            return None
        self.recording_changed.emit(str(path))
        return recorder
