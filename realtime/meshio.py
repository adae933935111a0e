"""Face meshes out of the tracker: the 38,365-vertex BFM mesh of each face as OBJ (with UVs, optional texture
sampled from the photo) and PLY, and readers for both (tests, round trips, the Python API).

The exported mesh is the display mesh of :mod:`drtn.morphable` (identity + expression applied, posed like the
face in the photo), with the BFM's texture coordinates (``bfm/BFM_UV.mat`` at ``bfm/indices.npy``).

Exported coordinates (*mesh frame*): image pixels with y flipped up -- ``x`` = image x, ``y`` = image height -
image y, ``z`` = depth in pixels, larger nearer the camera. A right-handed, y-up frame (as Blender, MeshLab
and three.js expect), origin at the photo's bottom-left corner: a plane of ``W x H`` at z = 0 textured with the
photo lines up with the mesh when looked at along -z. Triangles wind counter-clockwise seen from the front.

>>> mesh = face_mesh(morphable, face, crop_size=120, image_size=(w, h))          # doctest: +SKIP
>>> write_obj("face.obj", mesh, texture_bgr=sample_texture(image_bgr, mesh))      # face.obj + .mtl + .png
>>> write_ply("face.ply", mesh, colors_rgb=sample_vertex_colors(image_bgr, mesh))
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from drtn.assets import Assets, find_assets
from drtn.crop import model_to_image
from export.cache import atomic_write_bytes, atomic_write_text

LOGGER = logging.getLogger(__name__)

TEXTURE_SIZE = 512  # texels per side of the sampled UV texture


@dataclass(frozen=True)
class FaceMesh:
    """One face's mesh in the mesh frame (see the module docstring).

    Attributes:
        vertices: (K, 3) float32 mesh-frame coordinates (pixels, y up, z nearer = larger).
        triangles: (T, 3) int32, counter-clockwise seen from the front (+z).
        uv: (K, 2) float32 texture coordinates in [0, 1], v up (OBJ convention); ``None`` for meshes without.
        image_size: ``(width, height)`` of the photo the mesh was posed in.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray | None
    image_size: tuple[int, int]

    def __post_init__(self):
        vertices = np.asarray(self.vertices)
        triangles = np.asarray(self.triangles)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise ValueError(f"FaceMesh: vertices must be (K, 3), got shape {vertices.shape}")
        if (
            triangles.ndim != 2
            or triangles.shape[1] != 3
            or (triangles.size and (triangles.min() < 0 or triangles.max() >= len(vertices)))
        ):
            raise ValueError(
                f"FaceMesh: triangles must be (T, 3) indices into {len(vertices)} vertices, got shape {triangles.shape}"
            )
        if self.uv is not None and np.shape(self.uv) != (len(vertices), 2):
            raise ValueError(f"FaceMesh: uv must be ({len(vertices)}, 2), got shape {np.shape(self.uv)}")

    @property
    def vertices_image(self) -> np.ndarray:
        """(K, 3) float32 back in image pixels (y down), as ``FaceResult.vertices_image``."""
        out = np.array(self.vertices, dtype=np.float32, copy=True)
        out[:, 1] = self.image_size[1] - out[:, 1]
        return out


