"""Annotated frames for headless output: the dense mesh over each face, landmarks, pose axes, labels.

Two drawers with one shape, ``draw(image_bgr, faces) -> image_bgr`` (the input is not modified):

- ``"gl"``: the OpenGL mesh renderer of :mod:`realtime.render` (offscreen), the same as the app draws.
- ``"cv"``: OpenCV only: a wireframe of the dense 64x64 grid, for machines without OpenGL.

Both add the landmarks, pose axes and labels with OpenCV. :func:`create_overlay` builds one by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from drtn.morphable import DENSE_GRID
from realtime.results import face_rotation

LOGGER = logging.getLogger(__name__)

RENDERERS = ("gl", "cv")
MESH_COLOR_BGR = (235, 200, 140)  # light blue wireframe
LANDMARK_COLOR_BGR = (60, 255, 60)


@dataclass(frozen=True)
class OverlayOptions:
    """What to draw besides the mesh."""

    mesh: bool = True
    landmarks: bool = True
    axes: bool = True
    labels: bool = True
    box: bool = False


class OverlayDrawer(Protocol):
    name: str

    def draw(self, image_bgr: np.ndarray, faces: Sequence) -> np.ndarray: ...

    def close(self) -> None: ...


def draw_annotations(image_bgr: np.ndarray, faces: Sequence, options: OverlayOptions) -> np.ndarray:
    """Draw landmarks, pose axes, boxes and labels of ``faces`` (``FaceResult``) onto ``image_bgr`` in place."""
    for face in faces:
        side = float(face.roi_box[2] - face.roi_box[0])
        radius = max(1, int(round(side / 150)))
        if options.box:
            x0, y0, x1, y1 = (int(round(v)) for v in face.roi_box)
            cv2.rectangle(image_bgr, (x0, y0), (x1, y1), (200, 200, 200), 1, cv2.LINE_AA)
        if options.landmarks:
            for x, y in face.landmarks_2d:
                cv2.circle(image_bgr, (int(round(x)), int(round(y))), radius, LANDMARK_COLOR_BGR, -1, cv2.LINE_AA)
        if options.axes:
            _draw_axes(image_bgr, face, length=0.35 * side)
        if options.labels:
            x0, y0 = int(face.roi_box[0]), int(face.roi_box[1])
            text = f"#{face.track_id} yaw {face.yaw:+.0f} pitch {face.pitch:+.0f} roll {face.roll:+.0f}"
            origin = (max(x0, 2), max(y0 - 6, 14))
            cv2.putText(image_bgr, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(image_bgr, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr


def _draw_axes(image_bgr: np.ndarray, face, length: float) -> None:
    """Head axes at the nose tip (landmark 30): x red, y green, z (out of the face) blue."""
    rotation = face_rotation(face.params)
    origin = face.landmarks_2d[30]
    for axis, color in ((0, (0, 0, 255)), (1, (0, 255, 0)), (2, (255, 0, 0))):
        # the model frame has y up, the image y down
        direction = np.array([rotation[0, axis], -rotation[1, axis]])
        tip = origin + length * direction
        cv2.line(image_bgr, tuple(int(round(v)) for v in origin), tuple(int(round(v)) for v in tip), color, 2, cv2.LINE_AA)


def grid_polylines(on_face: np.ndarray, grid: int = DENSE_GRID, step: int = 2) -> list[np.ndarray]:
    """Index runs along the rows and columns of the dense grid (every ``step``-th line, on-face points only).

    Args:
        on_face: (grid*grid,) bool, ``MorphableModel.dense_on_face``.
    Returns:
        list of int arrays of vertex indices, each a polyline of >= 2 points.
    """
    mask = np.asarray(on_face, dtype=bool).reshape(grid, grid)
    index = np.arange(grid * grid).reshape(grid, grid)  # point k = grid * i + j
    runs = []
    for lines_mask, lines_index in ((mask, index), (mask.T, index.T)):
        for line in range(0, grid, step):
            current: list[int] = []
            for inside, k in zip(lines_mask[line], lines_index[line]):
                if inside:
                    current.append(int(k))
                else:
                    if len(current) > 1:
                        runs.append(np.array(current))
                    current = []
            if len(current) > 1:
                runs.append(np.array(current))
    return runs


class CvOverlay:
    """OpenCV drawer: dense-grid wireframe plus annotations."""

    name = "cv"

    def __init__(self, on_face: np.ndarray, options: OverlayOptions | None = None):
        self.options = options or OverlayOptions()
        self._runs = grid_polylines(on_face)

    def draw(self, image_bgr: np.ndarray, faces: Sequence) -> np.ndarray:
        out = image_bgr.copy()
        if self.options.mesh:
            for face in faces:
                if len(face.vertices_image) == 0:
                    continue
                points = np.round(face.vertices_image[:, :2]).astype(np.int32)
                cv2.polylines(out, [points[run] for run in self._runs], False, MESH_COLOR_BGR, 1, cv2.LINE_AA)
        return draw_annotations(out, faces, self.options)

    def close(self) -> None:
        pass


class GlOverlay:
    """The mesh drawn by :class:`realtime.render.OverlayRenderer` (offscreen OpenGL, the same drawing as the
    app's view via ``realtime.render.face_draws``); landmarks, axes, labels and boxes by OpenCV.

    Raises:
        RuntimeError: the OpenGL renderer cannot be imported or cannot create a context.
    """

    name = "gl"

    def __init__(self, triangles: np.ndarray, width: int, height: int, options: OverlayOptions | None = None):
        try:
            from realtime import render
        except ImportError as error:
            raise RuntimeError(f"the OpenGL renderer is not available ({error}); use --renderer cv") from error
        self.options = options or OverlayOptions()
        self._render = render
        # GL draws the mesh only: OpenCV's dots and lines on top look the same and cost ~10x less on llvmpipe
        self._draw_options = render.FaceDrawOptions(show_mesh=self.options.mesh, show_landmarks=False, show_axes=False)
        self._triangles = np.ascontiguousarray(triangles, dtype=np.int32)
        # no EGL / OSMesa / GL 3.3 context: say so, and how to do without
        self._renderer = SizedGlRenderer(
            lambda width, height, error: f"cannot start the OpenGL renderer at {width}x{height} ({error}); use --renderer cv"
        )
        self._renderer.at(width, height)

    def draw(self, image_bgr: np.ndarray, faces: Sequence) -> np.ndarray:
        height, width = image_bgr.shape[:2]
        renderer = self._renderer.at(width, height)
        faces = [face for face in faces if len(face.vertices_image)]
        meshes, overlays = self._render.face_draws(faces, self._triangles, self._draw_options)
        out = renderer.render(image_bgr, meshes, overlays)  # a new array
        return draw_annotations(out, faces, self.options)

    def close(self) -> None:
        self._renderer.close()


class SizedGlRenderer:
    """One :class:`realtime.render.OverlayRenderer`, made for a frame size and made again when the size changes
    (the GL overlay and the depth / PNCC drawers of :mod:`realtime.render_modes` share it).

    Args:
        error_message: ``(width, height, error) -> str``, the message of the ``RuntimeError`` raised when no
            OpenGL context can be made (no EGL / OSMesa / GL 3.3).
    """

    def __init__(self, error_message: Callable[[int, int, Exception], str]):
        self._error_message = error_message
        self._renderer = None
        self._size = (0, 0)

    def at(self, width: int, height: int):
        """The renderer for ``width`` x ``height`` pixels (the previous one is closed when the size changed)."""
        if (width, height) != self._size:
            self.close()
            try:
                from realtime import render

                self._renderer = render.OverlayRenderer(width, height)
            except Exception as error:
                raise RuntimeError(self._error_message(width, height, error)) from error
            self._size = (width, height)
        return self._renderer

    def close(self) -> None:
        renderer, self._renderer = self._renderer, None
        self._size = (0, 0)
        if renderer is not None:
            renderer.close()


def create_overlay(
    kind: str, pipeline, width: int, height: int, options: OverlayOptions | None = None, fallback: bool = True
) -> OverlayDrawer:
    """Build the drawer named ``kind`` (``"gl"`` or ``"cv"``) for ``pipeline``'s dense mesh.

    Args:
        fallback: when the GL renderer cannot start, log why and return the OpenCV drawer instead of raising.
    """
    if kind not in RENDERERS:
        raise ValueError(f"unknown renderer {kind!r}: expected one of {RENDERERS}")
    if kind == "gl":
        try:
            return GlOverlay(pipeline.dense_triangles, width, height, options)
        except RuntimeError as error:
            if not fallback:
                raise
            LOGGER.warning("%s; drawing with OpenCV instead", error)
    return CvOverlay(pipeline.morphable.dense_on_face, options)
