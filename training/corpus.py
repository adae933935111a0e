"""The training corpus on disk: every face as a small square canvas plus exact labels.

Each entry holds a ``canvas`` (C x C uint8 BGR) cut around the face (``margin`` x its ROI box), the pose in
canvas pixels (3x4, image frame: x right, y down), the 50 shape coefficients, the 68 target landmarks in canvas
pixels and metadata. Training crops are random similarities of the canvas; the pose label follows each crop
exactly (:func:`training.geometry.pose_to_crop`).

Entries come from the fitted real faces (and their mirror images) and from face profiling of the training
faces (large yaw, optionally a new expression through the model).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from drtn import crop
from drtn.morphable import MorphableModel
from drtn.params import pose_angles_degrees
from training.geometry import pose_to_image
from training.labels import LabelSet, read_image
from training.profiling import lift_similarity, profile_face, sample_target_yaw

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

    FIELDS = ("canvases", "pose_canvas", "shapes", "landmarks", "splits", "kinds", "yaw_degrees", "sources")

    def __post_init__(self) -> None:
        if self.sources is None:  # corpora written before sources existed
            self.sources = np.full(len(self.shapes), "unknown")

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
        """A corpus from per-entry lists keyed by :attr:`FIELDS` (what the builders collect)."""
        return Corpus(
            canvases=np.stack(rows["canvases"]).astype(np.uint8),
            pose_canvas=np.stack(rows["pose_canvas"]).astype(np.float32),
            shapes=np.stack(rows["shapes"]).astype(np.float32),
            landmarks=np.stack(rows["landmarks"]).astype(np.float32),
            splits=np.array(rows["splits"]),
            kinds=np.array(rows["kinds"]),
            yaw_degrees=np.array(rows["yaw_degrees"], dtype=np.float32),
            sources=np.array(rows["sources"]),
        )

    @staticmethod
    def concat(parts: list["Corpus"]) -> "Corpus":
        return Corpus(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in Corpus.FIELDS})

    def select(self, mask: np.ndarray) -> "Corpus":
        return Corpus(**{name: getattr(self, name)[mask] for name in self.FIELDS})

    def __len__(self) -> int:
        return len(self.shapes)

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
    lift = lift_similarity(affine)
    canvas = crop.crop_image(image, box, CANVAS)
    pose = np.concatenate([lift[:3, :3] @ pose_image[:, :3], (lift[:3, :3] @ pose_image[:, 3] + lift[:3, 3])[:, None]], 1)
    points = landmarks @ affine[:, :2].T + affine[:, 2]
    return canvas, pose, points


def build_corpus(
    labels: LabelSet,
    morphable: MorphableModel,
    profile_fraction: float = 0.5,
    seed: int = 0,
    max_fit_nme: float = 0.05,
) -> Corpus:
    """Canvases of all labelled faces, plus a profiled version of a ``profile_fraction`` share of the *training* faces.

    Faces whose fit residual exceeds ``max_fit_nme`` keep their real entry for validation but are not profiled.
    """
    rng = np.random.default_rng(seed)
    rows = {name: [] for name in Corpus.FIELDS}

    def add(canvas, pose, shape, landmarks, split, kind, yaw, source):
        for name, value in zip(Corpus.FIELDS, (canvas, pose, shape, landmarks, split, kind, yaw, source)):
            rows[name].append(value)

    expression_std = morphable.stats.std[52:]
    for i in tqdm(range(len(labels)), desc="corpus"):
        image = read_image(labels.image_paths[i], bool(labels.mirrored[i]))
        params = labels.params[i].astype(np.float64)
        box = labels.roi_boxes[i]
        pose_image = pose_to_image(params[:12].reshape(3, 4), box)
        yaw = float(pose_angles_degrees(params[None])[0, 0])
        canvas, pose, points = to_canvas(image, box, pose_image, labels.landmarks[i])
        source = str(labels.groups[i]).split("/", 1)[0]
        add(canvas, pose, params[12:], points, str(labels.splits[i]), "mirror" if labels.mirrored[i] else "real", yaw, source)
        if labels.splits[i] != "train" or labels.fit_nme[i] > max_fit_nme:
            continue
        if rng.random() < profile_fraction:
            # turn further the way the face already looks, to 35-85 degrees of yaw
            delta = sample_target_yaw(yaw, rng, 35, 85) - yaw
            new_expression = None
            if rng.random() < 0.3:  # expression change through the model
                new_expression = params[52:] + rng.normal(0, 1, 10) * expression_std * 0.7
            face = profile_face(image, box, params, delta, morphable, new_expression, canvas_size=224, canvas_margin=1.45)
            # the model landmarks are the targets of a generated face (as 300W-LP)
            pose_img = pose_to_image(face.params[:12].astype(np.float64).reshape(3, 4), face.roi_box)
            canvas, pose, points = to_canvas(face.image, face.roi_box, pose_img, face.landmarks)
            add(canvas, pose, face.params[12:], points, "train", "profile", face.yaw_degrees, source)
    corpus = Corpus.from_rows(rows)
    LOGGER.info("corpus: %s", corpus.summary())
    return corpus
