"""Readers for the landmark and 3DMM dataset formats, and our training corpus.

Formats:
- 300W ``.pts`` (68 points, 1-based pixel convention kept as given: we treat values as pixel coordinates),
- CSV landmark files (``image, [partition, flags...,] x0, y0, ..., x67, y67``),
- 300W-LP ``.mat`` (Pose_Para, Shape_Para, Exp_Para, pt2d),
- AFLW2000-3D ``.mat`` (pt3d_68 (3, 68), Pose_Para).

The corpus (``../shared/data``): 300W AFW + HELEN train/test, YouTube Faces frames, InfAnFace. Splits are by
photo/identity: HELEN test, AFW and InfAnFace test are held out; the photos / YouTube Faces identities listed in
``training/splits/large_pose.json`` (the real large-pose validation set, :func:`large_pose_faces`) are held out
too (split ``heldout_pose``); everything else trains.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drtn.params import euler_to_rotation

LOGGER = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# The real large-pose validation set: which faces, and which training photos / identities it took out of training.
LARGE_POSE_FILE = Path(__file__).resolve().parent / "splits" / "large_pose.json"
HELDOUT_POSE_SPLIT = "heldout_pose"  # training-source faces whose photo / identity is in the large-pose set

# Mirror permutation of the iBUG 68-point scheme (point k of a flipped face is point FLIP_68[k] of the original).
FLIP_68 = np.array(
    [
        16,
        15,
        14,
        13,
        12,
        11,
        10,
        9,
        8,
        7,
        6,
        5,
        4,
        3,
        2,
        1,
        0,  # jaw
        26,
        25,
        24,
        23,
        22,
        21,
        20,
        19,
        18,
        17,  # brows
        27,
        28,
        29,
        30,  # nose bridge
        35,
        34,
        33,
        32,
        31,  # nostrils
        45,
        44,
        43,
        42,
        47,
        46,  # right eye <- left eye
        39,
        38,
        37,
        36,
        41,
        40,
        54,
        53,
        52,
        51,
        50,
        49,
        48,  # outer lips
        59,
        58,
        57,
        56,
        55,
        64,
        63,
        62,
        61,
        60,  # inner lips
        67,
        66,
        65,
    ]
)


@dataclass(frozen=True)
class LandmarkSample:
    """One annotated face: image file, 68 landmarks (x, y) in image pixels, its split and group."""

    image_path: Path
    landmarks: np.ndarray  # (68, 2) float64
    source: str  # e.g. '300w/helen_testset'
    split: str  # 'train' | 'val_helen' | 'val_afw' | 'val_infant'
    group: str  # photo / identity key (faces of one photo share it)


def read_pts(path: str | Path) -> np.ndarray:
    """Read a 300W ``.pts`` file -> (68, 2) float64."""
    text = Path(path).read_text()
    try:
        body = text.split("{", 1)[1].split("}", 1)[0]
        points = np.array(body.split(), dtype=np.float64).reshape(-1, 2)
    except (IndexError, ValueError) as error:
        raise ValueError(f"{path}: not a valid .pts file ({error})") from error
    if points.shape != (68, 2):
        raise ValueError(f"{path}: expected 68 points, got {points.shape[0]}")
    return points


def _image_for(stem_path: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = stem_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no image next to {stem_path}.pts (tried {', '.join(IMAGE_SUFFIXES)})")


def load_pts_folder(folder: str | Path, source: str, split: str) -> list[LandmarkSample]:
    """All ``.pts`` + image pairs of a 300W folder; the group is the photo id (name before ``_k``)."""
    folder = Path(folder)
    samples = []
    for pts in sorted(folder.glob("*.pts")):
        photo = pts.stem.rsplit("_", 1)[0]
        samples.append(LandmarkSample(_image_for(pts), read_pts(pts), source, split, f"{source}/{photo}"))
    if not samples:
        raise FileNotFoundError(f"no .pts files in {folder}")
    return samples


def load_landmark_csv(csv_path: str | Path, image_root: str | Path, source: str, split_of=None) -> list[LandmarkSample]:
    """Read a CSV with columns ``image, ..., x0, y0, ..., x67, y67``.

    Args:
        split_of: callable(row dict) -> split name; default 'train'.
    """
    csv_path, image_root = Path(csv_path), Path(image_root)
    samples = []
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [f"{axis}{k}" for k in range(68) for axis in "xy"]
        missing = [c for c in ("image", "x0", "y67") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path}: missing columns {missing}")
        for row in reader:
            landmarks = np.array([float(row[c]) for c in columns]).reshape(68, 2)
            image = image_root / row["image"]
            name = Path(row["image"]).stem
            group = f"{source}/{name.rsplit('_', 1)[0]}"  # YouTube Faces: person_NN -> person
            split = split_of(row) if split_of else "train"
            samples.append(LandmarkSample(image, landmarks, source, split, group))
    return samples


def read_large_pose_file(path: str | Path = LARGE_POSE_FILE) -> dict:
    """The large-pose set definition: ``{"criterion", "groups", "faces": [{"image", "group", "origin", "yaw", "pitch"}]}``.

    ``groups`` are the photo / identity keys taken out of training; ``faces`` the set's faces (image paths
    relative to the data folder, |yaw| / |pitch| in degrees of the 3DMM fit to the annotation, ``origin`` the split
    the face had before the set existed: ``train`` (the bundled model trained on it) or a ``val_*`` split).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"large-pose set definition not found: {path} (make it with `python -m training.heldout`)")
    data = json.loads(path.read_text())
    for key in ("groups", "faces"):
        if key not in data:
            raise ValueError(f"{path}: missing key {key!r}")
    return data


