"""What the renderer draws: meshes and 2D overlays, validated at the boundary (numpy only, no OpenGL).

Coordinates are *world* coordinates of the camera that draws them (:mod:`realtime.render.camera`):
for overlays on a video frame that is the image frame of :mod:`drtn.crop` -- x right, y down, pixel centres
at integers, z depth in pixels with **larger z closer to the camera** (3DDFA convention: for a frontal face
the nose tip has a larger z than the cheeks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Color = tuple[float, float, float, float]  # RGBA in [0, 1]; alpha < 1 blends over the video

MESH_COLOR: Color = (0.35, 0.75, 1.0, 0.6)  # light blue: stands out on skin and on green screens
AVATAR_COLOR: Color = (0.82, 0.80, 0.78, 1.0)  # light clay: the avatar view
LANDMARK_COLOR: Color = (1.0, 0.85, 0.1, 1.0)
AXIS_COLORS: tuple[Color, Color, Color] = ((1.0, 0.2, 0.2, 1.0), (0.2, 1.0, 0.2, 1.0), (0.3, 0.5, 1.0, 1.0))  # x, y, z


def _check_color(color, owner: str) -> Color:
    values = tuple(float(c) for c in color)
    if len(values) == 3:
        values = values + (1.0,)
    if len(values) != 4 or not all(0.0 <= c <= 1.0 for c in values):
        raise ValueError(f"{owner}: color must be 3 or 4 floats in [0, 1], got {color!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class MeshDraw:
    """One triangle mesh.

    Attributes:
        vertices_image: (K, 3) float32 world coordinates (image pixels for overlays, see module doc).
        triangles: (T, 3) int32 vertex indices; winding does not matter (lighting is two-sided).
        color: RGBA in [0, 1]; alpha < 1 makes the mesh semi-transparent over what is behind it.
        normals: (K, 3) float32 unit vertex normals, or None: the renderer computes them (:func:`vertex_normals`).
            A producer thread can compute them with :meth:`with_normals` so the GUI thread does not.
        vertex_colors: optional (K, 3) float32 RGB in [0, 1] per vertex, interpolated across triangles
            (replaces ``color``'s RGB; its alpha still applies): depth and PNCC maps.
        lit: shade with the key light; ``False`` writes the colours as they are (data maps must not be lit).
    """

    vertices_image: np.ndarray
    triangles: np.ndarray
    color: Color = MESH_COLOR
    normals: np.ndarray | None = field(default=None, repr=False)
    vertex_colors: np.ndarray | None = field(default=None, repr=False)
    lit: bool = True

    def __post_init__(self):
        vertices = np.ascontiguousarray(self.vertices_image, dtype=np.float32)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise ValueError(f"MeshDraw: vertices_image must be (K, 3), got shape {np.shape(self.vertices_image)}")
        triangles = np.asarray(self.triangles)
        if triangles.ndim != 2 or triangles.shape[1] != 3 or not np.issubdtype(triangles.dtype, np.integer):
            raise ValueError(
                f"MeshDraw: triangles must be (T, 3) integers, got shape {triangles.shape} dtype {triangles.dtype}"
            )
        if triangles.size and (triangles.min() < 0 or triangles.max() >= len(vertices)):
            raise ValueError(
                f"MeshDraw: triangle indices must lie in [0, {len(vertices)}), got [{triangles.min()}, {triangles.max()}]"
            )
        if not np.isfinite(vertices).all():
            raise ValueError("MeshDraw: vertices_image holds NaN or inf")
        object.__setattr__(self, "vertices_image", vertices)
        object.__setattr__(self, "triangles", np.ascontiguousarray(triangles, dtype=np.int32))
        object.__setattr__(self, "color", _check_color(self.color, "MeshDraw"))
        if self.normals is not None:
            normals = np.ascontiguousarray(self.normals, dtype=np.float32)
            if normals.shape != vertices.shape:
                raise ValueError(f"MeshDraw: normals must be {vertices.shape} like the vertices, got {normals.shape}")
            object.__setattr__(self, "normals", normals)
        if self.vertex_colors is not None:
            colors = np.ascontiguousarray(self.vertex_colors, dtype=np.float32)
            if colors.shape != (len(vertices), 3) or not np.isfinite(colors).all():
                raise ValueError(f"MeshDraw: vertex_colors must be finite ({len(vertices)}, 3), got shape {colors.shape}")
            object.__setattr__(self, "vertex_colors", colors)

    def with_normals(self) -> "MeshDraw":
        """This mesh with its vertex normals computed (a no-op when it has them)."""
        if self.normals is not None:
            return self
        return MeshDraw(self.vertices_image, self.triangles, self.color, vertex_normals(self.vertices_image, self.triangles),
                        self.vertex_colors, self.lit)  # fmt: skip


@dataclass(frozen=True)
class PointsDraw:
    """Round dots of ``size_px`` screen pixels at (N, 2) image-pixel positions (drawn on top, no depth test)."""

    points_image: np.ndarray
    color: Color = LANDMARK_COLOR
    size_px: float = 4.0

    def __post_init__(self):
        points = np.ascontiguousarray(self.points_image, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"PointsDraw: points_image must be (N, 2), got shape {np.shape(self.points_image)}")
        object.__setattr__(self, "points_image", points)
        object.__setattr__(self, "color", _check_color(self.color, "PointsDraw"))


@dataclass(frozen=True)
class LinesDraw:
    """Line segments (M, 2, 2) ``[[x0, y0], [x1, y1]]`` in image pixels, ``width_px`` image pixels wide.

    Core-profile OpenGL has no wide lines, so segments are drawn as thin quads (two triangles each).
    """

    segments_image: np.ndarray
    color: Color = AXIS_COLORS[0]
    width_px: float = 2.0

    def __post_init__(self):
        segments = np.ascontiguousarray(self.segments_image, dtype=np.float32)
        if segments.ndim != 3 or segments.shape[1:] != (2, 2):
            raise ValueError(f"LinesDraw: segments_image must be (M, 2, 2), got shape {np.shape(self.segments_image)}")
        object.__setattr__(self, "segments_image", segments)
        object.__setattr__(self, "color", _check_color(self.color, "LinesDraw"))

    def quads(self) -> np.ndarray:
        """(6M, 2) float32 triangle vertices: each segment widened by ``width_px`` perpendicular to itself."""
        start, end = self.segments_image[:, 0], self.segments_image[:, 1]
        direction = end - start
        length = np.linalg.norm(direction, axis=1, keepdims=True)
        direction = np.where(length > 1e-6, direction / np.maximum(length, 1e-6), np.array([1.0, 0.0], np.float32))
        normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1) * (self.width_px / 2.0)
        a, b, c, d = start - normal, start + normal, end + normal, end - normal
        return np.ascontiguousarray(np.stack([a, b, c, a, c, d], axis=1).reshape(-1, 2), dtype=np.float32)


Overlay = PointsDraw | LinesDraw


@dataclass(frozen=True)
class Scene:
    """Everything one frame draws: an optional background image, meshes, then overlays on top."""

    meshes: tuple[MeshDraw, ...] = ()
    overlays: tuple[Overlay, ...] = ()
    background_bgr: np.ndarray | None = field(default=None, repr=False)

    def depth_bounds(self) -> tuple[float, float] | None:
        """(min z, max z) over all mesh vertices, or None without meshes."""
        if not self.meshes:
            return None
        lows = [float(m.vertices_image[:, 2].min()) for m in self.meshes if len(m.vertices_image)]
        highs = [float(m.vertices_image[:, 2].max()) for m in self.meshes if len(m.vertices_image)]
        return (min(lows), max(highs)) if lows else None


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per-vertex normals: area-weighted sum of the adjacent triangles' normals, normalised.

    Computed on the CPU every frame (a few hundred microseconds for the 6.7k-triangle dense mesh).
    The sign follows the winding; the shaders light both sides, so winding does not matter.

    Args:
        vertices: (K, 3) float32.
        triangles: (T, 3) int.
    Returns:
        (K, 3) float32 unit normals (zero for vertices in no triangle).
    """
    v = vertices.astype(np.float32, copy=False)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    u, w = b - a, c - a
    face_normals = np.empty_like(u)  # cross(u, w), spelled out: np.cross is ~3x slower on (T, 3)
    face_normals[:, 0] = u[:, 1] * w[:, 2] - u[:, 2] * w[:, 1]
    face_normals[:, 1] = u[:, 2] * w[:, 0] - u[:, 0] * w[:, 2]
    face_normals[:, 2] = u[:, 0] * w[:, 1] - u[:, 1] * w[:, 0]  # length = 2 * area: area weighting for free
    triangle_of, starts, present = _incidence(triangles)
    normals = np.zeros_like(v)
    if len(triangle_of):  # sum over each vertex's triangles: one gather + one segmented sum
        normals[present] = np.add.reduceat(face_normals[triangle_of], starts, axis=0)
    norm = np.sqrt((normals * normals).sum(axis=1, keepdims=True))
    return np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0).astype(np.float32, copy=False)


_INCIDENCE_CACHE: dict[int, tuple] = {}


def _incidence(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertex-triangle incidence sorted by vertex, cached per triangle array (the app reuses a few).

    Returns:
        ``(triangle_of (3T,), starts (U,), present (U,))``: the triangle of each incidence in vertex order, where
        each of the U vertices that are in a triangle starts, and those vertices' indices.
    """
    import weakref

    key = id(triangles)
    cached = _INCIDENCE_CACHE.get(key)
    if cached is not None and cached[0]() is triangles:
        return cached[1]
    flat = np.asarray(triangles).ravel()
    order = np.argsort(flat, kind="stable")
    sorted_vertices = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_vertices[1:] != sorted_vertices[:-1]]) if len(flat) else np.zeros(0, np.int64)
    value = (order // 3, starts, sorted_vertices[starts])
    try:
        reference = weakref.ref(triangles)
    except TypeError:  # not weak-referenceable: do not cache
        return value
    if len(_INCIDENCE_CACHE) > 16:
        _INCIDENCE_CACHE.clear()
    _INCIDENCE_CACHE[key] = (reference, value)
    return value
