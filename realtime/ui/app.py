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
from realtime.ui.gl_widgets import (
    AvatarWidget,
    VideoOverlayWidget,
    default_surface_format,
    gl_view_container,
    grab_with_gl_views,
)
from realtime.ui.options import AVATAR_MESHES, LiveOptions, backend_availability, find_bundled_clip
from realtime.ui.panels import BlendshapePanel
from realtime.ui.worker import Packet, PipelineWorker, ViewSettings, describe_source
from realtime.vmc import parse_host_port

LOGGER = logging.getLogger(__name__)
QT_LOGGER = logging.getLogger("realtime.ui.qt")

GL_START_TIMEOUT_S = 5.0  # longest wait for the GL views to initialise after the window shows
PANEL_INTERVAL_S = 1.0 / 15.0  # blendshape bars: at most 15 repaints a second
CAMERA_CHOICES = 4  # the Source menu offers cameras 0..3 (opened only when chosen: probing is slow)
DEFAULT_VMC_ADDRESS = "127.0.0.1:39539"  # VSeeFace / VNyan / Warudo's default VMC receiver port
STAGE_LABELS = (
    ("detect", "detect"),
    ("track_crop", "track+crop"),
    ("infer", "infer"),
    ("reconstruct", "reconstruct"),
    ("smooth", "smooth"),
)


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
    """The app window. ``fatal_error`` is set when it closed because something could not start.

    Keys: Ctrl+O open a video, Space pause / resume, Ctrl+R record, Esc or Ctrl+Q quit.
    """

    def __init__(self, options: LiveOptions, qt_log: QtMessageLog | None = None, started_at: float | None = None):
        super().__init__()
        self.options = options
        self.qt_log = qt_log or QtMessageLog()
        self.fatal_error: str | None = None
        self.started_at = started_at if started_at is not None else time.monotonic()
        self.shown_at: float | None = None
        self._screenshot_taken = False
        self._source_finished = False
        self._last_stats_update = 0.0
        self._last_panel_update = 0.0
        self._paint_times: list[float] = []
        self._paints = 0
        self._first_paint_at: float | None = None
        self._started = False
        self.setWindowTitle("DRTN live 3D face tracking")
        self.resize(*options.window_size)

        self.video = VideoOverlayWidget()
        self.avatar = AvatarWidget()
        self.video.gl_failed.connect(self._fail)
        self.avatar.gl_failed.connect(self._fail)
        self.video.painted.connect(self._on_painted)
        self.video_host = gl_view_container(self.video)  # native GL windows in the layout (see gl_widgets)
        self.avatar_host = gl_view_container(self.avatar)

        # The recorder renders on the worker thread into its own context on this surface (made here: GUI thread).
        self.recording_surface = QtGui.QOffscreenSurface()
        self.recording_surface.setFormat(default_surface_format())
        self.recording_surface.create()

        self.worker = PipelineWorker(options, self.recording_surface)
        self.worker.result_ready.connect(self._on_result)
        self.worker.status.connect(self._show_status)
        self.worker.failed.connect(self._on_worker_failed)
        self.worker.source_failed.connect(self._on_source_failed)
        self.worker.source_opened.connect(self._on_source_opened)
        self.worker.recording_changed.connect(self._on_recording_changed)
        self.worker.source_finished.connect(self._on_source_finished)
        self.worker.pipeline_changed.connect(self._on_pipeline_changed)
        self.worker.vmc_changed.connect(self._on_vmc_changed)

        # An error banner over the video (missing file, no camera): hidden until something goes wrong.
        self.message_label = QtWidgets.QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet("QLabel { background: #7a1f1f; color: white; padding: 8px; font-weight: bold; }")
        self.message_label.hide()
        video_column = QtWidgets.QWidget()
        video_layout = QtWidgets.QVBoxLayout(video_column)
        video_layout.setContentsMargins(0, 0, 0, 0)
        video_layout.setSpacing(0)
        video_layout.addWidget(self.message_label)
        video_layout.addWidget(self.video_host, stretch=1)

        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        splitter.addWidget(video_column)
        splitter.addWidget(self._build_side_panel())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([options.window_size[0] - 380, 380])
        self.setCentralWidget(splitter)
        self._build_menus()
        # Clicking a control does not take the keyboard focus (Tab still reaches them), so Space keeps meaning
        # pause / resume instead of toggling the last clicked checkbox.
        for control in self.findChildren((QtWidgets.QAbstractButton, QtWidgets.QComboBox)):
            control.setFocusPolicy(QtCore.Qt.FocusPolicy.TabFocus)
        self.video_host.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.video_host.setFocus()
        self.statusBar().showMessage("starting ...")
        self._apply_settings()
        # The pipeline (model files, backend, detector: ~2 s) loads while the window opens; frames start once
        # the GL views have initialised (``_start_worker``).
        self.worker.start()

    # ------------------------------------------------------------------------------------------ layout
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_action = file_menu.addAction("&Open video or image folder ...")
        open_action.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self._open_file_dialog)
        sample_action = file_menu.addAction("Play the &sample clip")
        sample_action.triggered.connect(self._open_sample_clip)
        file_menu.addSeparator()
        folder_action = file_menu.addAction("Recording &folder ...")
        folder_action.triggered.connect(self._choose_record_dir)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcuts([QtGui.QKeySequence("Ctrl+Q"), QtGui.QKeySequence("Esc")])
        quit_action.triggered.connect(self.close)
        self.addAction(quit_action)  # Esc / Ctrl+Q work wherever the focus is

        source_menu = self.menuBar().addMenu("&Source")
        for index in range(CAMERA_CHOICES):
            action = source_menu.addAction(f"Camera &{index}")
            action.triggered.connect(lambda _checked=False, i=index: self.open_source(i))

        pause_action = QtGui.QAction("Pause / resume", self)
        pause_action.setShortcut(QtGui.QKeySequence("Space"))
        pause_action.triggered.connect(self.pause_button.toggle)
        self.addAction(pause_action)
        record_action = QtGui.QAction("Start / stop recording", self)
        record_action.setShortcut(QtGui.QKeySequence("Ctrl+R"))
        record_action.triggered.connect(self.record_button.toggle)
        self.addAction(record_action)

    def _build_side_panel(self) -> QtWidgets.QWidget:
        panel = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(panel)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.avatar_host, stretch=1)

        view_box = QtWidgets.QGroupBox("View")
        view_layout = QtWidgets.QGridLayout(view_box)
        self.mesh_check = QtWidgets.QCheckBox("&Mesh")
        self.landmarks_check = QtWidgets.QCheckBox("&Landmarks")
        self.axes_check = QtWidgets.QCheckBox("Pose &axes")
        self.mesh_check.setChecked(True)
        for column, check in enumerate((self.mesh_check, self.landmarks_check, self.axes_check)):
            check.toggled.connect(self._apply_settings)
            view_layout.addWidget(check, 0, column)
        self.avatar_mesh_combo = QtWidgets.QComboBox()
        self.avatar_mesh_combo.addItems(AVATAR_MESHES)
        self.avatar_mesh_combo.setToolTip(
            "ict: the ICT FaceKit avatar driven by the blendshapes; dense / display: the tracked 3DMM face"
        )
        self.follow_pose_check = QtWidgets.QCheckBox("Follow head &pose")
        self.follow_pose_check.setChecked(True)
        self.avatar_mesh_combo.currentTextChanged.connect(self._apply_settings)
        self.follow_pose_check.toggled.connect(self._apply_settings)
        view_layout.addWidget(QtWidgets.QLabel("Avatar"), 1, 0)
        view_layout.addWidget(self.avatar_mesh_combo, 1, 1)
        view_layout.addWidget(self.follow_pose_check, 1, 2)
        layout.addWidget(view_box)

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
        self.pause_button.setToolTip("Space")
        self.pause_button.toggled.connect(self._on_pause_toggled)
        self.record_button = QtWidgets.QPushButton("Record")
        self.record_button.setCheckable(True)
        self.record_button.toggled.connect(self._on_record_toggled)
        self.record_dir_button = QtWidgets.QPushButton("Folder ...")
        self.record_dir_button.clicked.connect(self._choose_record_dir)
        self.vmc_check = QtWidgets.QCheckBox("&VMC to")
        self.vmc_check.setToolTip("stream head pose + 52 ARKit blendshapes to VSeeFace / VNyan / Warudo (VMC protocol)")
        self.vmc_address = QtWidgets.QLineEdit(self.options.vmc or DEFAULT_VMC_ADDRESS)
        self.vmc_check.setChecked(bool(self.options.vmc))
        self.vmc_check.toggled.connect(self._on_vmc_toggled)
        self.vmc_address.editingFinished.connect(lambda: self._on_vmc_toggled(self.vmc_check.isChecked()))
        tracking_layout.addWidget(QtWidgets.QLabel("Backend"), 0, 0)
        tracking_layout.addWidget(self.backend_combo, 0, 1)
        tracking_layout.addWidget(self.smoothing_check, 0, 2)
        tracking_layout.addWidget(self.pause_button, 1, 0)
        tracking_layout.addWidget(self.record_button, 1, 1)
        tracking_layout.addWidget(self.record_dir_button, 1, 2)
        tracking_layout.addWidget(self.vmc_check, 2, 0)
        tracking_layout.addWidget(self.vmc_address, 2, 1, 1, 2)
        layout.addWidget(tracking_box)
        self._update_record_tooltip()

        self.tabs = QtWidgets.QTabWidget()
        self.blendshape_panel = BlendshapePanel()
        self.tabs.addTab(self.blendshape_panel, "Blendshapes")
        self.stats_label = QtWidgets.QLabel("waiting for frames ...")
        self.stats_label.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.stats_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        self.tabs.addTab(self.stats_label, "Statistics")
        layout.addWidget(self.tabs)
        return panel

    # ------------------------------------------------------------------------------------------ lifecycle
    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._started:  # start after the GL views initialised (a GL failure should stop us first)
            self._started = True
            self.shown_at = time.monotonic()
            QtCore.QTimer.singleShot(0, self._start_worker)

    def _start_worker(self) -> None:
        if self.fatal_error is not None:
            return
        # The GL views are native windows: they initialise when first exposed, shortly after the window shows.
        waiting = [view for view in (self.video, self.avatar) if not view.renderer.initialized]
        if waiting and time.monotonic() - self.shown_at < GL_START_TIMEOUT_S:
            QtCore.QTimer.singleShot(20, self._start_worker)
            return
        failed = [view for view in waiting if view.isExposed()]  # shown, yet initializeGL never ran: no context
        if failed:  # (views never exposed, e.g. a minimised window, initialise when they are)
            self._fail(
                f"OpenGL could not start: no OpenGL 3.3 core context for the {type(failed[0]).__name__} (Qt's warnings "
                "above say why). Update the graphics driver, or install Mesa (apt-get install libgl1-mesa-dri libglx-mesa0)."
            )
            return
        self.worker.set_gl_ready()
        if self.options.seconds is not None:
            QtCore.QTimer.singleShot(int(self.options.seconds * 500), self._mark_steady)  # 2nd half: past start-up
            QtCore.QTimer.singleShot(int(self.options.seconds * 1000), self._take_screenshot)

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

    # ------------------------------------------------------------------------------------------ sources
    def open_source(self, spec: int | str) -> None:
        """Play a camera index or a video file / image folder (errors appear in the window)."""
        self.statusBar().showMessage(f"opening {describe_source(spec)} ...")
        self.pause_button.setChecked(False)
        self.worker.request_source(spec)

    def _open_file_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open a video", "", "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
        )
        if path:
            self.open_source(path)

    def _open_sample_clip(self) -> None:
        try:
            self.open_source(str(find_bundled_clip(self.options.assets)))
        except FileNotFoundError as error:
            self._show_error(str(error))

    def _show_error(self, message: str) -> None:
        self.message_label.setText(message)
        self.message_label.show()
        self.statusBar().showMessage(message.splitlines()[0])

    def _on_source_failed(self, message: str) -> None:
        if self.options.screenshot is not None and self.options.seconds is None:  # frame-count test mode: no frames will come
            self._fail(message)
            return
        self._show_error(message)
        self.video.set_packet(None)
        self.avatar.set_mesh(None)
        self.blendshape_panel.set_weights(None)

    def _on_source_opened(self, description: str) -> None:
        self.message_label.hide()
        self._source_finished = False
        self.setWindowTitle(f"DRTN live 3D face tracking — {description}")

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
        for widget, apply in (
            (self.backend_combo, lambda: self.backend_combo.setCurrentText(backend)),
            (self.smoothing_check, lambda: self.smoothing_check.setChecked(smoothing)),
        ):
            widget.blockSignals(True)
            apply()
            widget.blockSignals(False)

    def _on_pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        self.worker.set_paused(paused)
        if paused:
            self.statusBar().showMessage("paused (Space resumes)")

    def _on_record_toggled(self, on: bool) -> None:
        self.worker.set_recording(on)

    def _choose_record_dir(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Folder for recordings", str(self.worker.record_dir.resolve())
        )
        if folder:
            self.worker.set_record_dir(folder)
            self._update_record_tooltip()
            self.statusBar().showMessage(f"recordings go to {folder}")

    def _update_record_tooltip(self) -> None:
        text = f"annotated mp4 into {self.worker.record_dir.resolve()} (Ctrl+R)"
        self.record_button.setToolTip(text)
        self.record_dir_button.setToolTip(text)

    def _on_recording_changed(self, path: str) -> None:
        self.record_button.blockSignals(True)
        self.record_button.setChecked(bool(path))
        self.record_button.blockSignals(False)
        self.record_button.setText("Stop recording" if path else "Record")
        if path:
            self.statusBar().showMessage(f"recording to {path}")

    def _on_vmc_toggled(self, on: bool) -> None:
        address = self.vmc_address.text().strip() if on else None
        if on:
            try:
                parse_host_port(address)
            except ValueError as error:
                self._on_vmc_changed("")
                self.statusBar().showMessage(str(error))
                return
        self.worker.set_vmc(address)

    def _on_vmc_changed(self, address: str) -> None:
        self.vmc_check.blockSignals(True)
        self.vmc_check.setChecked(bool(address))
        self.vmc_check.blockSignals(False)

    # ------------------------------------------------------------------------------------------ results
    def _on_result(self) -> None:
        packet = self.worker.take_latest()
        if packet is None:
            return
        self.video.set_packet(packet)
        self.avatar.set_mesh(packet.avatar)
        faces = packet.result.faces
        now = time.monotonic()
        if now - self._last_panel_update >= PANEL_INTERVAL_S or not faces:
            # Bars are read by eye: 15 updates a second are plenty, and each repaint of the raster side panel is
            # a texture upload in Qt's composition of the window on software GL.
            self._last_panel_update = now
            self.blendshape_panel.set_weights(faces[0].blendshapes if faces else None)
        if now - self._last_stats_update > 0.25:
            self._last_stats_update = now
            self._update_stats(packet)

    def _on_painted(self, sequence: int) -> None:
        self.worker.mark_displayed(sequence)
        now = time.monotonic()
        self._paint_times = [t for t in self._paint_times if now - t < 2.0] + [now]
        self._paints += 1
        if self._first_paint_at is None:
            self._first_paint_at = now
        if self.options.screenshot is None or self._screenshot_taken or self.options.seconds is not None:
            return
        last = self.worker.frames_processed
        if sequence >= self.options.screenshot_frames or (self._source_finished and sequence >= last):
            self._screenshot_taken = True
            QtCore.QTimer.singleShot(0, self._take_screenshot)  # not from inside paintGL

    def _on_source_finished(self) -> None:
        self._source_finished = True
        packet = self.video.packet
        if self.options.screenshot is not None and not self._screenshot_taken and self.options.seconds is None:
            if packet is None:
                self._fail("the source ended before any frame was processed")
            elif packet.sequence < self.options.screenshot_frames:
                LOGGER.warning(
                    "the source ended after %d frames (asked for %d)", packet.sequence, self.options.screenshot_frames
                )
                self.video.update()  # the next paint takes the screenshot
        elif self.options.screenshot is None:
            self.statusBar().showMessage("the source ended (File > Open for another)")

    def _on_worker_failed(self, message: str) -> None:
        self.statusBar().showMessage(f"error: {message}")
        if self.options.screenshot is not None or self.video.packet is None:
            self._fail(message)
        else:
            self._show_error(message)

    def _show_status(self, message: str) -> None:
        self.statusBar().showMessage(message)

    def display_fps(self) -> float:
        times = self._paint_times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    def _update_stats(self, packet: Packet) -> None:
        result = packet.result
        lines = [
            f"display     {self.display_fps():6.1f} fps",
            f"processing  {packet.processing_fps:6.1f} fps (source {packet.source_fps:.0f})",
            f"dropped     {packet.frames_dropped:6d} frames",
            f"backend     {packet.backend}   smoothing {'on' if self.worker.smoothing else 'off'}",
            f"faces       {len(result.faces)}   frame {packet.frame.index}",
        ]
        for key, label in STAGE_LABELS:
            lines.append(f"{label:<12}{result.timings_ms.get(key, 0.0):6.1f} ms")
        lines.append(f"{'pipeline':<12}{result.timings_ms.get('total', 0.0):6.1f} ms")
        lines.append(f"{'render':<12}{self.video.render_ms:6.1f} ms video, {self.avatar.render_ms:.1f} ms avatar (GUI)")
        for face in result.faces[:3]:
            lines.append(f"#{face.track_id}: yaw {face.yaw:+5.0f} pitch {face.pitch:+5.0f} roll {face.roll:+5.0f}")
        self.stats_label.setText("\n".join(lines))

    # ------------------------------------------------------------------------------------------ test mode
    def _mark_steady(self) -> None:
        """Benchmark mode: counters at the half-way point (or later, once the start-up work on the worker -- the
        mesh triangles -- is done); the sidecar's ``steady`` rates are from there to the end."""
        if not self.worker.startup_done():
            QtCore.QTimer.singleShot(250, self._mark_steady)
            return
        self._steady_mark = (
            time.monotonic(),
            time.process_time(),
            self._paints,
            self.worker.frames_processed,
            self.worker.frames_dropped,
        )

    def _steady_rates(self) -> dict:
        mark = getattr(self, "_steady_mark", None)
        if mark is None:
            return {}
        wall, cpu = time.monotonic() - mark[0], time.process_time() - mark[1]
        paints, frames, dropped = (
            self._paints - mark[2],
            self.worker.frames_processed - mark[3],
            self.worker.frames_dropped - mark[4],
        )
        return {
            "seconds": round(wall, 2),
            "display_fps": round(paints / wall, 2),
            "processing_fps": round(frames / wall, 2),
            "dropped": dropped,
            # CPU time of the whole process (all threads) per processed frame: what a frame costs, whatever
            # else the machine runs. Two idle cores give at most 2000 / cpu_ms_per_frame frames a second.
            "cpu_ms_per_frame": round(1000.0 * cpu / frames, 1) if frames else None,
        }

    def _take_screenshot(self) -> None:
        self._screenshot_taken = True
        path = self.options.screenshot
        path.parent.mkdir(parents=True, exist_ok=True)
        packet = self.video.packet
        if packet is not None:
            self._update_stats(packet)
        pixmap = grab_with_gl_views(self, {self.video: self.video_host, self.avatar: self.avatar_host})
        if not pixmap.save(str(path), "PNG"):
            self._fail(f"could not save the screenshot to {path}")
            return
        sidecar = path.with_suffix(".json")
        sidecar.write_text(json.dumps(self.describe_view(packet, pixmap), indent=2))
        LOGGER.info("screenshot saved to %s (+ %s)", path, sidecar.name)
        self.close()

    def describe_view(self, packet: Packet | None, pixmap: QtGui.QPixmap) -> dict:
        """What the screenshot shows, in window pixels: the video rect and each face's boxes."""
        now = time.monotonic()
        worker = self.worker
        since_start = lambda moment: None if moment is None else round(moment - self.started_at, 3)  # noqa: E731
        processing_window = now - worker.first_frame_time if worker.first_frame_time is not None else 0.0
        display_window = now - self._first_paint_at if self._first_paint_at is not None else 0.0
        info: dict = {
            "screenshot_size": [pixmap.width(), pixmap.height()],
            "seconds_from_process_start": {
                "window_shown": since_start(self.shown_at),
                "first_frame": since_start(worker.first_frame_time),
                "first_tracked_face": since_start(worker.first_result_time),
            },
            "display_fps": round((self._paints - 1) / display_window, 2) if display_window > 0 else 0.0,
            "processing_fps": round((worker.frames_processed - 1) / processing_window, 2) if processing_window > 0 else 0.0,
            "frames_dropped": worker.frames_dropped,
            "paints": self._paints,
            "steady": self._steady_rates(),
            "message": "" if self.message_label.isHidden() else self.message_label.text(),
            "played_seconds": round(processing_window, 3),
            "avatar": {
                "kind": self.avatar_mesh_combo.currentText(),
                "vertices": 0 if self.avatar.mesh is None else len(self.avatar.mesh.vertices_image),
            },
            "render_ms": {
                "video": round(self.video.render_ms, 2),
                "avatar": round(self.avatar.render_ms, 2),
                "blendshapes": round(self.blendshape_panel.paint_ms, 2),
            },
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
        origin = self.video_host.mapTo(self, QtCore.QPoint(0, 0))
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
                    "blendshapes": face.blendshapes,
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


def _process_age_s() -> float:
    """Seconds since this process started (Linux /proc; 0 elsewhere): the time-to-first-frame clock starts there."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after the ')' of the command name
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def run_live(options: LiveOptions) -> int:
    """Run the app until its window closes. Returns the exit status.

    Raises:
        RuntimeError: OpenGL or the pipeline could not start (the message says why).
    """
    _clean_qt_environment()
    logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)  # "no OpenGL_accelerate" is not news
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and os.environ.get("QT_QPA_PLATFORM") is None:
        raise RuntimeError(
            "no display: run on a desktop, or headless under a virtual X server: xvfb-run -a python main.py live ..."
        )
    started_at = time.monotonic() - _process_age_s()
    qt_log = QtMessageLog()
    previous_handler = QtCore.qInstallMessageHandler(qt_log)
    QtGui.QSurfaceFormat.setDefaultFormat(default_surface_format())
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    try:
        window = MainWindow(options, qt_log, started_at)
        window.show()
        status = app.exec()
        if window.fatal_error is not None:
            raise RuntimeError(window.fatal_error)
        return status
    finally:
        QtCore.qInstallMessageHandler(previous_handler)