def load_corpus(data_root: str | Path, large_pose_file: str | Path | None = LARGE_POSE_FILE) -> list[LandmarkSample]:
    """The shared real-face corpus with its splits (HELEN test, AFW, InfAnFace test held out; the photos /
    identities of the large-pose set held out as ``heldout_pose`` when ``large_pose_file`` exists)."""
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root} (pass --data, e.g. ../shared/data)")
    samples = []
    samples += load_pts_folder(root / "300w/helen_trainset", "300w/helen_trainset", "train")
    samples += load_pts_folder(root / "300w/helen_testset", "300w/helen_testset", "val_helen")
    samples += load_pts_folder(root / "300w/afw", "300w/afw", "val_afw")
    ytf = root / "youtube_faces_68"
    samples += load_landmark_csv(ytf / "training.csv", ytf, "youtube_faces_68")
    samples += load_landmark_csv(ytf / "test.csv", ytf, "youtube_faces_68")  # same people: training data
    infant = root / "infanface"
    samples += load_landmark_csv(
        infant / "labels.csv",
        infant,
        "infanface",
        split_of=lambda row: "val_infant" if row["partition"].endswith("test") else "train",
    )
    if large_pose_file is not None and Path(large_pose_file).is_file():
        held = set(read_large_pose_file(large_pose_file)["groups"])
        samples = [
            LandmarkSample(s.image_path, s.landmarks, s.source, HELDOUT_POSE_SPLIT, s.group)
            if s.split == "train" and s.group in held
            else s
            for s in samples
        ]
    LOGGER.info(
        "corpus: %d faces (%s)",
        len(samples),
        ", ".join(f"{s}={sum(x.split == s for x in samples)}" for s in sorted({x.split for x in samples})),
    )
    return samples


def apply_large_pose_holdout(
    splits: np.ndarray, groups: np.ndarray, large_pose_file: str | Path = LARGE_POSE_FILE
) -> np.ndarray:
    """(N,) splits with every ``train`` row whose group is in the large-pose set's held-out groups turned into
    ``heldout_pose`` (for label files and corpora cached before the set existed). Rows without a group ('')
    keep their split."""
    splits = np.asarray(splits).astype(object)
    if not Path(large_pose_file).is_file():
        return splits.astype(str)
    held = set(read_large_pose_file(large_pose_file)["groups"])
    moved = (splits == "train") & np.isin(np.asarray(groups, dtype=str), list(held))
    splits[moved] = HELDOUT_POSE_SPLIT
    return splits.astype(str)


