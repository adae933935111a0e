"""The OpenGL 3.3 core renderer, independent of Qt and of tracking.

:class:`SceneRendererGL` draws a :class:`~realtime.render.scene.Scene` (video frame as a texture, lit
semi-transparent meshes, 2D overlays) with a :mod:`camera <realtime.render.camera>` into whatever framebuffer
is bound in the *current* context. Who owns the context is someone else's business: the headless
:class:`~realtime.render.offscreen.OverlayRenderer` (EGL / OSMesa + a framebuffer object) and the Qt
views of :mod:`realtime.ui` (``QOpenGLWindow``) both hold one of these.

Buffers are created once and updated per frame with ``glBufferSubData`` (re-allocated only when a mesh
grows); the triangle index buffer is re-uploaded only when the triangles change.
"""

from __future__ import annotations

import ctypes
import logging
import re
from dataclasses import dataclass

import numpy as np
from OpenGL import GL
from OpenGL.raw.GL.VERSION.GL_2_0 import glVertexAttribPointer as _raw_vertex_attrib_pointer

from realtime.render.camera import Camera, ImageCamera
from realtime.render.scene import LinesDraw, MeshDraw, PointsDraw, Scene, vertex_normals

LOGGER = logging.getLogger(__name__)

REQUIRED_GL_VERSION = (3, 3)  # GLSL 330 core: VAOs, instancing-free shaders, glBlitFramebuffer


class GLVersionError(RuntimeError):
    """The current OpenGL context is too old (or missing); the message says what was found and what to do."""


def gl_info() -> dict[str, str]:
    """Version, renderer, vendor and GLSL strings of the current context."""

    def text(name: int) -> str:
        value = GL.glGetString(name)
        return value.decode(errors="replace") if value else ""

    return {
        "version": text(GL.GL_VERSION),
        "renderer": text(GL.GL_RENDERER),
        "vendor": text(GL.GL_VENDOR),
        "glsl": text(GL.GL_SHADING_LANGUAGE_VERSION),
    }


def check_gl_version(required: tuple[int, int] = REQUIRED_GL_VERSION) -> dict[str, str]:
    """Raise :class:`GLVersionError` unless the current context offers at least OpenGL ``required``.

    Returns:
        :func:`gl_info` of the context.
    """
    try:
        info = gl_info()
    except Exception as error:  # no current context: PyOpenGL raises on glGetString
        raise GLVersionError(f"no current OpenGL context ({error}); OpenGL {required[0]}.{required[1]} is required") from error
    match = re.match(r"(?:OpenGL ES )?(\d+)\.(\d+)", info["version"])
    found = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if found < required:
        raise GLVersionError(
            f"OpenGL {required[0]}.{required[1]} core profile is required, but the context offers "
            f"'{info['version'] or 'nothing'}' (renderer '{info['renderer']}', vendor '{info['vendor']}'). "
            "Update the graphics driver; on a machine without a GPU install Mesa's software renderer "
            "(Debian/Ubuntu: apt-get install libgl1-mesa-dri libegl-mesa0 libglx-mesa0) and, for a remote "
            "X session, try LIBGL_ALWAYS_SOFTWARE=1."
        )
    return info


# ---------------------------------------------------------------------------------------------- shaders
# Lighting per vertex (Gouraud): the dense mesh's triangles are a few pixels wide, so it looks the same as
# per-pixel lighting and keeps the fragment stage trivial -- that stage is what a software rasteriser pays for.
_MESH_VERTEX = """#version 330 core
layout(location = 0) in vec3 a_position;
layout(location = 1) in vec3 a_normal;
layout(location = 2) in vec3 a_color;
uniform mat4 u_view_projection;
uniform vec4 u_color;
uniform bool u_vertex_colors; // per-vertex RGB (a_color) instead of u_color.rgb
uniform bool u_lit;           // false: write the colour unshaded (depth / PNCC maps)
uniform vec4 u_eye;        // w = 0: direction towards the viewer; w = 1: eye position (world)
uniform vec3 u_light;      // unit direction towards the key light (world)
out vec3 v_rgb;
void main() {
    vec3 view = normalize(u_eye.w > 0.5 ? u_eye.xyz - a_position : u_eye.xyz);
    vec3 normal = a_normal;
    if (dot(normal, view) < 0.0) normal = -normal;  // two-sided lighting: winding-independent
    float key = max(dot(normal, u_light), 0.0);
    float head = max(dot(normal, view), 0.0);
    float specular = pow(max(dot(normal, normalize(u_light + view)), 0.0), 24.0);
    vec3 base = u_vertex_colors ? a_color : u_color.rgb;
    v_rgb = u_lit ? min(base * (0.25 + 0.55 * key + 0.25 * head) + vec3(0.25 * specular), vec3(1.0)) : base;
    gl_Position = u_view_projection * vec4(a_position, 1.0);
}
"""

