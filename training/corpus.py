"""The training corpus on disk: every face as a small square canvas plus exact labels.

Each entry holds a ``canvas`` (C x C uint8 BGR) cut around the face (``margin`` x its ROI box), the pose in
canvas pixels (3x4, image frame: x right, y down), the 50 shape coefficients, the 68 target landmarks in canvas
pixels and metadata. Training crops are random similarities of the canvas; the pose label follows each crop
exactly (:func:`training.geometry.pose_to_crop`).

Entries come from the fitted real faces (and their mirror images) and from face profiling of the training
faces (several profiles per face over yaw to 90 degrees and pitch to about 45, optionally a new expression through
the model). Real entries also carry the peer's prediction on their plain crop (``teacher_pose_canvas`` /
``teacher_shapes``), a second target for distillation where the fitted labels are weak.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from drtn import crop
from drtn.morphable import MorphableModel
from drtn.params import pose_angles_degrees
from training.geometry import pose_to_image
from training.labels import LabelSet, read_image
from training.profiling import ProfilePoseConfig, lift_similarity, profile_face, sample_profile_pose, sample_target_yaw

LOGGER = logging.getLogger(__name__)

CANVAS = 160  # canvas side in pixels
MARGIN = 1.3  # canvas side / ROI side


@dataclass
class Corpus:
    canvases: np.ndarray  # (N, C, C, 3) uint8
    pose_canvas: np.ndarray  # (N, 3, 4) float32: model -> canvas pixels
    shapes: np.ndarray  # (N, 50) float32: 40 identity + 10 expression
    landmarks: np.ndarray  # (N, 68, 2) float32 target landmarks, canvas pixels
    splits: np.ndarray  # (N,) str
    kinds: np.ndarray  # (N,) 'real' | 'mirror' | 'profile' | 'video'
    yaw_degrees: np.ndarray  # (N,) float32
    sources: np.ndarray | None = None  # (N,) str: '300w' | 'youtube_faces_68' | 'infanface' | 'video' (sampling weights)
    pitch_degrees: np.ndarray | None = None  # (N,) float32 (NaN: not recorded)
    teacher_pose_canvas: np.ndarray | None = None  # (N, 3, 4) float32 the peer's pose on the plain crop (NaN: none)
    teacher_shapes: np.ndarray | None = None  # (N, 50) float32 the peer's shape coefficients (NaN: none)
    groups: np.ndarray | None = None  # (N,) str photo / identity key ('' : not recorded)

    FIELDS = (
        "canvases",
        "pose_canvas",
        "shapes",
        "landmarks",
        "splits",
        "kinds",
        "yaw_degrees",
        "sources",
        "pitch_degrees",
        "teacher_pose_canvas",
        "teacher_shapes",
        "groups",
    )
    OPTIONAL = ("sources", "pitch_degrees", "teacher_pose_canvas", "teacher_shapes", "groups")

    def __post_init__(self) -> None:
        n = len(self.shapes)
        if self.sources is None:  # corpora written before sources existed
            self.sources = np.full(n, "unknown")
        if self.pitch_degrees is None:
            self.pitch_degrees = np.full(n, np.nan, np.float32)
        if self.teacher_pose_canvas is None:
            self.teacher_pose_canvas = np.full((n, 3, 4), np.nan, np.float32)
        if self.teacher_shapes is None:
            self.teacher_shapes = np.full((n, 50), np.nan, np.float32)
        if self.groups is None:
            self.groups = np.full(n, "")

    @property
    def has_teacher(self) -> np.ndarray:
        """(N,) bool: rows with a peer target."""
        return np.isfinite(self.teacher_pose_canvas).all(axis=(1, 2)) & np.isfinite(self.teacher_shapes).all(axis=1)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.FIELDS:
            tmp = folder / f"{name}.tmp.npy"
            np.save(tmp, getattr(self, name))
            tmp.replace(folder / f"{name}.npy")
        (folder / "summary.json").write_text(json.dumps(self.summary(), indent=1))

    @staticmethod
    def load(folder: str | Path, mmap: bool = False) -> "Corpus":
        folder = Path(folder)
        if not (folder / "canvases.npy").is_file():
            raise FileNotFoundError(f"no corpus in {folder} (build it with `main.py train --build-corpus`)")
        arrays = {
            name: np.load(folder / f"{name}.npy", mmap_mode="r" if mmap and name == "canvases" else None)
            for name in Corpus.FIELDS
            if (folder / f"{name}.npy").is_file()
        }
        return Corpus(**arrays)

    @staticmethod
    def from_rows(rows: dict[str, list]) -> "Corpus":
        """A corpus from per-entry lists keyed by :attr:`FIELDS` (what the builders collect); optional fields may
        be left empty (their defaults)."""
        n = len(rows["shapes"])
        optional = {name: rows.get(name) if len(rows.get(name) or []) == n else None for name in Corpus.OPTIONAL}
        return Corpus(
            canvases=np.stack(rows["canvases"]).astype(np.uint8),
            pose_canvas=np.stack(rows["pose_canvas"]).astype(np.float32),
            shapes=np.stack(rows["shapes"]).astype(np.float32),
            landmarks=np.stack(rows["landmarks"]).astype(np.float32),
            splits=np.array(rows["splits"]),
            kinds=np.array(rows["kinds"]),
            yaw_degrees=np.array(rows["yaw_degrees"], dtype=np.float32),
            sources=np.array(optional["sources"]) if optional["sources"] is not None else None,
            pitch_degrees=np.array(optional["pitch_degrees"], dtype=np.float32)
            if optional["pitch_degrees"] is not None
            else None,
            teacher_pose_canvas=np.stack(optional["teacher_pose_canvas"]).astype(np.float32)
            if optional["teacher_pose_canvas"] is not None
            else None,
            teacher_shapes=np.stack(optional["teacher_shapes"]).astype(np.float32)
            if optional["teacher_shapes"] is not None
            else None,
            groups=np.array(optional["groups"]) if optional["groups"] is not None else None,
        )

    @staticmethod
    def empty() -> "Corpus":
        return Corpus(
            np.zeros((0, CANVAS, CANVAS, 3), np.uint8),
            np.zeros((0, 3, 4), np.float32),
            np.zeros((0, 50), np.float32),
            np.zeros((0, 68, 2), np.float32),
            np.zeros(0, "<U12"),
            np.zeros(0, "<U8"),
            np.zeros(0, np.float32),
        )

    @staticmethod
    def concat(parts: list["Corpus"]) -> "Corpus":
        return Corpus(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in Corpus.FIELDS})

    def select(self, mask: np.ndarray) -> "Corpus":
        return Corpus(**{name: getattr(self, name)[mask] for name in self.FIELDS})

    def __len__(self) -> int:
        return len(self.shapes)

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 characters) of the labels, bookkeeping and every 97th canvas: two builds that give the
        same fingerprint give the same batches, so a resumed run is exact; a different one is said on resume."""
        digest = hashlib.sha256()
        for name in self.FIELDS:
            value = getattr(self, name)
            if name == "canvases":
                value = np.ascontiguousarray(value[::97])
            value = np.asarray(value)
            digest.update(f"{name}{value.dtype.str}{value.shape}".encode())
            digest.update(value.tobytes() if value.dtype.kind != "U" else "\x00".join(value.tolist()).encode())
        return digest.hexdigest()[:16]

    def summary(self) -> dict:
        out = {}
        for split in sorted(set(self.splits.tolist())):
            for kind in sorted(set(self.kinds.tolist())):
                n = int(((self.splits == split) & (self.kinds == kind)).sum())
                if n:
                    out[f"{split}/{kind}"] = n
        return out