def large_pose_faces(
    data_root: str | Path, large_pose_file: str | Path = LARGE_POSE_FILE
) -> tuple[list[LandmarkSample], list[dict]]:
    """The faces of the real large-pose validation set (``val_pose``) and their entries in the set file."""
    root = Path(data_root)
    entries = read_large_pose_file(large_pose_file)["faces"]
    by_path = {s.image_path.resolve().relative_to(root.resolve()).as_posix(): s for s in load_corpus(root, large_pose_file)}
    missing = [e["image"] for e in entries if e["image"] not in by_path]
    if missing:
        raise FileNotFoundError(f"{large_pose_file}: {len(missing)} faces not in {root} (first: {missing[0]})")
    return [by_path[e["image"]] for e in entries], entries


# ---------------------------------------------------------------------------------------------- .mat formats
@dataclass(frozen=True)
class MatSample:
    """A 300W-LP / AFLW2000-3D sample: image, 2D (68, 2) landmarks, optional 3D (68, 3), image-frame pose."""

    image_path: Path
    landmarks: np.ndarray
    landmarks_3d: np.ndarray | None
    pose_para: np.ndarray  # (7,) pitch, yaw, roll (rad), tx, ty, tz, scale
    shape_para: np.ndarray | None  # (199,)
    exp_para: np.ndarray | None  # (29,)

    @property
    def yaw_degrees(self) -> float:
        return float(np.degrees(self.pose_para[1]))


def read_mat_sample(mat_path: str | Path) -> MatSample:
    """Read a 300W-LP or AFLW2000-3D ``.mat`` with its image beside it."""
    from scipy.io import loadmat

    mat_path = Path(mat_path)
    try:
        data = loadmat(str(mat_path))
    except Exception as error:  # scipy raises several types for corrupt files
        raise ValueError(f"{mat_path}: cannot read .mat ({error})") from error
    if "Pose_Para" not in data:
        raise ValueError(f"{mat_path}: no Pose_Para (not a 300W-LP / AFLW2000-3D file)")
    landmarks_3d = None
    if "pt3d_68" in data:
        landmarks_3d = np.asarray(data["pt3d_68"], dtype=np.float64)[:3].T
        landmarks = landmarks_3d[:, :2].copy()
    elif "pt2d" in data:
        landmarks = np.asarray(data["pt2d"], dtype=np.float64).T
    else:
        raise ValueError(f"{mat_path}: neither pt2d nor pt3d_68")
    return MatSample(
        image_path=_image_for(mat_path.with_suffix("")),
        landmarks=landmarks,
        landmarks_3d=landmarks_3d,
        pose_para=np.asarray(data["Pose_Para"], dtype=np.float64).reshape(-1)[:7],
        shape_para=np.asarray(data["Shape_Para"], dtype=np.float64).reshape(-1) if "Shape_Para" in data else None,
        exp_para=np.asarray(data["Exp_Para"], dtype=np.float64).reshape(-1) if "Exp_Para" in data else None,
    )


def mat_image_frame_pose(sample: MatSample, image_height: int) -> tuple[np.ndarray, np.ndarray]:
    """300W-LP parameters as an image-frame pose and 50 shape coefficients.

    Returns:
        pose_image (3, 4): maps model vertices to image pixels (x right, y down, z towards the viewer),
        shape (50,): the first 40 identity and 10 expression coefficients (the 3DDFA truncation).
    """
    if sample.shape_para is None or sample.exp_para is None:
        raise ValueError(f"{sample.image_path}: no Shape_Para / Exp_Para (AFLW2000-3D style file?)")
    pitch, yaw, roll, tx, ty, tz, scale = sample.pose_para
    rotation = euler_to_rotation(pitch, yaw, roll)[0]
    pose = np.concatenate([scale * rotation, [[tx], [ty], [tz]]], axis=1)
    flip = np.diag([1.0, -1.0, 1.0])  # y up (model frame of the .mat) -> y down (image)
    pose_image = flip @ pose
    pose_image[1, 3] += image_height
    return pose_image, np.concatenate([sample.shape_para[:40], sample.exp_para[:10]])


def find_mat_samples(folder: str | Path) -> list[Path]:
    """All ``.mat`` files of an AFLW2000-3D / 300W-LP style folder (recursive)."""
    files = sorted(Path(folder).rglob("*.mat"))
    if not files:
        raise FileNotFoundError(f"no .mat files under {folder}")
    return files
