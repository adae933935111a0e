"""The live app (``main.py live``): video + mesh overlay, avatar view, controls, statistics, recording.

Threads: the GUI thread paints; :class:`~realtime.ui.worker.PipelineWorker` captures and infers and hands over
only its newest result. Headless test mode (``--screenshot PATH --frames N``) processes N frames, saves a
screenshot of the window plus a JSON sidecar, and quits; Qt's own warnings are collected there too.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from PyQt6 import QtCore, QtGui, QtWidgets

from realtime.render.faces import FaceDrawOptions
from realtime.ui.gl_widgets import AvatarWidget, VideoOverlayWidget, default_surface_format
from realtime.ui.options import AVATAR_MESHES, LiveOptions, backend_availability
from realtime.ui.worker import Packet, PipelineWorker, ViewSettings

LOGGER = logging.getLogger(__name__)
QT_LOGGER = logging.getLogger("realtime.ui.qt")

STAGE_LABELS = (("detect", "detect"), ("track_crop", "track+crop"), ("infer", "infer"), ("reconstruct", "reconstruct"), ("smooth", "smooth"))


class QtMessageLog:
    """Qt's messages into Python logging; warnings and worse are also kept (the GUI tests fail on them)."""

    def __init__(self):
        self.warnings: list[str] = []

    def __call__(self, kind: QtCore.QtMsgType, context: QtCore.QMessageLogContext, message: str) -> None:
        if kind in (QtCore.QtMsgType.QtDebugMsg, QtCore.QtMsgType.QtInfoMsg):
            QT_LOGGER.debug("%s", message)
            return
        self.warnings.append(message)
        QT_LOGGER.warning("Qt: %s", message)