def _canvas_box(roi_box: np.ndarray) -> np.ndarray:
    centre = (roi_box[:2] + roi_box[2:]) / 2
    half = (roi_box[2] - roi_box[0]) * MARGIN / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def to_canvas(image: np.ndarray, roi_box: np.ndarray, pose_image: np.ndarray, landmarks: np.ndarray):
    box = _canvas_box(roi_box)
    affine = crop.image_to_crop_affine(box, CANVAS)
    canvas = crop.crop_image(image, box, CANVAS)
    points = landmarks @ affine[:, :2].T + affine[:, 2]
    return canvas, pose_in_canvas(pose_image, roi_box), points


def pose_in_canvas(pose_image: np.ndarray, roi_box: np.ndarray) -> np.ndarray:
    """(3, 4) image-frame pose -> the pose in the pixels of the canvas :func:`to_canvas` cuts around ``roi_box``."""
    lift = lift_similarity(crop.image_to_crop_affine(_canvas_box(roi_box), CANVAS))
    return np.concatenate([lift[:3, :3] @ pose_image[:, :3], (lift[:3, :3] @ pose_image[:, 3] + lift[:3, 3])[:, None]], 1)


@dataclass(frozen=True)
class ProfilingPlan:
    """How many profiles each training face gets and where they go.

    ``poses=None`` is the first recipe (yaw only, 35-85 degrees, one profile per profiled face); a
    :class:`training.profiling.ProfilePoseConfig` spreads profiles over yaw and pitch.
    """

    fraction: float = 0.5  # share of training faces that are profiled
    per_face: float = 1  # profiles per profiled face (sources not in per_source); 0.3: one profile for 30 % of them
    per_source: dict[str, float] = field(default_factory=dict)  # e.g. {"youtube_faces_68": 0.3, "300w": 2}
    poses: ProfilePoseConfig | None = None
    expression_probability: float = 0.3
    expression_scale: float = 0.7  # new expression = fitted + N(0, 1) x std x this

    def count(self, source: str, rng: np.random.Generator) -> int:
        """Profiles of one face: the integer part of its source's count, plus one with the fractional part's chance."""
        value = float(self.per_source.get(source, self.per_face))
        whole = int(value)
        return whole + int(rng.random() < value - whole)