_MESH_FRAGMENT = """#version 330 core
in vec3 v_rgb;
uniform vec4 u_color;
uniform bool u_premultiply; // layer mode: write (rgb * a, a) for the caller to composite
out vec4 frag_color;
void main() {
    frag_color = u_premultiply ? vec4(v_rgb * u_color.a, u_color.a) : vec4(v_rgb, u_color.a);
}
"""

_FLAT_VERTEX = """#version 330 core
layout(location = 0) in vec2 a_position;
uniform mat4 u_view_projection;
uniform float u_point_size;
void main() {
    gl_Position = u_view_projection * vec4(a_position, 0.0, 1.0);
    gl_PointSize = u_point_size;
}
"""

_FLAT_FRAGMENT = """#version 330 core
uniform vec4 u_color;
uniform bool u_round;      // points: discard outside the inscribed disc
out vec4 frag_color;
void main() {
    if (u_round) {
        vec2 d = gl_PointCoord * 2.0 - 1.0;
        if (dot(d, d) > 1.0) discard;
    }
    frag_color = u_color;
}
"""

_BACKGROUND_VERTEX = """#version 330 core
const vec2 corners[4] = vec2[](vec2(-1.0, -1.0), vec2(1.0, -1.0), vec2(-1.0, 1.0), vec2(1.0, 1.0));
out vec2 v_uv;
void main() {
    vec2 p = corners[gl_VertexID];
    v_uv = vec2((p.x + 1.0) * 0.5, (1.0 - p.y) * 0.5);  // image row 0 is the top of the viewport
    gl_Position = vec4(p, 1.0, 1.0);
}
"""

_BACKGROUND_FRAGMENT = """#version 330 core
in vec2 v_uv;
uniform sampler2D u_image;
out vec4 frag_color;
void main() { frag_color = vec4(texture(u_image, v_uv).rgb, 1.0); }
"""


def _vertex_attrib_pointer(index: int, size: int, kind: int, normalized: int, stride: int, offset: ctypes.c_void_p) -> None:
    # The raw entry point: PyOpenGL's wrapper keeps the pointer in per-context storage keyed by the platform's
    # current context, which fails for an EGL context in a process whose PyOpenGL platform is GLX (the Qt app's
    # recorder). With a bound buffer the pointer is an offset, so there is nothing to keep alive.
    _raw_vertex_attrib_pointer(index, size, kind, normalized, stride, offset)


def _compile_program(vertex_source: str, fragment_source: str, name: str) -> int:
    shaders = []
    for kind, source in ((GL.GL_VERTEX_SHADER, vertex_source), (GL.GL_FRAGMENT_SHADER, fragment_source)):
        shader = GL.glCreateShader(kind)
        GL.glShaderSource(shader, source)
        GL.glCompileShader(shader)
        if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
            log = GL.glGetShaderInfoLog(shader)
            raise RuntimeError(
                f"{name} shader failed to compile: {log.decode(errors='replace') if isinstance(log, bytes) else log}"
            )
        shaders.append(shader)
    program = GL.glCreateProgram()
    for shader in shaders:
        GL.glAttachShader(program, shader)
    GL.glLinkProgram(program)
    if not GL.glGetProgramiv(program, GL.GL_LINK_STATUS):
        log = GL.glGetProgramInfoLog(program)
        raise RuntimeError(f"{name} program failed to link: {log.decode(errors='replace') if isinstance(log, bytes) else log}")
    for shader in shaders:
        GL.glDetachShader(program, shader)
        GL.glDeleteShader(shader)
    return program


