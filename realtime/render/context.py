"""Headless OpenGL contexts: EGL (surfaceless / device) first, OSMesa second.

No window system is needed for either. Which one works depends on the machine:

- **EGL** (``libEGL.so.1`` + a vendor library: Mesa ``libegl-mesa0`` or NVIDIA's). Mesa's *surfaceless*
  platform renders with llvmpipe on a CPU-only machine or with the GPU's DRI driver; NVIDIA drivers offer the
  *device* platform. The EGL calls go through ``ctypes`` (not ``OpenGL.EGL``), so an EGL context also works
  in a process whose PyOpenGL was already set up for GLX (the Qt app): with libglvnd, PyOpenGL's GL entry
  points dispatch to whichever context is current on the calling thread.
- **OSMesa** (``libOSMesa.so``, Debian ``libosmesa6``): Mesa's off-screen software renderer. Its GL entry
  points live in libOSMesa itself, so PyOpenGL must be loaded with ``PYOPENGL_PLATFORM=osmesa``; that works
  only if nothing imported ``OpenGL`` before.

``create_headless_context("auto")`` tries them in that order and raises :class:`HeadlessGLError` listing why
each failed. ``DRTN_GL_BACKEND=egl|osmesa`` forces one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Protocol

LOGGER = logging.getLogger(__name__)

BACKEND_ENV = "DRTN_GL_BACKEND"
BACKENDS = ("egl", "osmesa")


class HeadlessGLError(RuntimeError):
    """No headless OpenGL context could be created; the message lists each attempt and the fix."""


class GLContext(Protocol):
    """What :class:`~realtime.render.offscreen.OverlayRenderer` needs from a context."""

    description: str

    def make_current(self) -> None: ...

    def done_current(self) -> None: ...

    def release(self) -> None: ...


def pyopengl_platform() -> str | None:
    """The platform PyOpenGL uses (or will use): 'egl', 'osmesa', 'glx', ...; None if not decided yet."""
    if "OpenGL.platform" in sys.modules:
        platform = sys.modules["OpenGL.platform"].PLATFORM
        return type(platform).__name__.replace("Platform", "").lower()
    return os.environ.get("PYOPENGL_PLATFORM") or None


# ---------------------------------------------------------------------------------------------- EGL
_EGL_DEFAULT_DISPLAY = 0
_EGL_NO_CONTEXT = None
_EGL_NONE = 0x3038
_EGL_SURFACE_TYPE = 0x3033
_EGL_PBUFFER_BIT = 0x0001
_EGL_RENDERABLE_TYPE = 0x3040
_EGL_OPENGL_BIT = 0x0008
_EGL_OPENGL_API = 0x30A2
_EGL_CONTEXT_MAJOR_VERSION = 0x3098
_EGL_CONTEXT_MINOR_VERSION = 0x30FB
_EGL_CONTEXT_OPENGL_PROFILE_MASK = 0x30FD
_EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT = 0x0001
_EGL_PLATFORM_SURFACELESS_MESA = 0x31DD
_EGL_PLATFORM_DEVICE_EXT = 0x313F
_EGL_EXTENSIONS = 0x3055
_EGL_VENDOR = 0x3053


def _load_egl() -> ctypes.CDLL:
    name = ctypes.util.find_library("EGL") or "libEGL.so.1"
    try:
        egl = ctypes.CDLL(name)
    except OSError as error:
        raise HeadlessGLError(f"libEGL not found ({error}); install libegl1 and a vendor library (libegl-mesa0)") from error
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    egl.eglGetDisplay.restype = ctypes.c_void_p
    egl.eglGetDisplay.argtypes = [ctypes.c_void_p]
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int32)]
    egl.eglQueryString.restype = ctypes.c_char_p
    egl.eglQueryString.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    egl.eglBindAPI.argtypes = [ctypes.c_uint32]
    egl.eglChooseConfig.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int32),
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_int32,
        ctypes.POINTER(ctypes.c_int32),
    ]
    egl.eglCreateContext.restype = ctypes.c_void_p
    egl.eglCreateContext.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32)]
    egl.eglMakeCurrent.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    egl.eglDestroyContext.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    egl.eglTerminate.argtypes = [ctypes.c_void_p]
    egl.eglGetError.restype = ctypes.c_int32
    return egl


def _attribs(*values: int):
    return (ctypes.c_int32 * (len(values) + 1))(*values, _EGL_NONE)


class EGLContext:
    """A surfaceless EGL OpenGL 3.3 core context (render into framebuffer objects)."""

    def __init__(self):
        egl = _load_egl()
        self._egl = egl
        self.display, platform_name = self._open_display(egl)
        if not egl.eglBindAPI(_EGL_OPENGL_API):
            raise HeadlessGLError(f"eglBindAPI(OpenGL) failed (error 0x{egl.eglGetError():x})")
        config = ctypes.c_void_p()
        count = ctypes.c_int32()
        egl.eglChooseConfig(
            self.display,
            _attribs(_EGL_SURFACE_TYPE, _EGL_PBUFFER_BIT, _EGL_RENDERABLE_TYPE, _EGL_OPENGL_BIT),
            ctypes.byref(config),
            1,
            ctypes.byref(count),
        )
        chosen = config if count.value > 0 else ctypes.c_void_p()  # EGL_KHR_no_config_context: config-less is fine
        core = _attribs(
            _EGL_CONTEXT_MAJOR_VERSION, 3, _EGL_CONTEXT_MINOR_VERSION, 3,
            _EGL_CONTEXT_OPENGL_PROFILE_MASK, _EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT,
        )  # fmt: skip
        self.context = egl.eglCreateContext(self.display, chosen, _EGL_NO_CONTEXT, core)
        if not self.context:
            error = egl.eglGetError()
            egl.eglTerminate(self.display)
            raise HeadlessGLError(
                f"eglCreateContext(OpenGL 3.3 core) failed on the {platform_name} display (error 0x{error:x})"
            )
        vendor = egl.eglQueryString(self.display, _EGL_VENDOR) or b"?"
        self.description = f"EGL {platform_name} ({vendor.decode(errors='replace')})"

    @staticmethod
    def _open_display(egl: ctypes.CDLL) -> tuple[ctypes.c_void_p, str]:
        client_extensions = (egl.eglQueryString(None, _EGL_EXTENSIONS) or b"").decode()
        attempts: list[tuple[str, object]] = []
        get_platform_display = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
        if get_platform_display:
            function = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32))(
                get_platform_display
            )
            if "EGL_MESA_platform_surfaceless" in client_extensions:
                attempts.append(("surfaceless", lambda: function(_EGL_PLATFORM_SURFACELESS_MESA, None, None)))
            if "EGL_EXT_platform_device" in client_extensions:
                attempts.append(("device", lambda: _first_device_display(egl, function)))
        attempts.append(("default", lambda: egl.eglGetDisplay(_EGL_DEFAULT_DISPLAY)))
        failures = []
        for name, open_display in attempts:
            display = open_display()
            if not display:
                failures.append(f"{name}: no display")
                continue
            major, minor = ctypes.c_int32(), ctypes.c_int32()
            if egl.eglInitialize(display, ctypes.byref(major), ctypes.byref(minor)):
                return display, f"{name} {major.value}.{minor.value}"
            failures.append(f"{name}: eglInitialize error 0x{egl.eglGetError():x}")
        raise HeadlessGLError("no usable EGL display (" + "; ".join(failures) + ")")

    def make_current(self) -> None:
        if not self._egl.eglMakeCurrent(self.display, None, None, self.context):
            raise HeadlessGLError(f"eglMakeCurrent failed (error 0x{self._egl.eglGetError():x})")

    def done_current(self) -> None:
        self._egl.eglMakeCurrent(self.display, None, None, None)

    def release(self) -> None:
        if self.context:
            self.done_current()
            self._egl.eglDestroyContext(self.display, self.context)
            self.context = None
            # eglTerminate would also kill other users of the shared display (Mesa shares one per platform)


def _first_device_display(egl: ctypes.CDLL, get_platform_display) -> ctypes.c_void_p | None:
    query_devices = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    if not query_devices:
        return None
    function = ctypes.CFUNCTYPE(
        ctypes.c_uint32, ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int32)
    )(query_devices)
    devices = (ctypes.c_void_p * 8)()
    count = ctypes.c_int32()
    if not function(8, devices, ctypes.byref(count)) or count.value == 0:
        return None
    return get_platform_display(_EGL_PLATFORM_DEVICE_EXT, devices[0], None)


# ---------------------------------------------------------------------------------------------- OSMesa
class OSMesaContext:
    """An OSMesa OpenGL 3.3 core context (needs PyOpenGL loaded with ``PYOPENGL_PLATFORM=osmesa``)."""

    _BUFFER_SIDE = 16  # OSMesa wants a client buffer; we render into framebuffer objects instead

    def __init__(self):
        platform = pyopengl_platform()
        if platform not in (None, "osmesa"):
            raise HeadlessGLError(
                f"OSMesa needs PyOpenGL's 'osmesa' platform, but this process already loaded '{platform}' "
                "(set PYOPENGL_PLATFORM=osmesa before anything imports OpenGL)"
            )
        if ctypes.util.find_library("OSMesa") is None:
            raise HeadlessGLError("libOSMesa not found; install it (Debian/Ubuntu: apt-get install libosmesa6)")
        os.environ["PYOPENGL_PLATFORM"] = "osmesa"
        from OpenGL import GL, arrays, osmesa

        self._osmesa, self._GL = osmesa, GL
        attributes = (ctypes.c_int * 13)(
            osmesa.OSMESA_FORMAT, osmesa.OSMESA_RGBA, osmesa.OSMESA_DEPTH_BITS, 24,
            osmesa.OSMESA_PROFILE, osmesa.OSMESA_CORE_PROFILE,
            osmesa.OSMESA_CONTEXT_MAJOR_VERSION, 3, osmesa.OSMESA_CONTEXT_MINOR_VERSION, 3, 0, 0, 0,
        )  # fmt: skip
        self.context = osmesa.OSMesaCreateContextAttribs(attributes, None)
        if not self.context:
            raise HeadlessGLError("OSMesaCreateContextAttribs(OpenGL 3.3 core) failed")
        self._buffer = arrays.GLubyteArray.zeros((self._BUFFER_SIDE, self._BUFFER_SIDE, 4))
        self.description = "OSMesa"

    def make_current(self) -> None:
        side = self._BUFFER_SIDE
        if not self._osmesa.OSMesaMakeCurrent(self.context, self._buffer, self._GL.GL_UNSIGNED_BYTE, side, side):
            raise HeadlessGLError("OSMesaMakeCurrent failed")

    def done_current(self) -> None:
        pass  # OSMesa has no "release current" call; the next make_current switches

    def release(self) -> None:
        if self.context:
            self._osmesa.OSMesaDestroyContext(self.context)
            self.context = None


# ---------------------------------------------------------------------------------------------- choice
def create_headless_context(backend: str = "auto") -> GLContext:
    """A current-able headless OpenGL 3.3 core context.

    Args:
        backend: 'auto' (``$DRTN_GL_BACKEND`` if set, else EGL then OSMesa), 'egl' or 'osmesa'.
    Raises:
        HeadlessGLError: none could be created; the message says why for each and what to install.
    """
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown headless GL backend {backend!r}; expected 'auto', 'egl' or 'osmesa' (${BACKEND_ENV})")
    order = BACKENDS if backend == "auto" else (backend,)
    failures = []
    for name in order:
        if name == "egl" and pyopengl_platform() == "osmesa":
            failures.append("egl: PyOpenGL is set to the 'osmesa' platform in this process")
            continue
        if name == "egl" and pyopengl_platform() is None:
            os.environ["PYOPENGL_PLATFORM"] = "egl"  # GL entry points from libOpenGL, no X needed
        try:
            context = EGLContext() if name == "egl" else OSMesaContext()
        except HeadlessGLError as error:
            failures.append(f"{name}: {error}")
            if name == "egl" and "OpenGL" not in sys.modules and os.environ.get("PYOPENGL_PLATFORM") == "egl":
                del os.environ["PYOPENGL_PLATFORM"]  # let the OSMesa attempt choose the platform
            continue
        LOGGER.info("headless OpenGL: %s", context.description)
        return context
    raise HeadlessGLError(
        "no headless OpenGL context: " + " | ".join(failures) + ". Install Mesa's EGL "
        "(Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0) or OSMesa (libosmesa6)."
    )