_WORK: dict = {}  # the read-only inputs of the worker processes (inherited through fork)


def _face_rows(i: int) -> list[tuple]:
    labels, morphable, plan, seed, max_fit_nme, parts = (
        _WORK[k] for k in ("labels", "morphable", "plan", "seed", "max_fit_nme", "parts")
    )
    rng = np.random.default_rng([seed, i])
    image = read_image(labels.image_paths[i], bool(labels.mirrored[i]))
    params = labels.params[i].astype(np.float64)
    box = labels.roi_boxes[i]
    pose_image = pose_to_image(params[:12].reshape(3, 4), box)
    yaw, pitch, _ = pose_angles_degrees(params[None])[0]
    canvas, pose, points = to_canvas(image, box, pose_image, labels.landmarks[i])
    source = str(labels.groups[i]).split("/", 1)[0]
    teacher = labels.teacher_params[i].astype(np.float64)
    teacher_pose = pose_in_canvas(pose_to_image(teacher[:12].reshape(3, 4), box), box)
    kind = "mirror" if labels.mirrored[i] else "real"
    group = str(labels.groups[i])
    out = [
        (
            canvas,
            pose,
            params[12:],
            points,
            str(labels.splits[i]),
            kind,
            float(yaw),
            source,
            float(pitch),
            teacher_pose,
            teacher[12:],
            group,
        )
    ]
    if "real" not in parts:
        out = []
    if (
        "profiles" not in parts
        or labels.splits[i] != "train"
        or labels.fit_nme[i] > max_fit_nme
        or rng.random() >= plan.fraction
    ):
        return out
    expression_std = morphable.stats.std[52:]
    no_teacher = (np.full((3, 4), np.nan), np.full(50, np.nan))
    for _ in range(plan.count(source, rng)):
        if plan.poses is None:  # first recipe: turn further the way the face already looks, to 35-85 degrees of yaw
            delta_yaw, delta_pitch = sample_target_yaw(yaw, rng, 35, 85) - yaw, 0.0
        else:
            target_yaw, target_pitch = sample_profile_pose(float(yaw), float(pitch), rng, plan.poses)
            delta_yaw, delta_pitch = target_yaw - yaw, target_pitch - pitch
        new_expression = None
        if rng.random() < plan.expression_probability:  # expression change through the model
            new_expression = params[52:] + rng.normal(0, 1, 10) * expression_std * plan.expression_scale
        face = profile_face(
            image,
            box,
            params,
            delta_yaw,
            morphable,
            new_expression,
            canvas_size=224,
            canvas_margin=1.45,
            delta_pitch_degrees=delta_pitch,
        )
        # the model landmarks are the targets of a generated face (as 300W-LP)
        pose_img = pose_to_image(face.params[:12].astype(np.float64).reshape(3, 4), face.roi_box)
        p_canvas, p_pose, p_points = to_canvas(face.image, face.roi_box, pose_img, face.landmarks)
        out.append(
            (
                p_canvas,
                p_pose,
                face.params[12:],
                p_points,
                "train",
                "profile",
                face.yaw_degrees,
                source,
                face.pitch_degrees,
                *no_teacher,
                group,
            )
        )
    return out