class MeshTopology:
    """The display mesh's fixed parts: triangles (front-facing winding) and UVs, loaded once per asset folder."""

    def __init__(self, triangles: np.ndarray, uv: np.ndarray):
        self.triangles = np.ascontiguousarray(triangles, dtype=np.int32)
        self.uv = np.ascontiguousarray(uv, dtype=np.float32)
        self._texel_map: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def load(morphable, assets: Assets | str | None = None) -> "MeshTopology":
        """Triangles from ``morphable.display_triangles`` (re-wound to face +z), UVs from ``bfm/BFM_UV.mat``."""
        from scipy.io import loadmat

        if not isinstance(assets, Assets):
            assets = find_assets(assets)
        path = assets.path("bfm/BFM_UV.mat")
        uv_full = np.asarray(loadmat(str(path), variable_names=["UV"]).get("UV", np.zeros((0,))), dtype=np.float64)
        if uv_full.ndim != 2 or uv_full.shape[1] != 2:
            raise ValueError(f"{path}: expected a 'UV' array of shape (53215, 2)")
        indices = np.load(assets.path("bfm/indices.npy"))
        triangles = np.asarray(morphable.display_triangles, dtype=np.int64)
        # tri.pkl winds clockwise seen from the front (its summed normal points to -z): flip to counter-clockwise
        mean = np.asarray(morphable.display_mean, dtype=np.float64)
        a, b, c = (mean[triangles[:, k]] for k in range(3))
        if np.cross(b - a, c - a).sum(axis=0)[2] < 0:
            triangles = triangles[:, [0, 2, 1]]
        return MeshTopology(triangles, uv_full[indices])

    def texel_map(self, size: int = TEXTURE_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """For each texel of a ``size x size`` texture: the triangle that covers it and its barycentric weights.

        Returns:
            ``(triangle (size*size,) int64, -1 where no triangle covers the texel; weights (size*size, 3))``,
            texel row 0 at the top of the image (v = 1).
        """
        if size not in self._texel_map:
            # rasterise triangle ids in texel space (later triangles win where the BFM's UV layout overlaps)
            corners_px = self.uv[self.triangles].astype(np.float64) * size  # (T, 3, 2), u right, v up
            corners_px[..., 1] = size - corners_px[..., 1]  # row 0 at the top
            ids = np.full((size, size), -1, dtype=np.int32)
            shift = 4  # sub-texel precision of the rasteriser
            fixed = np.round((corners_px - 0.5) * (1 << shift)).astype(np.int32)
            for index, polygon in enumerate(fixed):
                cv2.fillConvexPoly(ids, polygon, index, lineType=cv2.LINE_8, shift=shift)
            found = ids.ravel().astype(np.int64)
            rows, cols = np.divmod(np.arange(size * size), size)
            u = (cols + 0.5) / size
            v = 1.0 - (rows + 0.5) / size
            weights = np.zeros((found.size, 3))
            inside = found >= 0
            corners = self.uv[self.triangles[found[inside]]].astype(np.float64)  # (M, 3, 2)
            p = np.stack([u[inside], v[inside]], axis=1)
            e1, e2, d = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], p - corners[:, 0]
            det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
            det = np.where(np.abs(det) < 1e-15, 1e-15, det)
            w1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / det
            w2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / det
            # texels at a triangle's edge may lie a hair outside it: clamp to the triangle
            weights[inside] = np.clip(np.stack([1 - w1 - w2, w1, w2], axis=1), 0.0, 1.0)
            weights[inside] /= weights[inside].sum(axis=1, keepdims=True)
            self._texel_map[size] = (found, weights)
        return self._texel_map[size]


def face_mesh(morphable, face, crop_size: int, image_size: tuple[int, int], topology: MeshTopology | None = None) -> FaceMesh:
    """The posed display mesh of one tracked face.

    Args:
        morphable: :class:`drtn.morphable.MorphableModel`.
        face: a :class:`realtime.pipeline.FaceResult` (``params`` (62,) and ``roi_box`` (4,) are used).
        crop_size: the backend's crop size (``FacePipeline.crop_size``).
        image_size: ``(width, height)`` of the frame.
        topology: :meth:`MeshTopology.load` (triangles + UVs); ``None``: the morphable's triangles, no UVs.
    """
    width, height = (int(v) for v in image_size)
    model = morphable.display_vertices(np.asarray(face.params, dtype=np.float64)[None])[0]  # (3, K) model frame
    image = model_to_image(model, np.asarray(face.roi_box, dtype=np.float64), crop_size)  # (3, K) x, y down, z
    vertices = np.stack([image[0], height - image[1], image[2]], axis=1).astype(np.float32)
    if topology is None:
        return FaceMesh(vertices, np.asarray(morphable.display_triangles, dtype=np.int32), None, (width, height))
    return FaceMesh(vertices, topology.triangles, topology.uv, (width, height))


