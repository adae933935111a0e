"""The app's two OpenGL views: the video with the mesh overlay, and the avatar (orbit camera).

The GL logic lives in :class:`SceneViewMixin` (and below it in :class:`~realtime.render.gl_scene.SceneRendererGL`,
which the headless renderer shares); the view classes only add Qt plumbing. ``paintGL`` draws the latest
packet it was handed, nothing more: the frames are decoded and processed on the worker thread.

The views are native GL windows (``QOpenGLWindow``, placed in the widget layout with
:func:`gl_view_container`), not ``QOpenGLWidget``: a ``QOpenGLWidget`` renders into a framebuffer object that Qt
then composes, with the raster widgets' backing store, into the whole window on every update. On software
OpenGL (llvmpipe under Xvfb) that composition cost ~10 of the ~36 CPU ms per frame; a native window draws
straight into its own surface and swaps only its own rectangle. ``QWidget.grab()`` does not see native child
windows: :func:`grab_with_gl_views` pastes their framebuffers into a window grab.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from PyQt6 import QtCore, QtGui, QtWidgets
from PyQt6.QtOpenGL import QOpenGLWindow

from realtime.render.camera import ImageCamera, OrbitCamera
from realtime.render.faces import FaceDrawOptions, face_draws
from realtime.render.scene import AVATAR_COLOR, MeshDraw, Scene

LOGGER = logging.getLogger(__name__)

AVATAR_DISTANCE = 3.2  # the avatar meshes span about [-1, 1]: the face fills the view
BACKGROUND_RGBA = (0.10, 0.10, 0.12, 1.0)


def default_surface_format() -> QtGui.QSurfaceFormat:
    """OpenGL 3.3 core, 24-bit depth: set as the application default before any widget exists."""
    surface_format = QtGui.QSurfaceFormat()
    surface_format.setRenderableType(QtGui.QSurfaceFormat.RenderableType.OpenGL)
    surface_format.setVersion(3, 3)
    surface_format.setProfile(QtGui.QSurfaceFormat.OpenGLContextProfile.CoreProfile)
    surface_format.setDepthBufferSize(24)
    surface_format.setSamples(0)  # MSAA is costly on software GL; the overlay is semi-transparent anyway
    return surface_format


def gl_view_container(view: QOpenGLWindow, parent: QtWidgets.QWidget | None = None) -> QtWidgets.QWidget:
    """The widget that holds a GL view in a layout (its minimum size and tooltip, if it has them)."""
    container = QtWidgets.QWidget.createWindowContainer(view, parent)
    container.setMinimumSize(getattr(view, "minimum_size", QtCore.QSize(0, 0)))
    if getattr(view, "tooltip", None):
        container.setToolTip(view.tooltip)
    return container


def grab_with_gl_views(window: QtWidgets.QWidget, views: dict[QOpenGLWindow, QtWidgets.QWidget]) -> QtGui.QPixmap:
    """``window.grab()`` with each native GL view's framebuffer pasted where its container is (``views``: view ->
    container); ``grab()`` alone shows nothing there."""
    pixmap = window.grab()
    painter = QtGui.QPainter(pixmap)
    for view, container in views.items():
        if not container.isVisible() or not view.isExposed():
            continue
        image = view.grabFramebuffer()  # renders the view once more and reads it back
        origin = container.mapTo(window, QtCore.QPoint(0, 0))
        painter.drawImage(QtCore.QRect(origin, container.size()), image)
    painter.end()
    return pixmap


class SceneViewMixin:
    """GL logic shared by the app's views: initialise (with the version check), draw a scene, report errors.

    The host class must be a ``QOpenGLWindow`` defining ``gl_failed = pyqtSignal(str)``.
    """

    def _init_scene_view(self) -> None:
        from realtime.render.gl_scene import SceneRendererGL  # OpenGL is imported with the first view

        self.renderer = SceneRendererGL()
        self.gl_error: str | None = None
        self.render_ms = 0.0

    def initializeGL(self) -> None:  # noqa: N802 - Qt override
        from realtime.render.gl_scene import GLVersionError

        try:
            info = self.renderer.initialize()
            self.context().aboutToBeDestroyed.connect(self._release_scene_view)
            LOGGER.info("%s: OpenGL %s, %s", type(self).__name__, info["version"], info["renderer"])
        except (GLVersionError, RuntimeError) as error:
            # An exception escaping a Qt virtual aborts the process: report instead, the window closes cleanly.
            self.gl_error = str(error)
            LOGGER.debug("%s: %s", type(self).__name__, error)  # the app closes and reports it once
            self.gl_failed.emit(self.gl_error)

    def _device_viewport(
        self, content_width: int | None = None, content_height: int | None = None
    ) -> tuple[int, int, int, int]:
        """GL viewport (device pixels, y from the bottom) of the largest rect with the content's aspect."""
        ratio = self.devicePixelRatio()
        width, height = int(round(self.width() * ratio)), int(round(self.height() * ratio))
        if not content_width or not content_height:
            return 0, 0, width, height
        scale = min(width / content_width, height / content_height)
        fit_w, fit_h = max(1, int(round(content_width * scale))), max(1, int(round(content_height * scale)))
        return (width - fit_w) // 2, (height - fit_h) // 2, fit_w, fit_h

    def content_rect(self, content_width: int, content_height: int) -> QtCore.QRectF:
        """Where content of that size is shown, in widget (logical) pixels, y down."""
        x, y, w, h = self._device_viewport(content_width, content_height)
        ratio = self.devicePixelRatio()
        full_height = self.height() * ratio
        return QtCore.QRectF(x / ratio, (full_height - y - h) / ratio, w / ratio, h / ratio)

    def _clear_all(self) -> None:
        from OpenGL import GL

        GL.glViewport(
            0, 0, int(round(self.width() * self.devicePixelRatio())), int(round(self.height() * self.devicePixelRatio()))
        )
        GL.glClearColor(*BACKGROUND_RGBA)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)

    def _release_scene_view(self) -> None:
        if self.renderer.initialized:
            self.makeCurrent()
            self.renderer.release()
            self.doneCurrent()