def build_corpus(
    labels: LabelSet,
    morphable: MorphableModel,
    profile_fraction: float = 0.5,
    seed: int = 0,
    max_fit_nme: float = 0.05,
    plan: ProfilingPlan | None = None,
    workers: int = 1,
    indices: np.ndarray | None = None,
    parts: tuple[str, ...] = ("real", "profiles"),
) -> Corpus:
    """Canvases of all labelled faces, plus profiled versions of the *training* faces (``plan``; default: a
    ``profile_fraction`` share of them, one yaw profile each). Deterministic in ``seed`` (each face draws from
    its own generator), whatever ``workers`` (processes) is.

    Faces whose fit residual exceeds ``max_fit_nme`` keep their real entry for validation but are not profiled.
    ``indices`` (label rows, default all) and ``parts`` ('real' entries, 'profiles') select a shard.
    """
    plan = plan or ProfilingPlan(fraction=profile_fraction)
    indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
    _WORK.update(labels=labels, morphable=morphable, plan=plan, seed=seed, max_fit_nme=max_fit_nme, parts=tuple(parts))
    rows = {name: [] for name in Corpus.FIELDS}
    try:
        if workers > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                results = pool.imap(_face_rows, indices.tolist(), chunksize=4)
                for entries in tqdm(results, total=len(indices), desc="corpus"):
                    _collect(rows, entries)
        else:
            for i in tqdm(indices.tolist(), desc="corpus"):
                _collect(rows, _face_rows(i))
    finally:
        _WORK.clear()
    if not rows["shapes"]:
        return Corpus.empty()
    corpus = Corpus.from_rows(rows)
    LOGGER.info("corpus: %s", corpus.summary())
    return corpus


def _collect(rows: dict, entries: list[tuple]) -> None:
    for entry in entries:
        for name, value in zip(Corpus.FIELDS, entry):
            rows[name].append(value)


SOURCE_ORDER = ("300w", "infanface", "youtube_faces_68")  # profiles of the scarce sources first


def build_corpus_shards(
    labels: LabelSet,
    morphable: MorphableModel,
    plan: ProfilingPlan,
    folder: str | Path,
    shard_faces: int = 600,
    workers: int = 1,
    seed: int = 0,
) -> Corpus:
    """:func:`build_corpus` in shards saved as they finish (``folder/real``, ``folder/profiles_NNN``), so a build
    that is stopped resumes where it was and a run can start on the shards that exist. Profiles come in
    :data:`SOURCE_ORDER` (faces of scarce sources first). Returns all shards concatenated.
    """
    folder = Path(folder)
    real_dir = folder / "real"
    if not (real_dir / "canvases.npy").is_file():
        build_corpus(labels, morphable, seed=seed, plan=plan, workers=workers, parts=("real",)).save(real_dir)
    sources = np.array([str(g).split("/", 1)[0] for g in labels.groups])
    rank = np.array([SOURCE_ORDER.index(s) if s in SOURCE_ORDER else len(SOURCE_ORDER) for s in sources])
    order = np.flatnonzero(labels.splits == "train")
    order = order[np.argsort(rank[order], kind="stable")]
    for number, start in enumerate(range(0, len(order), shard_faces)):
        shard = folder / f"profiles_{number:03d}"
        if not (shard / "canvases.npy").is_file():
            build_corpus(
                labels,
                morphable,
                seed=seed,
                plan=plan,
                workers=workers,
                indices=order[start : start + shard_faces],
                parts=("profiles",),
            ).save(shard)
    (folder / "complete").write_text("all shards built\n")
    return load_shards(folder)


def load_shards(folder: str | Path) -> Corpus:
    """The shards of :func:`build_corpus_shards` that exist (a build may still be running)."""
    folder = Path(folder)
    parts = [Corpus.load(folder / "real")] + [
        Corpus.load(d) for d in sorted(folder.glob("profiles_*")) if (d / "canvases.npy").is_file()
    ]
    return Corpus.concat(parts)
