"""OpenGL mesh rendering, independent of Qt and of tracking.

- :mod:`~realtime.render.scene`: :class:`MeshDraw`, :class:`PointsDraw`, :class:`LinesDraw` (numpy only).
- :mod:`~realtime.render.camera`: :class:`ImageCamera` (orthographic, image pixels) and :class:`OrbitCamera`.
- :mod:`~realtime.render.faces`: turn tracked faces into draws (mesh, landmarks, pose axes); avatar meshes.
- :mod:`~realtime.render.gl_scene`: :class:`SceneRendererGL`, the GLSL 3.3 core renderer used by the Qt
  widgets and by :class:`OverlayRenderer`.
- :mod:`~realtime.render.offscreen`: :class:`OverlayRenderer` renders headless (EGL surfaceless, then OSMesa).

Importing this package does not import OpenGL: the headless context decides PyOpenGL's platform first, so
the GL modules load on first use of :class:`OverlayRenderer` / :class:`SceneRendererGL`.
"""

from __future__ import annotations

from realtime.render.camera import ImageCamera, OrbitCamera
from realtime.render.faces import FaceDrawOptions, avatar_mesh, face_draws
from realtime.render.scene import LinesDraw, MeshDraw, PointsDraw, Scene

_LAZY = {
    "OverlayRenderer": "realtime.render.offscreen",
    "SceneRendererGL": "realtime.render.gl_scene",
    "GLVersionError": "realtime.render.gl_scene",
    "HeadlessGLError": "realtime.render.context",
    "create_headless_context": "realtime.render.context",
}

__all__ = [
    "FaceDrawOptions",
    "ImageCamera",
    "LinesDraw",
    "MeshDraw",
    "OrbitCamera",
    "PointsDraw",
    "Scene",
    "avatar_mesh",
    "face_draws",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'realtime.render' has no attribute {name!r}")
