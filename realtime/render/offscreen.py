"""Headless rendering into a framebuffer object: mesh overlays on video frames, and mesh views.

>>> with OverlayRenderer(640, 480) as renderer:                                   # doctest: +SKIP
...     annotated_bgr = renderer.render(frame_bgr, [MeshDraw(vertices_image, triangles)])

The same :class:`~realtime.render.gl_scene.SceneRendererGL` draws the Qt app's widgets, so a recorded or
headless video looks like the live view.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import cv2
import numpy as np

from realtime.render.camera import Camera, ImageCamera
from realtime.render.context import GLContext, create_headless_context
from realtime.render.scene import MeshDraw, Overlay, PointsDraw, Scene

LOGGER = logging.getLogger(__name__)


class OverlayRenderer:
    """Renders meshes over ``width x height`` BGR frames without a window.

    Args:
        width, height: frame size in pixels (frames of another size are rejected).
        context: an OpenGL context to render with; default: :func:`create_headless_context` (EGL, then OSMesa).
            The renderer owns (and releases) a context it created, not one it was given.
        backend: headless backend for the default context: 'auto', 'egl' or 'osmesa'.

    The context is made current on the calling thread for the duration of each call and released after,
    so one renderer may be handed between threads (not used from two at once).

    Raises:
        HeadlessGLError: no headless OpenGL could be created.
        GLVersionError: the context is older than OpenGL 3.3.
    """

    def __init__(self, width: int, height: int, context: GLContext | None = None, backend: str = "auto"):
        if int(width) <= 0 or int(height) <= 0:
            raise ValueError(f"OverlayRenderer: width and height must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self._owns_context = context is None
        self.context = context if context is not None else create_headless_context(backend)
        self._lock = threading.Lock()
        self.context.make_current()
        # Imported only now: creating the context chose PyOpenGL's platform (egl / osmesa).
        from OpenGL import GL

        from realtime.render.gl_scene import SceneRendererGL

        self._GL = GL
        self.scene_renderer = SceneRendererGL()
        self.info = self.scene_renderer.initialize()
        self._framebuffer = GL.glGenFramebuffers(1)
        self._color, self._depth = GL.glGenRenderbuffers(2)
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._color)
        GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_RGBA8, self.width, self.height)
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._depth)
        GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_DEPTH_COMPONENT24, self.width, self.height)
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, 0)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._framebuffer)
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, self._color)
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, self._depth)
        status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        self.context.done_current()
        if status != GL.GL_FRAMEBUFFER_COMPLETE:
            self.close()
            raise RuntimeError(f"OverlayRenderer: framebuffer incomplete (status 0x{int(status):x})")
        LOGGER.debug("OverlayRenderer %dx%d on %s, OpenGL %s (%s)", self.width, self.height,
                     self.context.description, self.info["version"], self.info["renderer"])  # fmt: skip

    @property
    def description(self) -> str:
        """E.g. 'EGL surfaceless 1.5 (Mesa Project), OpenGL 4.5 (Core Profile) Mesa 22.3.6, llvmpipe (...)'."""
        return f"{self.context.description}, OpenGL {self.info['version']}, {self.info['renderer']}"

    def render(
        self,
        image_bgr: np.ndarray,
        meshes: Sequence[MeshDraw] = (),
        overlays: Sequence[Overlay] = (),
    ) -> np.ndarray:
        """Draw ``meshes`` (lit, semi-transparent, depth-tested) and ``overlays`` over a frame.

        Args:
            image_bgr: (height, width, 3) uint8 BGR, the renderer's size; grayscale (H, W) is accepted.
            meshes: vertices in image pixels (x right, y down, larger z closer), see :class:`MeshDraw`.
            overlays: landmark points / pose-axis lines in image pixels.
        Returns:
            (height, width, 3) uint8 BGR, a new array.
        """
        image = np.asarray(image_bgr)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"OverlayRenderer.render: expected a ({self.height}, {self.width}, 3) uint8 image, "
                f"got shape {image.shape} dtype {image.dtype}"
            )
        meshes, overlays = tuple(meshes), tuple(overlays)
        output = image.copy()
        bounds = _screen_bounds(meshes, overlays, self.width, self.height)
        if bounds is None:
            return output
        # Draw only the faces' bounding box onto a transparent layer, read that box back and blend it over the
        # frame here: on a software rasteriser this is far cheaper than uploading, drawing and reading the
        # whole frame. The GL blending leaves colours premultiplied by alpha, so "over" is one multiply-add.
        x0, y0, x1, y1 = bounds
        layer = self._render(
            Scene(meshes, overlays), ImageCamera(self.width, self.height), (0.0, 0.0, 0.0, 0.0), bounds, layer=True
        )
        transparency = cv2.subtract(255, layer[:, :, 3])  # OpenCV: saturating, rounding, ~2x numpy's speed here
        background = cv2.multiply(output[y0:y1, x0:x1], cv2.merge([transparency] * 3), scale=1.0 / 255.0)
        output[y0:y1, x0:x1] = cv2.add(background, np.ascontiguousarray(layer[:, :, 2::-1]))
        return output

    def render_view(
        self,
        camera: Camera,
        meshes: Sequence[MeshDraw],
        background_rgba: tuple[float, float, float, float] = (0.12, 0.12, 0.14, 1.0),
    ) -> np.ndarray:
        """Draw meshes seen by ``camera`` (e.g. an :class:`~realtime.render.camera.OrbitCamera` avatar view).

        Returns:
            (height, width, 3) uint8 BGR.
        """
        if hasattr(camera, "aspect"):
            camera.aspect = self.width / self.height
        return np.ascontiguousarray(self._render(Scene(tuple(meshes)), camera, background_rgba)[:, :, 2::-1])

    def _render(
        self, scene: Scene, camera: Camera, clear_color, bounds: tuple[int, int, int, int] | None = None, layer: bool = False
    ) -> np.ndarray:
        """Draw and read back ``bounds`` ``(x0, y0, x1, y1)`` (image pixels, y down; default: all) as RGBA rows top-down."""
        if self._framebuffer is None:
            raise RuntimeError("OverlayRenderer is closed")
        GL = self._GL
        x0, y0, x1, y1 = bounds if bounds is not None else (0, 0, self.width, self.height)
        gl_box = (x0, self.height - y1, x1 - x0, y1 - y0)  # GL counts rows from the bottom
        output = np.empty((y1 - y0, x1 - x0, 4), dtype=np.uint8)
        with self._lock:
            self.context.make_current()
            try:
                GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._framebuffer)
                self.scene_renderer.draw(
                    scene, camera, (0, 0, self.width, self.height), clear_color, scissor=gl_box, layer=layer
                )
                GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
                GL.glReadPixels(*gl_box, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, output)
                GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
            finally:
                self.context.done_current()
        return output[::-1]

    def close(self) -> None:
        """Free the GL objects and (if owned) the context. Safe to call twice."""
        if getattr(self, "_framebuffer", None) is None:
            return
        GL = self._GL
        try:
            self.context.make_current()
            self.scene_renderer.release()
            GL.glDeleteFramebuffers(1, [self._framebuffer])
            GL.glDeleteRenderbuffers(2, [self._color, self._depth])
            self.context.done_current()
        finally:
            self._framebuffer = None
            if self._owns_context:
                self.context.release()

    def __enter__(self) -> "OverlayRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _screen_bounds(meshes, overlays, width: int, height: int, margin: int = 2) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` pixel box (end exclusive) that holds every mesh and overlay, clipped to the frame."""
    lows, highs = [], []
    for mesh in meshes:
        if len(mesh.vertices_image):
            lows.append(mesh.vertices_image[:, :2].min(axis=0))
            highs.append(mesh.vertices_image[:, :2].max(axis=0))
    for overlay in overlays:
        points = overlay.points_image if isinstance(overlay, PointsDraw) else overlay.segments_image.reshape(-1, 2)
        if len(points):
            reach = (overlay.size_px if isinstance(overlay, PointsDraw) else overlay.width_px) / 2.0
            lows.append(points.min(axis=0) - reach)
            highs.append(points.max(axis=0) + reach)
    if not lows:
        return None
    low = np.floor(np.min(lows, axis=0)).astype(int) - margin
    high = np.ceil(np.max(highs, axis=0)).astype(int) + margin + 1
    x0, y0 = max(0, low[0]), max(0, low[1])
    x1, y1 = min(width, high[0]), min(height, high[1])
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)