class MainWindow(QtWidgets.QMainWindow):
    """The app window. ``fatal_error`` is set when it closed because something could not start."""

    def __init__(self, options: LiveOptions, qt_log: QtMessageLog | None = None):
        super().__init__()
        self.options = options
        self.qt_log = qt_log or QtMessageLog()
        self.fatal_error: str | None = None
        self._screenshot_taken = False
        self._source_finished = False
        self._last_stats_update = 0.0
        self._paint_times: list[float] = []
        self._started = False
        self.setWindowTitle("DRTN live 3D face tracking")
        self.resize(*options.window_size)

        self.video = VideoOverlayWidget()
        self.avatar = AvatarWidget()
        self.video.gl_failed.connect(self._fail)
        self.avatar.gl_failed.connect(self._fail)
        self.video.painted.connect(self._on_painted)

        # The recorder renders on the worker thread into its own context on this surface (made here: GUI thread).
        self.recording_surface = QtGui.QOffscreenSurface()
        self.recording_surface.setFormat(default_surface_format())
        self.recording_surface.create()

        self.worker = PipelineWorker(options, self.recording_surface)
        self.worker.result_ready.connect(self._on_result)
        self.worker.status.connect(self._show_status)
        self.worker.failed.connect(self._on_worker_failed)
        self.worker.recording_changed.connect(self._on_recording_changed)
        self.worker.source_finished.connect(self._on_source_finished)
        self.worker.pipeline_changed.connect(self._on_pipeline_changed)

        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        splitter.addWidget(self.video)
        splitter.addWidget(self._build_side_panel())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([options.window_size[0] - 360, 360])
        self.setCentralWidget(splitter)
        self.statusBar().showMessage("starting ...")
        self._apply_settings()

    # ------------------------------------------------------------------------------------------ layout
    def _build_side_panel(self) -> QtWidgets.QWidget:
        panel = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(panel)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.avatar, stretch=1)

        overlay_box = QtWidgets.QGroupBox("Overlay")
        overlay_layout = QtWidgets.QHBoxLayout(overlay_box)
        self.mesh_check = QtWidgets.QCheckBox("&Mesh")
        self.landmarks_check = QtWidgets.QCheckBox("&Landmarks")
        self.axes_check = QtWidgets.QCheckBox("Pose &axes")
        self.mesh_check.setChecked(True)
        for check in (self.mesh_check, self.landmarks_check, self.axes_check):
            check.toggled.connect(self._apply_settings)
            overlay_layout.addWidget(check)
        layout.addWidget(overlay_box)

        avatar_box = QtWidgets.QGroupBox("Avatar")
        avatar_layout = QtWidgets.QHBoxLayout(avatar_box)
        self.avatar_mesh_combo = QtWidgets.QComboBox()
        self.avatar_mesh_combo.addItems(AVATAR_MESHES)
        self.avatar_mesh_combo.setToolTip("dense: the 4,096-point model mesh; display: the 38k-vertex full mesh")
        self.follow_pose_check = QtWidgets.QCheckBox("Follow head &pose")
        self.avatar_mesh_combo.currentTextChanged.connect(self._apply_settings)
        self.follow_pose_check.toggled.connect(self._apply_settings)
        avatar_layout.addWidget(self.avatar_mesh_combo)
        avatar_layout.addWidget(self.follow_pose_check)
        layout.addWidget(avatar_box)

        tracking_box = QtWidgets.QGroupBox("Tracking")
        tracking_layout = QtWidgets.QGridLayout(tracking_box)
        self.backend_combo = QtWidgets.QComboBox()
        availability = backend_availability(self.options.assets)
        for kind, reason in availability.items():
            self.backend_combo.addItem(kind)
            item = self.backend_combo.model().item(self.backend_combo.count() - 1)
            if reason is not None:
                item.setEnabled(False)
                item.setToolTip(reason)
        self.backend_combo.setCurrentText(self.options.backend)
        self.backend_combo.currentTextChanged.connect(lambda kind: self.worker.request_pipeline(backend=kind))
        self.smoothing_check = QtWidgets.QCheckBox("&Smoothing")
        self.smoothing_check.setChecked(self.options.smoothing)
        self.smoothing_check.toggled.connect(lambda on: self.worker.request_pipeline(smoothing=on))
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self.worker.set_paused)
        self.record_button = QtWidgets.QPushButton("Start recording")
        self.record_button.setCheckable(True)
        self.record_button.toggled.connect(self._on_record_toggled)
        tracking_layout.addWidget(QtWidgets.QLabel("Backend"), 0, 0)
        tracking_layout.addWidget(self.backend_combo, 0, 1)
        tracking_layout.addWidget(self.smoothing_check, 0, 2)
        tracking_layout.addWidget(self.pause_button, 1, 0)
        tracking_layout.addWidget(self.record_button, 1, 1, 1, 2)
        layout.addWidget(tracking_box)

        self.stats_label = QtWidgets.QLabel("waiting for frames ...")
        self.stats_label.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.stats_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats_label.setMinimumHeight(150)
        self.stats_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.stats_label)
        return panel

    # ------------------------------------------------------------------------------------------ lifecycle
    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._started:  # start after the GL views initialised (a GL failure should stop us first)
            self._started = True
            QtCore.QTimer.singleShot(0, self._start_worker)

    def _start_worker(self) -> None:
        if self.fatal_error is not None:
            return
        for view in (self.video, self.avatar):
            if not view.isValid():  # Qt could not even create the context (initializeGL never ran)
                self._fail(
                    f"OpenGL could not start: no OpenGL 3.3 core context for the {type(view).__name__} (Qt's warnings above "
                    "say why). Update the graphics driver, or install Mesa (apt-get install libgl1-mesa-dri libglx-mesa0)."
                )
                return
        self.worker.start()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        self.worker.stop()
        if not self.worker.wait(15000):
            LOGGER.warning("the worker did not stop within 15 s")
        self.recording_surface.destroy()
        super().closeEvent(event)

    def _fail(self, message: str) -> None:
        if self.fatal_error is None:
            self.fatal_error = message  # run_live raises it: main.py prints it once
            LOGGER.debug("closing: %s", message)
        QtCore.QTimer.singleShot(0, self.close)

    # ------------------------------------------------------------------------------------------ settings
    def _apply_settings(self, *_unused) -> None:
        draw = FaceDrawOptions(
            show_mesh=self.mesh_check.isChecked(),
            show_landmarks=self.landmarks_check.isChecked(),
            show_axes=self.axes_check.isChecked(),
        )
        self.video.draw_options = draw
        self.worker.settings = ViewSettings(draw, self.avatar_mesh_combo.currentText(), self.follow_pose_check.isChecked())
        self.video.update()

    def _on_pipeline_changed(self, backend: str, smoothing: bool) -> None:
        """Show what the worker really runs (a backend that failed to start leaves the old one)."""
        for widget, apply in ((self.backend_combo, lambda: self.backend_combo.setCurrentText(backend)), (self.smoothing_check, lambda: self.smoothing_check.setChecked(smoothing))):
            widget.blockSignals(True)
            apply()
            widget.blockSignals(False)

    def _on_record_toggled(self, on: bool) -> None:
        self.worker.set_recording(on)

    def _on_recording_changed(self, path: str) -> None:
        self.record_button.blockSignals(True)
        self.record_button.setChecked(bool(path))
        self.record_button.blockSignals(False)
        self.record_button.setText("Stop recording" if path else "Start recording")
        if path:
            self.statusBar().showMessage(f"recording to {path}")

    # ------------------------------------------------------------------------------------------ results
    def _on_result(self) -> None:
        packet = self.worker.take_latest()
        if packet is None:
            return
        self.video.set_packet(packet)
        if packet.avatar is not None:
            self.avatar.set_mesh(packet.avatar)
        now = time.monotonic()
        if now - self._last_stats_update > 0.25:
            self._last_stats_update = now
            self._update_stats(packet)

    def _on_painted(self, sequence: int) -> None:
        now = time.monotonic()
        self._paint_times = [t for t in self._paint_times if now - t < 2.0] + [now]
        if self.options.screenshot is None or self._screenshot_taken:
            return
        last = self.worker.frames_processed
        if sequence >= self.options.screenshot_frames or (self._source_finished and sequence >= last):
            self._screenshot_taken = True
            QtCore.QTimer.singleShot(0, self._take_screenshot)  # not from inside paintGL

    def _on_source_finished(self) -> None:
        self._source_finished = True
        packet = self.video.packet
        if self.options.screenshot is not None and not self._screenshot_taken:
            if packet is None:
                self._fail("the source ended before any frame was processed")
            elif packet.sequence < self.options.screenshot_frames:
                LOGGER.warning("the source ended after %d frames (asked for %d)", packet.sequence, self.options.screenshot_frames)
                self.video.update()  # the next paint takes the screenshot

    def _on_worker_failed(self, message: str) -> None:
        self.statusBar().showMessage(f"error: {message}")
        if self.options.screenshot is not None or self.video.packet is None:
            self._fail(message)

    def _show_status(self, message: str) -> None:
        self.statusBar().showMessage(message)

    def _update_stats(self, packet: Packet) -> None:
        result = packet.result
        times = self._paint_times
        display_fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        lines = [
            f"display     {display_fps:6.1f} fps",
            f"processing  {packet.processing_fps:6.1f} fps",
            f"backend     {packet.backend}   smoothing {'on' if self.worker.smoothing else 'off'}",
            f"faces       {len(result.faces)}   frame {packet.frame.index}",
        ]
        for key, label in STAGE_LABELS:
            lines.append(f"{label:<12}{result.timings_ms.get(key, 0.0):6.1f} ms")
        lines.append(f"{'pipeline':<12}{result.timings_ms.get('total', 0.0):6.1f} ms")
        lines.append(f"{'render':<12}{self.video.render_ms:6.1f} ms (GUI)")
        for face in result.faces[:3]:
            lines.append(f"#{face.track_id}: yaw {face.yaw:+5.0f} pitch {face.pitch:+5.0f} roll {face.roll:+5.0f}")
        self.stats_label.setText("\n".join(lines))

    # ------------------------------------------------------------------------------------------ test mode
    def _take_screenshot(self) -> None:
        path = self.options.screenshot
        path.parent.mkdir(parents=True, exist_ok=True)
        packet = self.video.packet
        if packet is not None:
            self._update_stats(packet)
        pixmap = self.grab()
        if not pixmap.save(str(path), "PNG"):
            self._fail(f"could not save the screenshot to {path}")
            return
        sidecar = path.with_suffix(".json")
        sidecar.write_text(json.dumps(self.describe_view(packet, pixmap), indent=2))
        LOGGER.info("screenshot saved to %s (+ %s)", path, sidecar.name)
        self.close()

    def describe_view(self, packet: Packet | None, pixmap: QtGui.QPixmap) -> dict:
        """What the screenshot shows, in window pixels: the video rect and each face's boxes."""
        info: dict = {
            "screenshot_size": [pixmap.width(), pixmap.height()],
            "device_pixel_ratio": pixmap.devicePixelRatio(),
            "qt_warnings": list(self.qt_log.warnings),
            "gl": self.video.renderer.info,
            "frames_processed": self.worker.frames_processed,
            "mesh_color_rgba": list(self.video.draw_options.mesh_color),
            "faces": [],
        }
        if packet is None:
            return info
        rect = self.video.image_rect()
        origin = self.video.mapTo(self, QtCore.QPoint(0, 0))
        height, width = packet.frame.image_bgr.shape[:2]
        scale = rect.width() / width
        offset = np.array([origin.x() + rect.x(), origin.y() + rect.y()])

        def to_window(box: np.ndarray) -> list[float]:
            box = np.asarray(box, dtype=np.float64).reshape(2, 2)
            return ((box + 0.5) * scale - 0.5 + offset).reshape(-1).round(2).tolist()

        info.update(
            frame_index=packet.frame.index,
            sequence=packet.sequence,
            image_size=[width, height],
            video_rect_window=[offset[0], offset[1], rect.width(), rect.height()],
            timings_ms={k: round(v, 3) for k, v in packet.result.timings_ms.items()},
            backend=packet.backend,
        )
        for face in packet.result.faces:
            landmarks_box = np.concatenate([face.landmarks_2d.min(axis=0), face.landmarks_2d.max(axis=0)])
            info["faces"].append(
                {
                    "track_id": face.track_id,
                    "roi_box_image": np.asarray(face.roi_box).round(2).tolist(),
                    "roi_box_window": to_window(face.roi_box),
                    "landmarks_box_image": landmarks_box.round(2).tolist(),
                    "landmarks_box_window": to_window(landmarks_box),
                    "yaw_pitch_roll": [face.yaw, face.pitch, face.roll],
                }
            )
        return info