def _visible(mesh: FaceMesh, visibility: bool | np.ndarray) -> np.ndarray | None:
    """``visibility`` as a (K,) bool mask: ``True`` -> :func:`visible_vertices`, ``False`` -> ``None`` (all seen)."""
    if isinstance(visibility, np.ndarray):
        if visibility.shape != (len(mesh.vertices),):
            raise ValueError(f"visibility: expected a ({len(mesh.vertices)},) mask, got shape {visibility.shape}")
        return visibility.astype(bool)
    return visible_vertices(mesh) if visibility else None


def sample_vertex_colors(image_bgr: np.ndarray, mesh: FaceMesh, visibility: bool | np.ndarray = True) -> np.ndarray:
    """(K, 3) uint8 RGB: the photo's colour under each vertex (bilinear; black outside the photo and, with
    ``visibility``, at vertices hidden in the photo: :func:`visible_vertices`, or a given (K,) mask)."""
    image = mesh.vertices_image
    count, columns = len(image), 256  # remap maps must stay under 32767 rows
    rows = -(-count // columns)
    map_x = np.full(rows * columns, -1.0, dtype=np.float32)
    map_y = np.full(rows * columns, -1.0, dtype=np.float32)
    map_x[:count], map_y[:count] = image[:, 0], image[:, 1]
    sampled = cv2.remap(np.asarray(image_bgr), map_x.reshape(rows, columns), map_y.reshape(rows, columns), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT)  # fmt: skip
    colors = np.ascontiguousarray(sampled.reshape(-1, 3)[:count, ::-1])
    visible = _visible(mesh, visibility)
    if visible is not None:
        colors[~visible] = 0
    return colors


def visible_vertices(mesh: FaceMesh, tolerance: float = 0.03) -> np.ndarray:
    """(K,) bool: vertices not hidden by the mesh itself as seen by the camera (along -z in image space).

    A z-buffer of the triangles (each at its nearest depth, drawn far to near with OpenCV) at the photo's pixels;
    a vertex is visible when it lies within ``tolerance`` x the face's width of the nearest surface at its pixel.
    Vertices outside the photo count as hidden.
    """
    vertices = mesh.vertices_image.astype(np.float64)
    width, height = mesh.image_size
    low = np.floor(vertices[:, :2].min(axis=0)).astype(int)
    high = np.ceil(vertices[:, :2].max(axis=0)).astype(int) + 1
    origin = np.maximum(low, 0)
    size = np.minimum(high, [width, height]) - origin
    visible = np.zeros(len(vertices), dtype=bool)
    if (size <= 0).any():
        return visible
    zbuffer = np.full((size[1], size[0]), -np.inf, dtype=np.float32)
    triangles = np.asarray(mesh.triangles)
    depth = vertices[triangles, 2].max(axis=1)
    shift = 2
    corners = np.round((vertices[triangles, :2] - origin) * (1 << shift)).astype(np.int32)
    for index in np.argsort(depth):  # far first: nearer triangles overwrite
        cv2.fillConvexPoly(zbuffer, corners[index], float(depth[index]), lineType=cv2.LINE_8, shift=shift)
    pixel = np.round(vertices[:, :2]).astype(int) - origin
    inside = (pixel >= 0).all(axis=1) & (pixel < size).all(axis=1)
    face_width = float(np.ptp(vertices[:, 0]))
    nearest = zbuffer[pixel[inside, 1], pixel[inside, 0]]
    visible[inside] = vertices[inside, 2] >= nearest - tolerance * face_width
    return visible


def sample_texture(image_bgr: np.ndarray, mesh: FaceMesh, topology: MeshTopology, size: int = TEXTURE_SIZE,
                   visibility: bool | np.ndarray = True) -> np.ndarray:  # fmt: skip
    """A ``size x size`` BGR texture in the mesh's UV layout, each texel sampled from the photo where its
    surface point lies in the image (bilinear). Texels outside every triangle stay black, and with
    ``visibility`` so do texels of triangles hidden in the photo (:func:`visible_vertices`, or a given (K,)
    mask: the far side of a turned face would otherwise sample the background or the nose in front of it).

    Returns:
        (size, size, 3) uint8 BGR, row 0 at the top (v = 1).
    """
    found, weights = topology.texel_map(size)
    image_xy = mesh.vertices_image[:, :2].astype(np.float64)
    inside = found >= 0
    visible = _visible(mesh, visibility)
    if visible is not None:
        seen = visible[topology.triangles].all(axis=1)  # (T,) every corner visible
        inside &= seen[np.maximum(found, 0)]
    corners = image_xy[topology.triangles[found[inside]]]  # (M, 3, 2)
    points = (corners * weights[inside][:, :, None]).sum(axis=1)
    map_x = np.full(size * size, -1.0, dtype=np.float32)
    map_y = np.full(size * size, -1.0, dtype=np.float32)
    map_x[inside], map_y[inside] = points[:, 0], points[:, 1]
    return cv2.remap(np.asarray(image_bgr), map_x.reshape(size, size), map_y.reshape(size, size), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT)  # fmt: skip


# ---------------------------------------------------------------------------------------------- writing
def numbered_paths(path: str | Path, count: int) -> list[Path]:
    """``F.obj`` -> ``[F.obj, F_1.obj, F_2.obj, ...]`` (one file per face, the first keeps the name)."""
    path = Path(path)
    return [path if k == 0 else path.with_name(f"{path.stem}_{k}{path.suffix}") for k in range(count)]


def write_obj(path: str | Path, mesh: FaceMesh, texture_bgr: np.ndarray | None = None) -> list[Path]:
    """Write a Wavefront OBJ (``v``, ``vt`` when the mesh has UVs, ``f v/vt``), and with ``texture_bgr`` a
    ``<stem>.mtl`` and ``<stem>_texture.png`` beside it.

    Returns:
        the files written.
    """
    path = Path(path)
    if path.suffix.lower() != ".obj":
        raise ValueError(f"write_obj: expected a .obj path, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = [path]
    lines = [f"# DRTN face mesh: {len(mesh.vertices)} vertices, {len(mesh.triangles)} triangles; "
             f"pixels of a {mesh.image_size[0]}x{mesh.image_size[1]} image, x right, y up (height - image y), z towards the viewer"]  # fmt: skip
    if texture_bgr is not None:
        if mesh.uv is None:
            raise ValueError("write_obj: a texture needs a mesh with UVs (face_mesh with a MeshTopology)")
        material, texture = path.with_suffix(".mtl"), path.with_name(f"{path.stem}_texture.png")
        ok, encoded = cv2.imencode(".png", texture_bgr)
        if not ok:
            raise ValueError(f"cannot encode texture {texture}")
        atomic_write_bytes(texture, encoded.tobytes())
        atomic_write_text(material, f"newmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture.name}\n")
        lines += [f"mtllib {material.name}", "usemtl face"]
        written += [material, texture]
    body = [_rows("v %.4f %.4f %.4f", mesh.vertices)]
    faces = np.asarray(mesh.triangles, dtype=np.int64) + 1  # OBJ counts from 1
    if mesh.uv is not None:
        body.append(_rows("vt %.6f %.6f", mesh.uv))
        body.append(_rows("f %d/%d %d/%d %d/%d", np.repeat(faces, 2, axis=1)))
    else:
        body.append(_rows("f %d %d %d", faces))
    atomic_write_text(path, "\n".join(lines + body) + "\n")  # temporary name, then renamed into place
    return written


def _rows(template: str, values: np.ndarray) -> str:
    """Every row of ``values`` through ``template`` in one formatting call (5x faster than row by row)."""
    values = np.asarray(values)
    if not len(values):
        return ""
    return (template + "\n") * (len(values) - 1) % tuple(values[:-1].ravel().tolist()) + template % tuple(values[-1].tolist())


def write_ply(path: str | Path, mesh: FaceMesh, colors_rgb: np.ndarray | None = None) -> Path:
    """Write a binary little-endian PLY: vertex ``x y z`` (+ ``s t`` UVs when the mesh has them, + ``red green
    blue`` uchar with ``colors_rgb`` (K, 3) uint8), face ``vertex_indices`` (uchar count, int indices)."""
    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise ValueError(f"write_ply: expected a .ply path, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if mesh.uv is not None:
        fields += [("s", "<f4"), ("t", "<f4")]
    if colors_rgb is not None:
        colors_rgb = np.asarray(colors_rgb)
        if colors_rgb.shape != (len(mesh.vertices), 3):
            raise ValueError(f"write_ply: colors_rgb must be ({len(mesh.vertices)}, 3) uint8, got shape {colors_rgb.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.zeros(len(mesh.vertices), dtype=fields)
    for k, axis in enumerate("xyz"):
        vertices[axis] = mesh.vertices[:, k]
    if mesh.uv is not None:
        vertices["s"], vertices["t"] = mesh.uv[:, 0], mesh.uv[:, 1]
    if colors_rgb is not None:
        for k, channel in enumerate(("red", "green", "blue")):
            vertices[channel] = colors_rgb[:, k]
    faces = np.zeros(len(mesh.triangles), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    faces["n"], faces["i"] = 3, mesh.triangles
    names = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment DRTN face mesh: pixels, x right, y up, z towards the viewer",
              f"element vertex {len(vertices)}"]  # fmt: skip
    header += [f"property {names[kind]} {name}" for name, kind in fields]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    atomic_write_bytes(path, ("\n".join(header) + "\n").encode("ascii") + vertices.tobytes() + faces.tobytes())
    return path


# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class LoadedMesh:
    """What :func:`read_obj` / :func:`read_ply` found: vertices (K, 3) float64, triangles (T, 3) int64,
    uv (K, 2) or ``None``, colors (K, 3) uint8 or ``None``, texture file or ``None``."""

    vertices: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray | None = None
    colors: np.ndarray | None = None
    texture_path: Path | None = None


def read_obj(path: str | Path) -> LoadedMesh:
    """Read an OBJ of triangles (``v``, ``vt``, ``f a``, ``f a/b``, ``f a/b/c``, ``f a//c``; 1-based or negative
    indices). Texture coordinates are returned per vertex when every face uses the vertex's own index for them.

    Raises:
        ValueError: a face that is not a triangle, or an index out of range (naming the file and line).
    """
    path = Path(path)
    vertices, uvs, faces, face_uvs = [], [], [], []
    material_file = None
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            tag = parts[0]
            if tag == "v":
                vertices.append([float(v) for v in parts[1:4]])
            elif tag == "vt":
                uvs.append([float(v) for v in parts[1:3]])
            elif tag == "f":
                if len(parts) != 4:
                    raise ValueError(f"{path}:{number}: expected a triangle, got {len(parts) - 1} corners")
                corners = [corner.split("/") for corner in parts[1:]]
                faces.append([_obj_index(c[0], len(vertices), path, number) for c in corners])
                if all(len(c) > 1 and c[1] for c in corners):
                    face_uvs.append([_obj_index(c[1], len(uvs), path, number) for c in corners])
            elif tag == "mtllib":
                material_file = path.parent / parts[1]
    triangles = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    uv = None
    if uvs and len(face_uvs) == len(faces):
        uv_index = np.asarray(face_uvs, dtype=np.int64).reshape(-1, 3)
        per_vertex = np.full((len(vertices), 2), np.nan)
        per_vertex[triangles.ravel()] = np.asarray(uvs)[uv_index.ravel()]
        uv = per_vertex
    texture = None
    if material_file is not None and material_file.is_file():
        match = re.search(r"^\s*map_Kd\s+(\S+)", material_file.read_text(encoding="utf-8"), re.MULTILINE)
        texture = material_file.parent / match.group(1) if match else None
    return LoadedMesh(np.asarray(vertices, dtype=np.float64).reshape(-1, 3), triangles, uv, None, texture)


def _obj_index(text: str, count: int, path: Path, number: int) -> int:
    index = int(text)
    index = index - 1 if index > 0 else count + index
    if not 0 <= index < count:
        raise ValueError(f"{path}:{number}: index {text} out of range (have {count})")
    return index


_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4", "float": "f4",
              "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4",
              "uint32": "u4", "float32": "f4", "float64": "f8"}  # fmt: skip


def read_ply(path: str | Path) -> LoadedMesh:
    """Read a binary little-endian or ASCII PLY with triangle faces (``vertex_indices`` or ``vertex_index``).

    Raises:
        ValueError: another format, or faces that are not triangles.
    """
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii").splitlines()
    fmt = next((line.split()[1] for line in header if line.startswith("format")), "")
    elements: list[tuple[str, int, list]] = []
    for line in header:
        parts = line.split()
        if parts[:1] == ["element"]:
            elements.append((parts[1], int(parts[2]), []))
        elif parts[:1] == ["property"]:
            elements[-1][2].append(parts[1:])
    if fmt not in ("binary_little_endian", "ascii"):
        raise ValueError(f"{path}: PLY format {fmt!r} is not supported (binary_little_endian or ascii)")
    vertex_table = faces = None
    if fmt == "ascii":
        tokens = iter(data[body_start:].split())
        for name, count, properties in elements:
            if name == "vertex":
                rows = [[float(next(tokens)) for _ in properties] for _ in range(count)]
                vertex_table = {p[-1]: np.asarray([r[k] for r in rows]) for k, p in enumerate(properties)}
            elif name == "face":
                out = []
                for _ in range(count):
                    n = int(next(tokens))
                    out.append([int(next(tokens)) for _ in range(n)])
                faces = out
    else:
        offset = body_start
        for name, count, properties in elements:
            if name == "face":
                count_type, index_type = _PLY_TYPES[properties[0][1]], _PLY_TYPES[properties[0][2]]
                record = np.dtype([("n", "<" + count_type), ("i", "<" + index_type, (3,))])
                table = np.frombuffer(data, dtype=record, count=count, offset=offset)
                if count and not np.all(table["n"] == 3):
                    raise ValueError(f"{path}: only triangle faces are supported")
                faces = table["i"].astype(np.int64)
                offset += record.itemsize * count
            else:
                record = np.dtype([(p[-1], "<" + _PLY_TYPES[p[0]]) for p in properties])
                table = np.frombuffer(data, dtype=record, count=count, offset=offset)
                if name == "vertex":
                    vertex_table = {p[-1]: table[p[-1]] for p in properties}
                offset += record.itemsize * count
    if vertex_table is None or faces is None:
        raise ValueError(f"{path}: expected vertex and face elements")
    triangles = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    vertices = np.stack([vertex_table[a] for a in "xyz"], axis=1).astype(np.float64)
    uv = np.stack([vertex_table["s"], vertex_table["t"]], axis=1).astype(np.float64) if "s" in vertex_table else None
    colors = (
        np.stack([vertex_table[c] for c in ("red", "green", "blue")], axis=1).astype(np.uint8)
        if "red" in vertex_table
        else None
    )
    return LoadedMesh(vertices, triangles, uv, colors)
