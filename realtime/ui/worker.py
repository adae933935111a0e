"""Capture + inference off the GUI thread, VMC streaming, and recording of annotated video.

:class:`PipelineWorker` (a ``QThread``) reads frames, runs the :class:`~realtime.pipeline.FacePipeline`,
builds the avatar mesh, sends VMC, and publishes a :class:`Packet` in a one-slot mailbox: the GUI always takes
the newest packet and never queues old ones (``result_ready`` is emitted only when the GUI has taken the last).

Real time: video files play at their own rate. Frame ``i`` is due ``timestamp_i - timestamp_0`` after the
start; a frame that comes up more than one frame interval late is decoded but not processed (dropped), so a
slow machine shows fewer frames, never a slow-motion clip. Cameras deliver their newest frame.
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

from realtime.render.faces import FaceDrawOptions, avatar_mesh, face_draws, ict_avatar_mesh
from realtime.render.scene import AVATAR_COLOR, MeshDraw
from realtime.ui.options import LiveOptions

LOGGER = logging.getLogger(__name__)
DISPLAY_WAIT_S = 0.1  # longest wait for the GUI to show the previous result before processing the next frame


@dataclass(frozen=True)
class ViewSettings:
    """The GUI's toggles, read by the worker (avatar, recording) and the widgets. Replaced, never mutated."""

    draw: FaceDrawOptions = FaceDrawOptions()
    avatar_mesh: str = "ict"
    avatar_follow_pose: bool = True


