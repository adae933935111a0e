"""The real large-pose validation set (``val_pose``): which faces, and which photos / identities leave training.

A face belongs to the set when the 3DMM fit to its 68 annotated landmarks (:mod:`training.labels`, the label
file of the whole corpus) is turned beyond ``yaw_limit`` degrees of |yaw| or ``pitch_limit`` degrees of |pitch|.
The set is held out by photo / identity:

- faces of the splits that were always held out (HELEN test, AFW, InfAnFace test): every large-pose face joins
  (origin ``val_*``: no model of ours has trained on them);
- training sources (HELEN train photos, InfAnFace train images, YouTube Faces *people*): a share of the groups
  with a large-pose face leaves training for good (origin ``train``: the first bundled model trained on them, so
  its numbers on that part are optimistic; models trained after the set existed never see them).

The result is committed as ``training/splits/large_pose.json`` so the set does not move when labels are
re-fitted. Re-make it with ``python -m training.heldout --labels runs/labels/corpus.npz``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from drtn.params import pose_angles_degrees
from training.datasets import LARGE_POSE_FILE, load_corpus
from training.labels import LabelSet

LOGGER = logging.getLogger(__name__)


def _stable_fraction(key: str) -> float:
    """A reproducible number in [0, 1) from a string (no process-salted hash)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32


def select_large_pose(
    labels: LabelSet,
    data_root: str | Path,
    yaw_limit: float = 30.0,
    pitch_limit: float = 25.0,
    train_group_share: float = 0.5,
) -> dict:
    """The set definition (see the module docstring) from a label file of the corpus.

    Args:
        labels: fitted labels of the corpus (mirrored rows are ignored; the original faces define the set).
        train_group_share: share of the training-source groups with a large-pose face that leave training
            (picked by a hash of the group key, so the choice is stable).
    Returns:
        ``{"criterion", "groups", "faces"}`` as :func:`training.datasets.read_large_pose_file` reads it.
    """
    root = Path(data_root).resolve()
    original = {s.image_path.resolve(): s for s in load_corpus(root, large_pose_file=None)}
    keep = ~labels.mirrored
    angles = np.abs(pose_angles_degrees(labels.params[keep].astype(np.float64)))  # (N, 3) |yaw|, |pitch|, |roll|
    rows = []
    for path, (yaw, pitch, _) in zip(labels.image_paths[keep], angles):
        sample = original.get(Path(path).resolve())
        if sample is None:
            raise ValueError(f"label row {path} is not a face of {root}: labels from another data folder?")
        rows.append((sample, float(yaw), float(pitch)))
    large = [(s, y, p) for s, y, p in rows if y > yaw_limit or p > pitch_limit]
    train_groups = sorted({s.group for s, _, _ in large if s.split == "train"})
    held_groups = {g for g in train_groups if _stable_fraction(g) < train_group_share}
    faces = [
        {
            "image": s.image_path.resolve().relative_to(root).as_posix(),
            "group": s.group,
            "source": s.source,
            "origin": s.split,
            "yaw": round(y, 2),
            "pitch": round(p, 2),
        }
        for s, y, p in large
        if s.split != "train" or s.group in held_groups
    ]
    faces.sort(key=lambda f: f["image"])
    LOGGER.info(
        "large-pose set: %d faces (%d from held-out splits, %d from %d training groups now held out)",
        len(faces),
        sum(f["origin"] != "train" for f in faces),
        sum(f["origin"] == "train" for f in faces),
        len(held_groups),
    )
    return {
        "criterion": f"|yaw| > {yaw_limit:g} or |pitch| > {pitch_limit:g} degrees (3DMM fit to the 68 annotated landmarks)",
        "train_group_share": train_group_share,
        "groups": sorted(held_groups),
        "faces": faces,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--labels", default="runs/labels/corpus.npz", help="label file of the whole corpus (main.py train makes it)"
    )
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default=str(LARGE_POSE_FILE))
    parser.add_argument("--share", type=float, default=0.5, help="share of large-pose training groups held out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    definition = select_large_pose(LabelSet.load(args.labels), args.data, train_group_share=args.share)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(definition, indent=0) + "\n")
    LOGGER.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
