"""What a processed frame shows: the mesh overlay, a depth map or a PNCC map (``--render mesh|depth|pncc``).

- ``mesh``: the lit, semi-transparent dense mesh over the photo (:mod:`realtime.overlay`).
- ``depth``: each face's 38,365-vertex mesh on black, grey level = depth normalised per face
  (nearest point white, farthest visible point of the face's depth range black-ish; 3DDFA_V2's convention).
- ``pncc``: the same mesh coloured by the *projected normalised coordinate code* (``bfm/ncc_code.npy``: each
  vertex's mean-face x, y, z scaled to [0, 1] as R, G, B), the dense-correspondence map of 3DDFA.

Depth and PNCC are drawn unlit through the same OpenGL path as the overlay
(:class:`realtime.render.OverlayRenderer`, depth-tested, so the nearest surface wins). All drawers share
``draw(image_bgr, faces) -> image_bgr`` and ``close()``; :func:`create_drawer` builds one by name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from drtn.assets import Assets, find_assets
from realtime.meshio import face_mesh
from realtime.overlay import SizedGlRenderer

LOGGER = logging.getLogger(__name__)

RENDER_MODES = ("mesh", "depth", "pncc")


def depth_colors(vertices_image: np.ndarray) -> np.ndarray:
    """(K, 3) float32 grey RGB in [0, 1] from the depth of (K, 3) image-space vertices (larger z = nearer =
    brighter), normalised to the face's own depth range."""
    z = np.asarray(vertices_image, dtype=np.float64)[:, 2]
    low, high = float(z.min()), float(z.max())
    level = (z - low) / max(high - low, 1e-9)
    return np.repeat(level[:, None], 3, axis=1).astype(np.float32)


def load_ncc_code(assets: Assets | str | None = None) -> np.ndarray:
    """(38365, 3) float32 RGB in [0, 1] from ``bfm/ncc_code.npy`` (stored (3, 38365))."""
    if not isinstance(assets, Assets):
        assets = find_assets(assets)
    path = assets.path("bfm/ncc_code.npy")
    code = np.load(path)
    if code.shape != (3, 38365):
        raise ValueError(f"{path}: expected shape (3, 38365), got {code.shape}")
    return np.ascontiguousarray(code.T, dtype=np.float32)


class MapDrawer:
    """Depth or PNCC maps of the faces, black elsewhere (OpenGL, offscreen).

    Args:
        mode: ``"depth"`` or ``"pncc"``.
        morphable: :class:`drtn.morphable.MorphableModel` (the 38,365-vertex display mesh).
        crop_size: the backend's crop size (``FacePipeline.crop_size``).
        width, height: frame size.
        assets: the asset folder (``ncc_code.npy`` for PNCC).

    Raises:
        RuntimeError: no OpenGL context (depth and PNCC maps need the GL renderer).
    """

    def __init__(self, mode: str, morphable, crop_size: int, width: int, height: int, assets: Assets | str | None = None):
        if mode not in ("depth", "pncc"):
            raise ValueError(f"MapDrawer: mode must be 'depth' or 'pncc', got {mode!r}")
        self.name = mode
        self.morphable = morphable
        self.crop_size = int(crop_size)
        self._ncc = load_ncc_code(assets) if mode == "pncc" else None
        self._triangles = np.ascontiguousarray(morphable.display_triangles, dtype=np.int32)
        self._renderer = SizedGlRenderer(
            lambda width, height, error: f"--render {mode} needs OpenGL, which cannot start at {width}x{height} ({error})"
        )
        self._renderer.at(width, height)

    def meshes(self, faces: Sequence, width: int, height: int) -> list:
        """The :class:`~realtime.render.MeshDraw` of each face (unlit, vertex-coloured, opaque)."""
        from realtime.render import MeshDraw

        draws = []
        for face in faces:
            vertices = face_mesh(self.morphable, face, self.crop_size, (width, height)).vertices_image
            if not np.isfinite(vertices).all():
                continue
            colors = self._ncc if self._ncc is not None else depth_colors(vertices)
            draws.append(MeshDraw(vertices, self._triangles, (1.0, 1.0, 1.0, 1.0), vertex_colors=colors, lit=False))
        return draws

    def draw(self, image_bgr: np.ndarray, faces: Sequence) -> np.ndarray:
        """(H, W, 3) uint8 BGR map of ``faces`` (``FaceResult``) at the size of ``image_bgr`` (its pixels unused)."""
        height, width = image_bgr.shape[:2]
        renderer = self._renderer.at(width, height)
        black = np.zeros((height, width, 3), dtype=np.uint8)
        # the overlay path: only the faces' box is drawn (one opaque depth-tested pass) and read back
        return renderer.render(black, self.meshes(faces, width, height))

    def close(self) -> None:
        self._renderer.close()


def create_drawer(mode: str, pipeline, width: int, height: int, renderer: str = "gl", assets: Assets | str | None = None):
    """The drawer of ``--render mode`` for ``pipeline``'s faces: :func:`realtime.overlay.create_overlay` for
    ``mesh`` (``renderer`` gl or cv), :class:`MapDrawer` for ``depth`` / ``pncc``."""
    if mode not in RENDER_MODES:
        raise ValueError(f"--render: expected one of {', '.join(RENDER_MODES)}, got {mode!r}")
    if mode == "mesh":
        from realtime.overlay import create_overlay

        return create_overlay(renderer, pipeline, width, height)
    return MapDrawer(
        mode,
        pipeline.morphable,
        pipeline.crop_size,
        width,
        height,
        assets if assets is not None else pipeline.options.assets_dir,
    )


def parse_render_modes(text: str) -> list[str]:
    """``"mesh,depth"`` -> ``["mesh", "depth"]``; unknown or repeated names raise ``ValueError``."""
    modes = [part.strip() for part in str(text).split(",") if part.strip()]
    unknown = [m for m in modes if m not in RENDER_MODES]
    if not modes or unknown or len(set(modes)) != len(modes):
        raise ValueError(f"--render: expected a comma-separated list of {', '.join(RENDER_MODES)} (each once), got {text!r}")
    return modes