@dataclass(frozen=True)
class Packet:
    """One processed frame for the GUI.

    Attributes:
        frame: the source :class:`~realtime.sources.Frame` (image_bgr, timestamp_ms, index).
        result: the pipeline's :class:`~realtime.pipeline.FrameResult`.
        triangles: (T, 3) int32 triangles of ``FaceResult.vertices_image``.
        avatar: the avatar view's mesh (first face, normals computed), or None.
        sequence: packets published so far by this worker (1 for the first).
        processing_fps: frames per second of the worker loop (moving average).
        backend: backend kind that produced the result.
        frames_dropped: frames of the current source skipped to keep real time.
        source_fps: the source's frame rate.
        draws: ``(meshes, overlays)`` of the video overlay for ``draw_options``, normals computed (the GUI
            thread only uploads and draws them).
        draw_options: the :class:`FaceDrawOptions` ``draws`` were made with.
    """

    frame: object
    result: object
    triangles: np.ndarray
    avatar: MeshDraw | None
    sequence: int
    processing_fps: float
    backend: str
    frames_dropped: int = 0
    source_fps: float = 0.0
    draws: tuple[list, list] | None = None
    draw_options: FaceDrawOptions | None = None


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
    """Writes annotated frames (the live view's mesh, landmarks, axes) to an mp4 file, in the worker thread.

    Through the shared writer of ``main.py video`` (:func:`realtime.writer.open_video_writer`): fragmented H.264
    that browsers play and that survives a crash up to its last second (OpenCV ``mp4v`` when PyAV is missing).
    """

    def __init__(self, path: Path, fps: float, frame_size: tuple[int, int], surface: QtGui.QOffscreenSurface | None):
        from realtime.render.offscreen import OverlayRenderer
        from realtime.writer import open_video_writer

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
        try:
            self._writer = open_video_writer(path, float(fps), frame_size)
        except Exception:
            self._renderer.close()
            if context is not None:
                context.release()
            raise
        self.frames_written = 0
        LOGGER.info("recording to %s (%dx%d @ %.1f fps, %s)", path, frame_size[0], frame_size[1], fps, self._writer.backend)

    def write(self, image_bgr: np.ndarray, faces, triangles: np.ndarray, options: FaceDrawOptions) -> None:
        if (image_bgr.shape[1], image_bgr.shape[0]) != self.frame_size:
            return  # the source changed size mid-recording: skip rather than write a broken file
        meshes, overlays = face_draws([f for f in faces if len(f.vertices_image)], triangles, options)
        self._writer.write(self._renderer.render(image_bgr, meshes, overlays))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file; a write error at the end is logged (the earlier fragments stay playable)."""
        try:
            self._writer.close()
        except OSError as error:
            LOGGER.warning("%s", error)
        finally:
            self._renderer.close()
            if self._context is not None:
                self._context.release()
        LOGGER.info("recorded %d frames to %s", self.frames_written, self.path)


def _is_camera(source) -> bool:
    from realtime.sources import CameraSource

    return isinstance(source, CameraSource)


def describe_source(spec) -> str:
    """``0`` -> 'camera 0'; a path -> its file name."""
    return f"camera {spec}" if isinstance(spec, int) else Path(str(spec)).name


class PipelineWorker(QtCore.QThread):
    """Reads the source, runs the pipeline, publishes the newest :class:`Packet`.

    The pipeline starts once; sources come and go (:meth:`request_source`): a source that cannot be opened is
    reported once through ``source_failed`` and the worker waits for the next request (no retries, no log spam).

    Signals:
        result_ready: a new packet is waiting in :meth:`take_latest`.
        status(str): a message for the status bar.
        failed(str): an error that stopped the worker (a backend that cannot start, a bug).
        source_failed(str): the requested source cannot be opened (missing file, no camera); the message says why.
        source_opened(str): a source started (its description).
        recording_changed(str): path being recorded to, or '' when recording stopped.
        source_finished(): the source ended (and does not loop).
        pipeline_changed(str, bool): the backend kind and smoothing now in use (after a request, or its failure).
        vmc_changed(str): the VMC address now streamed to, or '' (off, or it could not start).
    """

    result_ready = QtCore.pyqtSignal()
    status = QtCore.pyqtSignal(str)
    failed = QtCore.pyqtSignal(str)
    source_failed = QtCore.pyqtSignal(str)
    source_opened = QtCore.pyqtSignal(str)
    recording_changed = QtCore.pyqtSignal(str)
    source_finished = QtCore.pyqtSignal()
    pipeline_changed = QtCore.pyqtSignal(str, bool)
    vmc_changed = QtCore.pyqtSignal(str)

    _NO_REQUEST = object()

    def __init__(self, options: LiveOptions, recording_surface: QtGui.QOffscreenSurface | None = None, parent=None):
        super().__init__(parent)
        self.options = options
        self.settings = ViewSettings()
        self._recording_surface = recording_surface
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set by any request: ends a wait for a source or a pacing sleep early
        self._latest: Packet | None = None
        self._signal_pending = False
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._gl_ready = threading.Event()  # the GUI's GL views initialised: frames may flow
        self._triangles_ready = threading.Event()  # the dense mesh's triangles are computed
        self._triangles_thread: threading.Thread | None = None
        self._displayed = threading.Event()  # the GUI painted the last published packet
        self._displayed.set()
        self._published_sequence = 0
        self._requested: dict | None = None  # {'backend': ..., 'smoothing': ...} to apply at the next frame
        self._record_request: bool | None = None
        self._source_request = options.source if options.source is not None else 0
        self._vmc_request = options.vmc if options.vmc else self._NO_REQUEST
        self.record_dir = Path(options.record_dir)
        self.backend_kind = options.backend
        self.smoothing = options.smoothing
        self.frames_processed = 0
        self.frames_dropped = 0
        self.first_frame_time: float | None = None  # time.monotonic() when the first frame was processed
        self.first_result_time: float | None = None  # ... and the first with a face
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

    def request_source(self, spec: int | str) -> None:
        """Play a camera index or a video file / image folder next (the current one stops at once)."""
        with self._lock:
            self._source_request = spec
        self._paused.clear()
        self._wake.set()

    def set_recording(self, on: bool) -> None:
        with self._lock:
            self._record_request = on

    def set_record_dir(self, folder: str | Path) -> None:
        """Where the next recording goes (the current one, if any, finishes where it is)."""
        self.record_dir = Path(folder)

    def set_vmc(self, address: str | None) -> None:
        """Stream VMC to ``'HOST:PORT'``, or stop (None / '')."""
        with self._lock:
            self._vmc_request = address or None
        self._wake.set()

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._paused.set()
        else:
            self._paused.clear()
            self._wake.set()

    def mark_displayed(self, sequence: int) -> None:
        """The GUI painted packet ``sequence``: the worker may process the next frame."""
        if sequence >= self._published_sequence:
            self._displayed.set()

    def startup_done(self) -> bool:
        """Whether the start-up work (pipeline, mesh triangles) is finished."""
        return self._triangles_ready.is_set()

    def set_gl_ready(self) -> None:
        """The window's GL views work: start playing (the pipeline may already be loading)."""
        self._gl_ready.set()
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to end; returns at once (``wait()`` for the thread)."""
        self._stop.set()
        self._paused.clear()
        self._wake.set()

    # ------------------------------------------------------------------------------------------ worker side
    def run(self) -> None:
        import cv2

        # OpenCV's thread pool (detector, crops) spin-waits between the frame's small jobs and takes CPU the GUI
        # and llvmpipe need; one thread costs the detector a few ms every 10th frame instead.
        cv2.setNumThreads(1)
        pipeline = backend = None
        state = _LoopState()
        try:
            pipeline, backend = self._build_pipeline(self.backend_kind, self.smoothing)
            while not self._gl_ready.is_set() and not self._stop.is_set():
                self._gl_ready.wait(0.1)
            if self.options.screenshot is not None and self.options.seconds is None:
                self._triangles_ready.wait(60.0)  # the frame-count test mode shows the mesh from its first frame
            while not self._stop.is_set():
                spec = self._take_source_request()
                if spec is self._NO_REQUEST:
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                source = self._open_source(spec)
                if source is None:
                    continue  # reported; wait for the user's next choice
                pipeline.reset()
                try:
                    pipeline, backend = self._play(source, spec, pipeline, backend, state)
                finally:
                    state.recorder = self._close_recorder(state.recorder)
                    source.close()
        except (FileNotFoundError, ValueError, ImportError, RuntimeError) as error:  # user-caused: one clear line
            LOGGER.debug("live worker stopped", exc_info=True)
            self.failed.emit(f"{type(error).__name__}: {error}")
        except Exception as error:  # a bug: keep the traceback; never a silent thread death
            LOGGER.exception("live worker stopped")
            self.failed.emit(f"{type(error).__name__}: {error}")
        finally:
            if self._triangles_thread is not None:  # torch must not be torn down under it at exit
                self._triangles_thread.join(60.0)
            state.recorder = self._close_recorder(state.recorder)
            if state.vmc is not None:
                state.vmc.close()
            for closable in (pipeline, backend):
                if closable is not None:
                    try:
                        closable.close()
                    except Exception:  # closing must not hide the first error
                        LOGGER.exception("closing %s failed", type(closable).__name__)

    def _play(self, source, spec, pipeline, backend, state: "_LoopState"):
        """Play one source (looping files in interactive mode) until it ends, a new source is asked for, or stop."""
        max_frames = (
            self.options.screenshot_frames if self.options.screenshot is not None and self.options.seconds is None else None
        )
        paced = not _is_camera(source) and (self.options.screenshot is None or self.options.seconds is not None)
        interval = 1.0 / max(float(getattr(source, "fps", 30.0) or 30.0), 1.0)
        self.frames_dropped = 0
        while True:
            clock_start, first_timestamp = None, None
            for frame in source:
                if (
                    self._stop.is_set()
                    or self._has_source_request()
                    or (max_frames is not None and state.sequence >= max_frames)
                ):
                    return pipeline, backend
                if self._paused.is_set():
                    while self._paused.is_set() and not self._stop.is_set() and not self._has_source_request():
                        self._wake.wait(0.1)
                        self._wake.clear()
                    clock_start = None  # resume on a fresh time line
                if paced:
                    now = time.monotonic()
                    if clock_start is None:
                        clock_start, first_timestamp = now, frame.timestamp_ms
                    due = clock_start + (frame.timestamp_ms - first_timestamp) / 1000.0
                    if now > due + interval:  # behind by more than a frame: skip it to keep the clip's own pace
                        self.frames_dropped += 1
                        continue
                    if due > now:
                        self._wake.wait(due - now)
                        self._wake.clear()
                if not self._displayed.is_set():
                    # Back-pressure: a result the display never shows is CPU taken from the GUI thread. Wait
                    # (briefly: a minimised window paints nothing) and let the pacing above drop late frames.
                    self._displayed.wait(DISPLAY_WAIT_S)
                    if paced and time.monotonic() > due + interval:
                        self.frames_dropped += 1
                        continue
                pipeline, backend = self._apply_requests(pipeline, backend)
                state.vmc = self._apply_vmc(state.vmc)
                state.recorder = self._apply_recording(state.recorder, source, frame)
                self._process(frame, pipeline, state, float(getattr(source, "fps", 0.0) or 0.0))
            loops = self._loops(source) and not self._stop.is_set() and (max_frames is None or state.sequence < max_frames)
            if not loops:
                state.finished = not self._has_source_request()
                if state.finished:
                    self.source_finished.emit()
                return pipeline, backend
            source.close()
            source = self._open_source(spec)  # loop the file: a fresh source, and a fresh time line
            if source is None:
                return pipeline, backend
            pipeline.reset()

    def _process(self, frame, pipeline, state: "_LoopState", source_fps: float) -> None:
        result = pipeline.process(frame)
        triangles = pipeline.dense_triangles if self._triangles_ready.is_set() else None
        if self.first_frame_time is None:
            self.first_frame_time = time.monotonic()
        settings = self.settings
        avatar = None
        if result.faces:
            face = result.faces[0]
            if settings.avatar_mesh == "ict" and pipeline.retargeter is not None:
                avatar_vertices, avatar_triangles = ict_avatar_mesh(
                    pipeline.retargeter, face.blendshapes, face.params, settings.avatar_follow_pose
                )
            else:
                kind = settings.avatar_mesh if settings.avatar_mesh != "ict" else "dense"
                avatar_vertices, avatar_triangles = avatar_mesh(
                    pipeline.morphable, face.params, kind, settings.avatar_follow_pose
                )
            avatar = MeshDraw(avatar_vertices, avatar_triangles, AVATAR_COLOR).with_normals()
            if self.first_result_time is None:
                self.first_result_time = time.monotonic()
        if state.vmc is not None:
            state.vmc.send_result(result)
        if state.recorder is not None:
            try:
                state.recorder.write(frame.image_bgr, result.faces, triangles, settings.draw)
            except OSError as error:  # a full disk: stop recording, keep tracking; the file stays playable
                LOGGER.warning("recording stopped: %s", error)
                state.recorder = self._close_recorder(state.recorder)
                self.status.emit(f"recording stopped: {error}")
        now = time.monotonic()
        if state.last_tick is not None:
            instant = 1.0 / max(now - state.last_tick, 1e-6)
            state.fps_average = instant if state.fps_average == 0.0 else 0.9 * state.fps_average + 0.1 * instant
        state.last_tick = now
        state.sequence += 1
        self.frames_processed = state.sequence
        meshes, overlays = face_draws([f for f in result.faces if len(f.vertices_image)], triangles, settings.draw)
        draws = ([mesh.with_normals() for mesh in meshes], overlays)
        self._publish(
            Packet(
                frame,
                result,
                triangles,
                avatar,
                state.sequence,
                state.fps_average,
                self.backend_kind,
                self.frames_dropped,
                source_fps,
                draws,
                settings.draw,
            )
        )

    def _publish(self, packet: Packet) -> None:
        with self._lock:
            self._latest = packet
            self._published_sequence = packet.sequence
            self._displayed.clear()
            if self._signal_pending:
                return  # the GUI has not taken the previous one yet; it will find this one
            self._signal_pending = True
        self.result_ready.emit()

    def _take_source_request(self):
        with self._lock:
            spec, self._source_request = self._source_request, self._NO_REQUEST
        return spec

    def _has_source_request(self) -> bool:
        return self._source_request is not self._NO_REQUEST

    def _loops(self, source) -> bool:
        from realtime.sources import VideoFileSource

        return self.options.should_loop and isinstance(source, VideoFileSource)

    def _open_source(self, spec):
        """The source, or None after reporting why it cannot be opened (once, in the window)."""
        from realtime.sources import SourceError, open_source

        try:
            source = open_source(spec)
        except (FileNotFoundError, SourceError, ValueError) as error:
            if isinstance(spec, int):
                message = f"No camera: {error}. Open a video file (Ctrl+O) or choose another camera in the Source menu."
            else:
                message = f"Cannot play {spec}: {error}"
            LOGGER.info("%s", message)
            self.source_failed.emit(message)
            return None
        self.source_opened.emit(getattr(source, "description", str(spec)))
        self.status.emit(f"source: {getattr(source, 'description', spec)}")
        return source

    def _build_pipeline(self, backend_kind: str, smoothing: bool):
        from realtime.arguments import create_backend
        from realtime.pipeline import FacePipeline, PipelineOptions, RunningMode

        self.status.emit(f"starting backend {backend_kind} ...")
        tick = time.perf_counter()
        # One ONNX Runtime thread: a pool of two spin-waits between the small per-frame runs and takes the core
        # the GUI thread (and llvmpipe) paint with on a 2-core machine.
        backend = create_backend(
            backend_kind, self.options.assets, threads=1, model=self.options.model if backend_kind != "teacher" else None
        )
        try:
            options = self.options.pipeline or PipelineOptions(assets_dir=self.options.assets)
            options = replace(
                options,
                running_mode=RunningMode.VIDEO,
                result_callback=None,
                smoothing=replace(options.smoothing, enabled=smoothing),
            )
            pipeline = FacePipeline(backend, options, morphable=self._morphable)
            if not self._triangles_ready.is_set():
                # The overlay's triangles take ~1-3 s to compute (once per process): do it beside the first
                # frames, which show landmarks-only tracking (avatar, blendshapes) until the mesh is ready.
                def compute(pipeline=pipeline):
                    pipeline.dense_triangles  # noqa: B018 - cached on the shared morphable model
                    self._triangles_ready.set()

                if self._triangles_thread is None:
                    self._triangles_thread = threading.Thread(target=compute, name="dense-triangles", daemon=True)
                    self._triangles_thread.start()
            self._morphable = pipeline.morphable  # loaded once, shared by later pipelines
        except Exception:
            backend.close()
            raise
        self.status.emit(
            f"backend {backend_kind} ready ({time.perf_counter() - tick:.1f} s), smoothing {'on' if smoothing else 'off'}"
        )
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

    def _apply_vmc(self, sender):
        with self._lock:
            request, self._vmc_request = self._vmc_request, self._NO_REQUEST
        if request is self._NO_REQUEST:
            return sender
        if sender is not None:
            sender.close()
            sender = None
        if request:
            from realtime.vmc import VmcSender

            try:
                sender = VmcSender.from_address(request)
            except (ValueError, ImportError, OSError) as error:
                self.status.emit(f"VMC: {error}")
                self.vmc_changed.emit("")
                return None
            self.status.emit(f"VMC: streaming head pose + 52 blendshapes to {sender.host}:{sender.port}")
        self.vmc_changed.emit(f"{sender.host}:{sender.port}" if sender is not None else "")
        return sender

    def _close_recorder(self, recorder: "Recorder | None") -> None:
        if recorder is not None:
            recorder.close()
            self.recording_changed.emit("")
            self.status.emit(f"saved {recorder.path} ({recorder.frames_written} frames)")
        return None

    def _apply_recording(self, recorder: Recorder | None, source, frame) -> Recorder | None:
        with self._lock:
            request, self._record_request = self._record_request, None
        if request is None or request == (recorder is not None):
            return recorder
        if recorder is not None:
            return self._close_recorder(recorder)
        path = self.record_dir / f"drtn-{datetime.now():%Y%m%d-%H%M%S}.mp4"
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


@dataclass
class _LoopState:
    """What the worker loop carries across sources."""

    recorder: Recorder | None = None
    vmc: object | None = None
    sequence: int = 0
    fps_average: float = 0.0
    last_tick: float | None = None
    finished: bool = False
