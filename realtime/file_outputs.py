"""Processing files for use elsewhere: photos and photo folders to renders + JSON + meshes, and per-frame meshes
of a video. ``main.py demo`` and ``main.py video`` call into here.

- :func:`process_photo`: one photo -> the render(s) (``--render mesh,depth,pncc``), a JSON naming the source
  with one record per face (:mod:`realtime.records`), and on request one OBJ / PLY per face
  (``F.obj``, ``F_1.obj``, ...; :mod:`realtime.meshio`).
- :func:`process_folder`: every photo of a folder *on its own* (IMAGE running mode: no tracking or smoothing
  state passes from one photo to the next) -> ``DIR/<name>.png`` + ``DIR/<name>.json`` (+ meshes);
  files that do not decode as images are named and skipped.
- :class:`MeshSequenceWriter`: a video's meshes every N frames, ``DIR/<stem>_f<frame>_t<track>.obj``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from export.cache import atomic_write_bytes, atomic_write_text
from realtime.meshio import (
    MeshTopology,
    face_mesh,
    numbered_paths,
    sample_texture,
    sample_vertex_colors,
    visible_vertices,
    write_obj,
    write_ply,
)
from realtime.outputs import IMAGE_SUFFIXES, Output, check_output_paths
from realtime.records import SCHEMA_VERSION, SourceInfo, face_record
from realtime.render_modes import create_drawer
from realtime.sources import Frame

LOGGER = logging.getLogger(__name__)

MESH_FORMATS = ("obj", "ply")


class UnreadableImageError(ValueError):
    """A file that does not decode as an image (the message names it)."""


@dataclass(frozen=True)
class PhotoSummary:
    """What :func:`process_photo` wrote: the number of faces and every file."""

    source: Path
    faces: int
    files: list[Path]


@dataclass(frozen=True)
class FolderSummary:
    """What :func:`process_folder` did.

    Attributes:
        photos: one :class:`PhotoSummary` per processed photo, in file-name order.
        skipped: ``(file, reason)`` for every file that was not processed.
    """

    photos: list[PhotoSummary] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


class PhotoProcessor:
    """Turns one photo at a time into renders, JSON and meshes with one IMAGE-mode pipeline.

    Args:
        pipeline: a :class:`realtime.pipeline.FacePipeline` in IMAGE mode (each photo stands alone).
        render_modes: renders to write, from :data:`realtime.render_modes.RENDER_MODES`; the first goes to the
            output path, each further one to ``<stem>_<mode><suffix>``.
        renderer: ``"gl"`` or ``"cv"`` for the mesh overlay.
        texture: sample a UV texture (OBJ) and vertex colours (PLY) from the photo.
    """

    def __init__(
        self, pipeline, render_modes: tuple[str, ...] | list[str] = ("mesh",), renderer: str = "gl", texture: bool = False
    ):
        from realtime.pipeline import RunningMode

        if pipeline.options.running_mode is not RunningMode.IMAGE:
            raise ValueError(
                f"PhotoProcessor needs an IMAGE-mode pipeline (photos stand alone), got {pipeline.options.running_mode.name}"
            )
        self.pipeline = pipeline
        self.render_modes = tuple(render_modes)
        self.renderer = renderer
        self.texture = texture
        self._drawers: dict[str, object] = {}
        self._topology: MeshTopology | None = None

    @property
    def topology(self) -> MeshTopology:
        if self._topology is None:
            self._topology = MeshTopology.load(self.pipeline.morphable, self.pipeline.options.assets_dir)
        return self._topology

    def _drawer(self, mode: str, width: int, height: int):
        if mode not in self._drawers:
            self._drawers[mode] = create_drawer(mode, self.pipeline, width, height, self.renderer)
        return self._drawers[mode]

    def process(self, image_path: str | Path, output_image: str | Path, records_json: str | Path | None = None,
                obj_path: str | Path | None = None, ply_path: str | Path | None = None) -> PhotoSummary:  # fmt: skip
        """Process one photo. Every output path is checked first (:func:`realtime.outputs.check_output_paths`:
        not the input, not another output, writable, the right extension), and each file is written under a
        temporary name and renamed into place.

        Raises:
            realtime.outputs.OutputPathError: an output path is refused (nothing written).
            UnreadableImageError: the file does not decode as an image.
            ValueError: an output cannot be encoded.
        """
        image_path, output_image = Path(image_path), Path(output_image)
        renders = [output_image if k == 0 else output_image.with_name(f"{output_image.stem}_{mode}{output_image.suffix}")
                   for k, mode in enumerate(self.render_modes)]  # fmt: skip
        records_json = Path(records_json) if records_json is not None else None
        self._check([Output(path, "-o", IMAGE_SUFFIXES) for path in renders]
                    + ([Output(records_json, "-o (its .json)", (".json",))] if records_json is not None else [])
                    + self._mesh_outputs(obj_path, ply_path, 1), image_path)  # fmt: skip
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise UnreadableImageError(f"cannot decode image {image_path}: not an image or a corrupt file")
        height, width = image.shape[:2]
        frame = Frame(image, 0.0, 0)
        result = self.pipeline.process(frame)
        if len(result.faces) > 1:  # F_1.obj, F_2.obj, ...: checked too before anything is written
            self._check(self._mesh_outputs(obj_path, ply_path, len(result.faces)), image_path)
        files: list[Path] = []
        for target, mode in zip(renders, self.render_modes):
            ok, encoded = cv2.imencode(target.suffix, self._drawer(mode, width, height).draw(image, result.faces))
            if not ok:
                raise ValueError(f"cannot encode {target} (use a .png or .jpg name)")
            files.append(atomic_write_bytes(target, encoded.tobytes()))
        source = SourceInfo(str(image_path), width, height, 0.0)
        if records_json is not None:
            document = {
                "schema_version": SCHEMA_VERSION,
                **source.fields(),
                "faces": [face_record(frame, face, source, self.pipeline.crop_size) for face in result.faces],
            }
            files.append(atomic_write_text(records_json, json.dumps(document)))
        if (obj_path is not None or ply_path is not None) and result.faces:
            files += write_face_meshes(self.pipeline, result.faces, image, obj_path, ply_path, self.topology, self.texture)
        return PhotoSummary(image_path, len(result.faces), files)

    def _mesh_outputs(self, obj_path, ply_path, faces: int) -> list[Output]:
        outputs = []
        for path in numbered_paths(obj_path, faces) if obj_path is not None else []:
            outputs.append(Output(path, "--obj", (".obj",)))
            if self.texture:
                outputs += [
                    Output(path.with_suffix(".mtl"), "--obj (its .mtl)"),
                    Output(path.with_name(f"{path.stem}_texture.png"), "--obj (its texture)"),
                ]
        outputs += [
            Output(path, "--ply", (".ply",)) for path in (numbered_paths(ply_path, faces) if ply_path is not None else [])
        ]
        return outputs

    @staticmethod
    def _check(outputs: list[Output], image_path: Path) -> None:
        check_output_paths(outputs, [image_path])

    def close(self) -> None:
        for drawer in self._drawers.values():
            drawer.close()
        self._drawers.clear()

    def __enter__(self) -> "PhotoProcessor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_face_meshes(pipeline, faces, image_bgr: np.ndarray, obj_path: str | Path | None, ply_path: str | Path | None,
                      topology: MeshTopology, texture: bool = False) -> list[Path]:  # fmt: skip
    """One mesh file per face and format: ``F.obj``, then ``F_1.obj``, ``F_2.obj``, ... in face order.

    Args:
        obj_path: OBJ (with UVs; + ``.mtl`` / ``_texture.png`` when ``texture``), or ``None``.
        ply_path: PLY (with UVs as ``s``, ``t``; + vertex colours when ``texture``), or ``None``.
        texture: sample the photo; each face's mesh and visibility are computed once for both files.
    """
    height, width = image_bgr.shape[:2]
    written: list[Path] = []
    obj_paths = numbered_paths(obj_path, len(faces)) if obj_path is not None else [None] * len(faces)
    ply_paths = numbered_paths(ply_path, len(faces)) if ply_path is not None else [None] * len(faces)
    for face, obj_target, ply_target in zip(faces, obj_paths, ply_paths):
        mesh = face_mesh(pipeline.morphable, face, pipeline.crop_size, (width, height), topology)
        visible = visible_vertices(mesh) if texture else None
        if obj_target is not None:
            written += write_obj(
                obj_target, mesh, sample_texture(image_bgr, mesh, topology, visibility=visible) if texture else None
            )
        if ply_target is not None:
            written.append(
                write_ply(ply_target, mesh, sample_vertex_colors(image_bgr, mesh, visibility=visible) if texture else None)
            )
    return written


def folder_files(folder: str | Path) -> list[Path]:
    """The files of ``folder`` that :func:`process_folder` tries, in name order (hidden files left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def process_folder(processor: PhotoProcessor, folder: str | Path, out_dir: str | Path, meshes: tuple[str, ...] = (),
                   render_suffix: str = ".png") -> FolderSummary:  # fmt: skip
    """Every file of ``folder`` as a photo of its own: ``out_dir/<name><render_suffix>``, ``out_dir/<name>.json``
    and with ``meshes`` (``"obj"``, ``"ply"``) ``out_dir/<name>.obj`` (``<name>_1.obj`` for a second face...).

    A file that does not decode as an image is logged with its name and skipped; the rest go on. ``<name>`` is
    the file name without its suffix (two photos differing only in suffix would collide: the second is skipped).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = FolderSummary()
    used: set[str] = set()
    for path in folder_files(folder):
        if path.stem in used:
            reason = f"another file already wrote {path.stem}.*"
            LOGGER.warning("skipped %s: %s", path, reason)
            summary.skipped.append((path, reason))
            continue
        base = out_dir / path.stem
        try:
            photo = processor.process(
                path,
                base.with_name(path.stem + render_suffix),
                base.with_name(path.stem + ".json"),
                base.with_name(path.stem + ".obj") if "obj" in meshes else None,
                base.with_name(path.stem + ".ply") if "ply" in meshes else None,
            )
        except UnreadableImageError:
            reason = "not a readable image"
            LOGGER.warning("skipped %s: %s", path, reason)
            summary.skipped.append((path, reason))
            continue
        used.add(path.stem)
        summary.photos.append(photo)
        LOGGER.info("%s: %d face(s)", path.name, summary.photos[-1].faces)
    return summary


class MeshSequenceWriter:
    """A video's face meshes every ``every`` frames: ``out_dir/<stem>_f<frame:06d>_t<track_id>.<fmt>``.

    Call :meth:`write` with each processed frame (a ``process_video`` frame hook).
    """

    def __init__(self, pipeline, out_dir: str | Path, every: int = 1, fmt: str = "obj", stem: str = "frame"):
        if int(every) < 1:
            raise ValueError(f"--mesh-every: expected >= 1, got {every}")
        if fmt not in MESH_FORMATS:
            raise ValueError(f"--mesh-format: expected one of {MESH_FORMATS}, got {fmt!r}")
        self.pipeline, self.every, self.format, self.stem = pipeline, int(every), fmt, stem
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.topology = MeshTopology.load(pipeline.morphable, pipeline.options.assets_dir)
        self.files = 0

    def write(self, frame: Frame, result) -> None:
        if frame.index % self.every:
            return
        height, width = frame.image_bgr.shape[:2]
        for face in result.faces:
            mesh = face_mesh(self.pipeline.morphable, face, self.pipeline.crop_size, (width, height), self.topology)
            target = self.out_dir / f"{self.stem}_f{frame.index:06d}_t{face.track_id}.{self.format}"
            if self.format == "obj":
                write_obj(target, mesh)
            else:
                write_ply(target, mesh)
            self.files += 1