@dataclass
class _Program:
    handle: int
    uniforms: dict[str, int]

    @staticmethod
    def build(vertex: str, fragment: str, name: str, uniforms: tuple[str, ...]) -> "_Program":
        handle = _compile_program(vertex, fragment, name)
        return _Program(handle, {u: GL.glGetUniformLocation(handle, u) for u in uniforms})


class _MeshBuffers:
    """One VAO with an interleaved position + normal VBO and an index EBO, grown on demand."""

    def __init__(self):
        self.vao = GL.glGenVertexArrays(1)
        self.vbo, self.ebo, self.color_vbo = GL.glGenBuffers(3)
        self.color_capacity = 0  # bytes; the colour attribute is enabled only for meshes with vertex colours
        self.vertex_capacity = 0  # bytes
        self.index_capacity = 0  # bytes
        self.index_count = 0
        self.triangles: np.ndarray | None = None  # last uploaded, to skip unchanged index uploads
        self._triangles_source: np.ndarray | None = None  # the array it came from (never mutated by the app)
        GL.glBindVertexArray(self.vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.vbo)
        GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, self.ebo)  # recorded in the VAO
        stride = 6 * 4
        GL.glEnableVertexAttribArray(0)
        _vertex_attrib_pointer(0, 3, GL.GL_FLOAT, GL.GL_FALSE, stride, ctypes.c_void_p(0))
        GL.glEnableVertexAttribArray(1)
        _vertex_attrib_pointer(1, 3, GL.GL_FLOAT, GL.GL_FALSE, stride, ctypes.c_void_p(12))
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.color_vbo)
        _vertex_attrib_pointer(2, 3, GL.GL_FLOAT, GL.GL_FALSE, 12, ctypes.c_void_p(0))
        GL.glBindVertexArray(0)

    def upload_colors(self, colors: np.ndarray | None) -> None:
        """Per-vertex RGB (K, 3) float32 into the colour buffer (attribute 2), or ``None`` to switch it off."""
        GL.glBindVertexArray(self.vao)
        if colors is None:
            GL.glDisableVertexAttribArray(2)
        else:
            colors = np.ascontiguousarray(colors, dtype=np.float32)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.color_vbo)
            if colors.nbytes > self.color_capacity:
                self.color_capacity = colors.nbytes
                GL.glBufferData(GL.GL_ARRAY_BUFFER, colors.nbytes, colors, GL.GL_DYNAMIC_DRAW)
            else:
                GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, colors.nbytes, colors)
            GL.glEnableVertexAttribArray(2)
        GL.glBindVertexArray(0)

    def upload(self, vertices: np.ndarray, normals: np.ndarray, triangles: np.ndarray) -> None:
        interleaved = np.ascontiguousarray(np.concatenate([vertices, normals], axis=1), dtype=np.float32)
        GL.glBindVertexArray(self.vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.vbo)
        if interleaved.nbytes > self.vertex_capacity:
            self.vertex_capacity = interleaved.nbytes
            GL.glBufferData(GL.GL_ARRAY_BUFFER, interleaved.nbytes, interleaved, GL.GL_DYNAMIC_DRAW)
        else:
            GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, interleaved.nbytes, interleaved)
        if triangles is self._triangles_source:  # the same array as last time (the app reuses one per mesh)
            pass
        elif self.triangles is None or self.triangles.shape != triangles.shape or not np.array_equal(self.triangles, triangles):
            indices = np.ascontiguousarray(triangles, dtype=np.uint32)
            if indices.nbytes > self.index_capacity:
                self.index_capacity = indices.nbytes
                GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, indices.nbytes, indices, GL.GL_DYNAMIC_DRAW)
            else:
                GL.glBufferSubData(GL.GL_ELEMENT_ARRAY_BUFFER, 0, indices.nbytes, indices)
            self.triangles = triangles.copy()
            self.index_count = indices.size
        self._triangles_source = triangles
        GL.glBindVertexArray(0)

    def draw(self) -> None:
        GL.glBindVertexArray(self.vao)
        GL.glDrawElements(GL.GL_TRIANGLES, self.index_count, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0))
        GL.glBindVertexArray(0)

    def delete(self) -> None:
        GL.glDeleteBuffers(3, [self.vbo, self.ebo, self.color_vbo])
        GL.glDeleteVertexArrays(1, [self.vao])