def _clean_qt_environment() -> None:
    """Undo OpenCV's Qt settings: opencv-python's cv2 points QT_QPA_PLATFORM_PLUGIN_PATH at its bundled Qt 5
    plugins on import, which Qt 6 would then fail to load."""
    import cv2  # noqa: F401 - imported first so its environment edits happen before we clean them

    for name in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        value = os.environ.get(name, "")
        if value and "cv2" in Path(value).parts:
            del os.environ[name]


def run_live(options: LiveOptions) -> int:
    """Run the app until its window closes. Returns the exit status.

    Raises:
        RuntimeError: OpenGL or the pipeline could not start (the message says why).
    """
    _clean_qt_environment()
    logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)  # "no OpenGL_accelerate" is not news
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and os.environ.get("QT_QPA_PLATFORM") is None:
        raise RuntimeError("no display: run on a desktop, or headless under a virtual X server: xvfb-run -a python main.py live ...")
    qt_log = QtMessageLog()
    previous_handler = QtCore.qInstallMessageHandler(qt_log)
    QtGui.QSurfaceFormat.setDefaultFormat(default_surface_format())
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    try:
        window = MainWindow(options, qt_log)
        window.show()
        status = app.exec()
        if window.fatal_error is not None:
            raise RuntimeError(window.fatal_error)
        return status
    finally:
        QtCore.qInstallMessageHandler(previous_handler)