class VideoOverlayWidget(SceneViewMixin, QOpenGLWindow):
    """The video frame, letterboxed, with each face's dense mesh, landmarks and pose axes drawn over it.

    Signals:
        painted(int): a packet's ``sequence`` was drawn.
        gl_failed(str): OpenGL could not start (too old, no context); the message says why.
    """

    painted = QtCore.pyqtSignal(int)
    gl_failed = QtCore.pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._init_scene_view()
        self.packet = None
        self.draw_options = FaceDrawOptions()
        self.minimum_size = QtCore.QSize(320, 240)  # given to its container

    def set_packet(self, packet) -> None:
        """Keep only the newest packet and schedule a repaint (coalesced by Qt)."""
        self.packet = packet
        self.update()

    def paintGL(self) -> None:  # noqa: N802 - Qt override
        if self.gl_error is not None:
            return
        start = time.perf_counter()
        self._clear_all()
        packet = self.packet
        if packet is None:
            return
        image = packet.frame.image_bgr
        height, width = image.shape[:2]
        if getattr(packet, "draws", None) is not None and packet.draw_options == self.draw_options:
            meshes, overlays = packet.draws  # prepared on the worker thread (normals included)
        else:  # a toggle changed since (e.g. while paused): build them here
            faces = [face for face in packet.result.faces if len(face.vertices_image)]
            meshes, overlays = face_draws(faces, packet.triangles, self.draw_options)
        viewport = self._device_viewport(width, height)
        self.renderer.draw(
            Scene(tuple(meshes), tuple(overlays), image),
            ImageCamera(width, height),
            viewport,
            BACKGROUND_RGBA,
            overlay_scale=viewport[2] / width,
        )
        self.render_ms = (time.perf_counter() - start) * 1000.0
        self.painted.emit(packet.sequence)

    def image_rect(self) -> QtCore.QRectF | None:
        """Where the current frame is shown, in widget pixels (None before the first frame)."""
        if self.packet is None:
            return None
        height, width = self.packet.frame.image_bgr.shape[:2]
        return self.content_rect(width, height)


class AvatarWidget(SceneViewMixin, QOpenGLWindow):
    """The reconstructed face in a neutral frame, lit, seen by an orbit camera.

    Drag to orbit, wheel to zoom, double-click to reset.
    """

    gl_failed = QtCore.pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._init_scene_view()
        self.camera = OrbitCamera(distance=AVATAR_DISTANCE)
        self.mesh: MeshDraw | None = None
        self._drag_origin: QtCore.QPointF | None = None
        self.minimum_size = QtCore.QSize(200, 160)
        self.tooltip = "drag: orbit, wheel: zoom, double-click: reset"

    def set_mesh(self, mesh: MeshDraw | tuple[np.ndarray, np.ndarray] | None) -> None:
        """The mesh to show: a :class:`MeshDraw` (ideally with normals), ``(vertices, triangles)``, or None."""
        if isinstance(mesh, tuple):
            mesh = MeshDraw(mesh[0], mesh[1], AVATAR_COLOR)
        self.mesh = mesh
        self.update()

    def paintGL(self) -> None:  # noqa: N802 - Qt override
        if self.gl_error is not None:
            return
        start = time.perf_counter()
        viewport = self._device_viewport()
        self.camera.aspect = viewport[2] / max(viewport[3], 1)
        meshes = (self.mesh,) if self.mesh is not None else ()
        self.renderer.draw(Scene(meshes), self.camera, viewport, BACKGROUND_RGBA)
        self.render_ms = (time.perf_counter() - start) * 1000.0

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802
        self._drag_origin = event.position()

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802
        if self._drag_origin is None:
            return
        delta = event.position() - self._drag_origin
        self._drag_origin = event.position()
        self.camera.orbit(-0.5 * delta.x(), 0.5 * delta.y())
        self.update()

    def mouseReleaseEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802
        self._drag_origin = None

    def mouseDoubleClickEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802
        self.camera = OrbitCamera(distance=AVATAR_DISTANCE)
        self.update()

    def wheelEvent(self, event: QtGui.QWheelEvent) -> None:  # noqa: N802
        self.camera.zoom(0.9 if event.angleDelta().y() > 0 else 1.1)
        self.update()