class SceneRendererGL:
    """Draws scenes in the current OpenGL (>= 3.3 core) context.

    Call :meth:`initialize` once with the context current (it checks the GL version), then :meth:`draw`
    per frame, and :meth:`release` before the context goes away. Not thread-safe: use it on the thread
    where its context is current.
    """

    def __init__(self):
        self.info: dict[str, str] | None = None
        self._mesh_program: _Program | None = None
        self._flat_program: _Program | None = None
        self._background_program: _Program | None = None
        self._meshes: list[_MeshBuffers] = []
        self._flat_vao = self._flat_vbo = 0
        self._flat_capacity = 0
        self._empty_vao = 0
        self._texture = 0
        self._texture_size: tuple[int, int] = (0, 0)

    @property
    def initialized(self) -> bool:
        return self._mesh_program is not None

    def initialize(self) -> dict[str, str]:
        """Check the GL version, compile the shaders, create the buffers. Returns :func:`gl_info`."""
        self.info = check_gl_version()
        LOGGER.debug("OpenGL %s on %s", self.info["version"], self.info["renderer"])
        self._mesh_program = _Program.build(
            _MESH_VERTEX,
            _MESH_FRAGMENT,
            "mesh",
            ("u_view_projection", "u_color", "u_eye", "u_light", "u_premultiply", "u_vertex_colors", "u_lit"),
        )
        self._flat_program = _Program.build(
            _FLAT_VERTEX, _FLAT_FRAGMENT, "overlay", ("u_view_projection", "u_color", "u_point_size", "u_round")
        )
        self._background_program = _Program.build(_BACKGROUND_VERTEX, _BACKGROUND_FRAGMENT, "background", ("u_image",))
        self._flat_vao = GL.glGenVertexArrays(1)
        self._flat_vbo = GL.glGenBuffers(1)
        GL.glBindVertexArray(self._flat_vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._flat_vbo)
        GL.glEnableVertexAttribArray(0)
        _vertex_attrib_pointer(0, 2, GL.GL_FLOAT, GL.GL_FALSE, 8, ctypes.c_void_p(0))
        self._empty_vao = GL.glGenVertexArrays(1)  # core profile draws need a bound VAO, even attribute-less
        GL.glBindVertexArray(0)
        self._texture = GL.glGenTextures(1)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._texture)
        for parameter, value in (
            (GL.GL_TEXTURE_MIN_FILTER, GL.GL_LINEAR),
            (GL.GL_TEXTURE_MAG_FILTER, GL.GL_LINEAR),
            (GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE),
            (GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE),
        ):
            GL.glTexParameteri(GL.GL_TEXTURE_2D, parameter, value)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        return self.info

    # ------------------------------------------------------------------------------------------ drawing
    def draw(
        self,
        scene: Scene,
        camera: Camera,
        viewport: tuple[int, int, int, int],
        clear_color: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0),
        overlay_scale: float = 1.0,
        scissor: tuple[int, int, int, int] | None = None,
        layer: bool = False,
    ) -> None:
        """Draw ``scene`` into the bound framebuffer.

        Args:
            scene: background image (drawn to fill the viewport), meshes, overlays.
            camera: world -> clip; overlays always use an :class:`ImageCamera` of the background size.
            viewport: ``(x, y, width, height)`` in framebuffer pixels (GL convention: y from the bottom);
                the viewport area is cleared to ``clear_color`` first.
            overlay_scale: framebuffer pixels per image pixel, to size points and lines on screen.
            scissor: ``(x, y, width, height)``: clear and draw only there (default: the viewport). The
                headless renderer draws just the faces' bounding box this way.
            layer: draw a premultiplied-alpha layer for the caller to composite over the frame (clear to
                transparent): meshes in one opaque depth-tested pass -- half the triangle work of the
                blended path, which must lay depth down first so that only the nearest surface blends.
        """
        if not self.initialized:
            raise RuntimeError("SceneRendererGL.draw called before initialize()")
        x, y, width, height = viewport
        GL.glViewport(x, y, width, height)
        GL.glEnable(GL.GL_SCISSOR_TEST)  # clear only the viewport (the widget keeps its letterbox bars)
        GL.glScissor(*(scissor if scissor is not None else viewport))
        GL.glClearColor(*clear_color)
        GL.glClearDepth(1.0)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
        GL.glDisable(GL.GL_CULL_FACE)
        if scene.background_bgr is not None:
            self._draw_background(scene.background_bgr)
        if scene.meshes:
            self._draw_meshes(scene.meshes, camera.view_projection(scene.depth_bounds()), camera, layer)
        if scene.overlays:
            if scene.background_bgr is not None:
                overlay_camera = ImageCamera(scene.background_bgr.shape[1], scene.background_bgr.shape[0])
            elif isinstance(camera, ImageCamera):
                overlay_camera = camera
            else:
                raise ValueError("Scene overlays are in image pixels: they need a background image or an ImageCamera")
            self._draw_overlays(scene.overlays, overlay_camera.view_projection(), overlay_scale)
        GL.glDisable(GL.GL_SCISSOR_TEST)
        GL.glBindVertexArray(0)
        GL.glUseProgram(0)

    def _draw_background(self, image_bgr: np.ndarray) -> None:
        image = np.ascontiguousarray(image_bgr)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"background must be (H, W, 3) uint8 BGR, got shape {image.shape} dtype {image.dtype}")
        height, width = image.shape[:2]
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._texture)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        if self._texture_size != (width, height):
            GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_RGB8, width, height, 0, GL.GL_BGR, GL.GL_UNSIGNED_BYTE, image)
            self._texture_size = (width, height)
        else:
            GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, width, height, GL.GL_BGR, GL.GL_UNSIGNED_BYTE, image)
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glDisable(GL.GL_BLEND)
        GL.glUseProgram(self._background_program.handle)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glUniform1i(self._background_program.uniforms["u_image"], 0)
        GL.glBindVertexArray(self._empty_vao)
        GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    def _draw_meshes(
        self, meshes: tuple[MeshDraw, ...], view_projection: np.ndarray, camera: Camera, layer: bool = False
    ) -> None:
        while len(self._meshes) < len(meshes):
            self._meshes.append(_MeshBuffers())
        program = self._mesh_program
        GL.glUseProgram(program.handle)
        GL.glUniformMatrix4fv(program.uniforms["u_view_projection"], 1, GL.GL_TRUE, view_projection)
        GL.glUniform4fv(program.uniforms["u_eye"], 1, camera.eye())
        GL.glUniform3fv(program.uniforms["u_light"], 1, camera.light_direction().astype(np.float32))
        GL.glUniform1i(program.uniforms["u_premultiply"], int(layer))
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)
        for buffers, mesh in zip(self._meshes, meshes):
            if mesh.normals is not None:
                normals = mesh.normals
            elif mesh.lit:
                normals = vertex_normals(mesh.vertices_image, mesh.triangles)
            else:  # unlit meshes (data maps) need no normals: skip the CPU pass over their triangles
                normals = np.zeros_like(mesh.vertices_image)
            buffers.upload(mesh.vertices_image, normals, mesh.triangles)
            buffers.upload_colors(mesh.vertex_colors)

        def set_mesh_uniforms(mesh: MeshDraw) -> None:
            GL.glUniform4fv(program.uniforms["u_color"], 1, np.asarray(mesh.color, dtype=np.float32))
            GL.glUniform1i(program.uniforms["u_vertex_colors"], int(mesh.vertex_colors is not None))
            GL.glUniform1i(program.uniforms["u_lit"], int(mesh.lit))

        if layer or all(mesh.color[3] >= 1.0 for mesh in meshes):
            # One opaque pass: the nearest surface wins (its alpha goes to the layer when drawing one). Opaque
            # meshes (the avatar) need no depth pre-pass: half the vertex and triangle work on software GL.
            GL.glDisable(GL.GL_BLEND)
            for buffers, mesh in zip(self._meshes, meshes):
                set_mesh_uniforms(mesh)
                buffers.draw()
        else:
            GL.glEnable(GL.GL_BLEND)
            GL.glBlendFuncSeparate(GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA, GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)
            # Depth-write everything first so only the nearest surface of each mesh blends over the video
            # (otherwise the far side of a turned face would show through its front).
            GL.glColorMask(GL.GL_FALSE, GL.GL_FALSE, GL.GL_FALSE, GL.GL_FALSE)
            for buffers in self._meshes[: len(meshes)]:
                buffers.draw()
            GL.glColorMask(GL.GL_TRUE, GL.GL_TRUE, GL.GL_TRUE, GL.GL_TRUE)
            GL.glDepthFunc(GL.GL_LEQUAL)
            for buffers, mesh in zip(self._meshes, meshes):
                set_mesh_uniforms(mesh)
                buffers.draw()
            GL.glDepthFunc(GL.GL_LESS)
        GL.glDisable(GL.GL_DEPTH_TEST)

    def _draw_overlays(self, overlays, view_projection: np.ndarray, overlay_scale: float) -> None:
        program = self._flat_program
        GL.glUseProgram(program.handle)
        GL.glUniformMatrix4fv(program.uniforms["u_view_projection"], 1, GL.GL_TRUE, view_projection)
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFuncSeparate(GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA, GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)
        GL.glEnable(GL.GL_PROGRAM_POINT_SIZE)
        GL.glBindVertexArray(self._flat_vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._flat_vbo)
        for overlay in overlays:
            if isinstance(overlay, PointsDraw):
                positions, mode, round_points = overlay.points_image, GL.GL_POINTS, True
                GL.glUniform1f(program.uniforms["u_point_size"], max(1.0, overlay.size_px * overlay_scale))
            elif isinstance(overlay, LinesDraw):
                positions, mode, round_points = overlay.quads(), GL.GL_TRIANGLES, False
                GL.glUniform1f(program.uniforms["u_point_size"], 1.0)
            else:
                raise TypeError(f"unknown overlay type {type(overlay).__name__}; expected PointsDraw or LinesDraw")
            if not len(positions):
                continue
            positions = np.ascontiguousarray(positions, dtype=np.float32)
            if positions.nbytes > self._flat_capacity:
                self._flat_capacity = max(positions.nbytes, 2 * self._flat_capacity)
                GL.glBufferData(GL.GL_ARRAY_BUFFER, self._flat_capacity, None, GL.GL_DYNAMIC_DRAW)
            GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, positions.nbytes, positions)
            GL.glUniform1i(program.uniforms["u_round"], int(round_points))
            GL.glUniform4fv(program.uniforms["u_color"], 1, np.asarray(overlay.color, dtype=np.float32))
            GL.glDrawArrays(mode, 0, len(positions))
        GL.glDisable(GL.GL_PROGRAM_POINT_SIZE)
        GL.glDisable(GL.GL_BLEND)

    # ------------------------------------------------------------------------------------------ cleanup
    def release(self) -> None:
        """Delete the GL objects (the context must be current)."""
        if not self.initialized:
            return
        for buffers in self._meshes:
            buffers.delete()
        self._meshes.clear()
        GL.glDeleteBuffers(1, [self._flat_vbo])
        GL.glDeleteVertexArrays(2, [self._flat_vao, self._empty_vao])
        GL.glDeleteTextures(1, [self._texture])
        for program in (self._mesh_program, self._flat_program, self._background_program):
            GL.glDeleteProgram(program.handle)
        self._mesh_program = self._flat_program = self._background_program = None
        self._texture_size = (0, 0)
