"""Pseudo-labelled video frames: the peer teacher's parameters on frames of face videos, as corpus entries.

The shared face videos have no landmark annotations. Their labels come from the product itself run with the
peer model: ``main.py video CLIP --backend teacher --no-smoothing --records CLIP.jsonl`` detects and tracks the
face with the inference crop policy (detector box, then the previous frame's landmarks) and writes the
teacher's raw 62 parameters and crop box of every frame. Here every ``every``-th frame is kept when the teacher
agrees with itself: it runs once more on the crop re-centred on its own landmarks (the crop a converged track
uses) and the frame is dropped if the two landmark sets differ by more than ``max_disagreement`` (NME) — a
cheap test that catches frames where the peer is lost. The second pass is the label (distillation target).

Commands: ``docs/training.md`` ("Video pseudo-labels").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from drtn import crop
from drtn.metrics import nme_2d
from drtn.morphable import MorphableModel
from drtn.params import pose_angles_degrees
from training.corpus import Corpus, to_canvas
from training.geometry import pose_to_image
from training.teacher import Predictor

LOGGER = logging.getLogger(__name__)


def read_records(path: str | Path) -> dict[int, dict]:
    """Frame index -> the first face record of that frame, from a ``main.py video --records`` JSONL file."""
    frames: dict[int, dict] = {}
    with open(path) as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                index = int(record["frame_index"])
                roi_box = np.asarray(record["roi_box"], dtype=np.float64)
                params = np.asarray(record["params"], dtype=np.float64)
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{line_number}: not a face record ({error})") from error
            if roi_box.shape != (4,) or params.shape != (62,):
                raise ValueError(
                    f"{path}:{line_number}: roi_box must have 4 values and params 62, got {roi_box.shape} and {params.shape}"
                )
            frames.setdefault(index, {"roi_box": roi_box, "params": params})
    return frames


def _landmarks_image(morphable: MorphableModel, params: np.ndarray, roi_box: np.ndarray) -> np.ndarray:
    """(68, 2) image pixels of the params' projected landmarks."""
    points = morphable.landmarks_model(params[None])[0]
    return crop.model_to_image(points, roi_box)[:2].T


def video_corpus(
    videos: list[tuple[Path, Path]],
    morphable: MorphableModel,
    teacher: Predictor,
    every: int = 3,
    max_disagreement: float = 0.03,
) -> Corpus:
    """Corpus entries (kind and source ``video``, split ``train``) from (video, records JSONL) pairs;
    ``teacher``: :func:`training.teacher.peer_predictor`."""
    rows = {name: [] for name in Corpus.FIELDS}
    kept = dropped = 0
    for video_path, records_path in videos:
        records = read_records(records_path)
        wanted = sorted(i for i in records if i % every == 0)
        capture = cv2.VideoCapture(str(video_path))
        if not capture.isOpened():
            raise FileNotFoundError(f"cannot open video {video_path}")
        index = 0
        targets = iter(wanted)
        target = next(targets, None)
        with tqdm(total=len(wanted), desc=Path(video_path).name, leave=False) as progress:
            while target is not None:
                ok, frame = capture.read()
                if not ok:
                    break
                if index == target:
                    record = records[index]
                    first = _landmarks_image(morphable, record["params"], record["roi_box"])
                    box = crop.roi_box_from_landmarks(first)
                    params = teacher(crop.crop_image(frame, box)[None])[0]
                    second = _landmarks_image(morphable, params, box)
                    disagreement = float(nme_2d(second.T[None], first.T[None])[0])
                    if disagreement <= max_disagreement:
                        pose_image = pose_to_image(params[:12].reshape(3, 4), box)
                        canvas, pose, points = to_canvas(frame, box, pose_image, second)
                        yaw = float(pose_angles_degrees(params[None])[0, 0])
                        for name, value in zip(
                            Corpus.FIELDS, (canvas, pose, params[12:], points, "train", "video", yaw, "video")
                        ):
                            rows[name].append(value)
                        kept += 1
                    else:
                        dropped += 1
                    progress.update(1)
                    target = next(targets, None)
                index += 1
        capture.release()
    LOGGER.info(
        "video pseudo-labels: %d frames kept, %d dropped (teacher disagreement > %.1f%%)", kept, dropped, 100 * max_disagreement
    )
    if not kept:
        raise ValueError("no video frame kept: check the records files and --video-every")
    return Corpus.from_rows(rows)


def pair_videos(records_dir: str | Path, video_dirs: list[str | Path]) -> list[tuple[Path, Path]]:
    """(video, records) pairs: every ``NAME.jsonl`` in ``records_dir`` with a ``NAME.mp4`` in one of ``video_dirs``."""
    records_dir = Path(records_dir)
    records = sorted(records_dir.glob("*.jsonl"))
    if not records:
        raise FileNotFoundError(f"no .jsonl records in {records_dir}")
    pairs = []
    for path in records:
        matches = [Path(d) / f"{path.stem}.mp4" for d in video_dirs if (Path(d) / f"{path.stem}.mp4").is_file()]
        if not matches:
            raise FileNotFoundError(f"records {path} have no video {path.stem}.mp4 in {', '.join(map(str, video_dirs))}")
        pairs.append((matches[0], path))
    return pairs
