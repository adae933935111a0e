"""Evaluation reports: Table I layout (NME2D per yaw bin, mean, std), NME3D, CED plots; the peer side by side.

Protocol (3DDFA's): each face is cropped from its ground-truth 68 landmarks with the inference crop policy
(:func:`drtn.crop.roi_box_from_landmarks`), every method sees the very same 120x120 crops, NME2D is normalised by
``sqrt(w * h)`` of the ground-truth landmark box. Yaw bins use the ground-truth yaw: AFLW2000-3D's Pose_Para, or
for landmark-only data the yaw of a 3DMM fit to the annotation (:mod:`training.labels`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from drtn import crop
from drtn.metrics import ced_auc, nme_2d, nme_3d, plot_ced, yaw_bin_table
from drtn.morphable import MorphableModel
from drtn.params import pose_angles_degrees
from training.datasets import find_mat_samples, load_corpus, read_mat_sample
from training.labels import fit_params, read_image
from training.teacher import Predictor

LOGGER = logging.getLogger(__name__)



@dataclass(frozen=True)
class EvalSet:
    name: str
    crops: np.ndarray  # (N, 120, 120, 3) uint8
    roi_boxes: np.ndarray  # (N, 4)
    landmarks: np.ndarray  # (N, 68, 2) ground truth, image pixels
    landmarks_3d: np.ndarray | None  # (N, 68, 3) ground truth when known
    yaw_degrees: np.ndarray  # (N,)


@dataclass(frozen=True)
class MethodResult:
    method: str
    nme2d: np.ndarray  # (N,)
    nme3d: np.ndarray | None


def torch_predictor(model: torch.nn.Module, morphable: MorphableModel, batch_size: int = 64) -> Predictor:
    stats = morphable.stats
    model = model.eval()

    @torch.no_grad()
    def predict(crops: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(crops), batch_size):
            x = crop.normalize_crops(crops[start : start + batch_size])
            out.append(stats.denormalize(model(torch.from_numpy(x)).numpy()))
        return np.concatenate(out)

    return predict


def mean_face_predictor(morphable: MorphableModel) -> Predictor:
    """The trivial baseline: mean parameters for every crop (mean pose, mean shape)."""
    return lambda crops: np.repeat(morphable.stats.mean[None].astype(np.float64), len(crops), axis=0)


def _held_out_faces(data_root, split: str, morphable: MorphableModel, teacher: Predictor, limit: int):
    """Images, inference-policy ROI boxes, crops, annotated landmarks and a 3DMM fit to them, for one split."""
    samples = [s for s in load_corpus(data_root) if s.split == split]
    if not samples:
        raise ValueError(f"no faces in split {split!r} of {data_root}")
    if limit:
        samples = samples[:limit]
    images = [read_image(s.image_path) for s in samples]
    boxes = np.stack([crop.roi_box_from_landmarks(s.landmarks) for s in samples])
    crops = np.stack([crop.crop_image(image, box) for image, box in zip(images, boxes)])
    landmarks = np.stack([s.landmarks for s in samples])
    init = teacher(crops)
    landmarks_model = np.stack([crop.image_to_model(lm.T, box).T for lm, box in zip(landmarks, boxes)])
    fitted = fit_params(morphable, landmarks_model, init)
    return images, boxes, crops, landmarks, fitted


def landmark_eval_set(data_root: str | Path, split: str, morphable: MorphableModel, teacher: Predictor, limit: int = 0) -> EvalSet:
    """A held-out split of the landmark corpus (e.g. ``val_helen``, ``val_afw``, ``val_infant``)."""
    _, boxes, crops, landmarks, fitted = _held_out_faces(data_root, split, morphable, teacher, limit)
    yaw = np.abs(pose_angles_degrees(fitted)[:, 0])
    return EvalSet(split, crops, boxes, landmarks, None, yaw)


def profiled_eval_set(data_root: str | Path, split: str, morphable: MorphableModel, teacher: Predictor, limit: int = 0, seed: int = 0) -> EvalSet:
    """Large-pose check: held-out faces turned to 30-85 degrees of yaw by face profiling (as 300W-LP / AFLW2000-3D).

    Each face of ``split`` is fitted to its annotation, turned the way it already looks and re-rendered
    (:func:`training.profiling.profile_face`); the ground truth is the 3DMM's own 68 landmarks (2D and 3D) of the
    turned face, which no method has seen. Synthetic, so it complements, not replaces, AFLW2000-3D.
    """
    from training.profiling import profile_face, sample_target_yaw

    images, boxes, _, _, fitted = _held_out_faces(data_root, split, morphable, teacher, limit)
    rng = np.random.default_rng(seed)
    out_crops, out_boxes, lm2d, lm3d, yaw = [], [], [], [], []
    for image, box, params in tqdm(list(zip(images, boxes, fitted)), desc=f"profiling {split}"):
        yaw0 = pose_angles_degrees(params[None])[0, 0]
        face = profile_face(image, box, params, sample_target_yaw(yaw0, rng, 30, 85) - yaw0, morphable, canvas_size=320, canvas_margin=1.6)
        points = crop.model_to_image(morphable.landmarks_model(face.params[None].astype(np.float64))[0], face.roi_box).T
        out_crops.append(crop.crop_image(face.image, face.roi_box))
        out_boxes.append(face.roi_box)
        lm2d.append(points[:, :2])
        lm3d.append(points)
        yaw.append(abs(face.yaw_degrees))
    return EvalSet(f"{split}_profiled", np.stack(out_crops), np.stack(out_boxes), np.stack(lm2d), np.stack(lm3d), np.array(yaw))


def aflw2000_eval_set(folder: str | Path, limit: int = 0) -> EvalSet:
    """An AFLW2000-3D-format folder (image + .mat with pt3d_68 and Pose_Para)."""
    files = find_mat_samples(folder)
    if limit:
        files = files[:limit]
    crops, boxes, lm2d, lm3d, yaw = [], [], [], [], []
    for path in tqdm(files, desc="AFLW2000-3D"):
        sample = read_mat_sample(path)
        if sample.landmarks_3d is None:
            raise ValueError(f"{path}: no pt3d_68 (not an AFLW2000-3D file)")
        box = crop.roi_box_from_landmarks(sample.landmarks)
        crops.append(crop.crop_image(read_image(sample.image_path), box))
        boxes.append(box)
        lm2d.append(sample.landmarks)
        lm3d.append(sample.landmarks_3d)
        yaw.append(abs(sample.yaw_degrees))
    return EvalSet(Path(folder).name, np.stack(crops), np.stack(boxes), np.stack(lm2d), np.stack(lm3d), np.array(yaw))


def evaluate(eval_set: EvalSet, predictor: Predictor, morphable: MorphableModel, method: str) -> MethodResult:
    params = predictor(eval_set.crops)
    points_model = morphable.landmarks_model(params)
    points_image = np.stack([crop.model_to_image(p, box) for p, box in zip(points_model, eval_set.roi_boxes)])  # (N, 3, 68)
    nme2 = nme_2d(points_image[:, :2], eval_set.landmarks.transpose(0, 2, 1))
    nme3 = None
    if eval_set.landmarks_3d is not None:
        nme3 = nme_3d(points_image, eval_set.landmarks_3d.transpose(0, 2, 1))
    return MethodResult(method, nme2, nme3)


ROLL_BINS_DEGREES = ((0.0, 30.0), (30.0, 60.0), (60.0, 180.0))


def eye_line_roll_degrees(landmarks: np.ndarray) -> np.ndarray:
    """(N, 68, 2) image landmarks -> (N,) in-plane angle of the line from the right to the left eye centre
    (0 = upright, +-180 = upside down); model-free, so one definition for every data set."""
    eyes = landmarks[:, 42:48].mean(1) - landmarks[:, 36:42].mean(1)
    return np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))


def format_roll_table(eval_set: EvalSet, results: list[MethodResult]) -> str:
    """NME2D % per |in-plane rotation| bin (eye line of the ground truth): tilted heads, faces lying down."""
    roll = np.abs(eye_line_roll_degrees(eval_set.landmarks))
    masks = [(roll >= low) & (roll < high) if high < 180 else roll >= low for low, high in ROLL_BINS_DEGREES]
    names = [f"[{low:g},{high:g}]" for low, high in ROLL_BINS_DEGREES]
    header = "| method (by \\|roll\\|) | " + " | ".join(f"{n} ({int(m.sum())})" for n, m in zip(names, masks)) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for result in results:
        cells = [_pct(result.nme2d[m].mean()) if m.any() else "-" for m in masks]
        lines.append(f"| {result.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(eval_set: EvalSet, results: list[MethodResult]) -> str:
    """Markdown table in the layout of the paper's Table I (NME2D %, per |yaw| bin)."""
    has3d = any(r.nme3d is not None for r in results)
    header = "| method | [0,30] | [30,60] | [60,90] | mean | std | all faces | AUC@7% |" + (" NME3D |" if has3d else "")
    counts = yaw_bin_table(np.zeros(len(eval_set.yaw_degrees)), eval_set.yaw_degrees).counts
    lines = [f"**{eval_set.name}** ({len(eval_set.crops)} faces; |yaw| bins: {counts[0]} / {counts[1]} / {counts[2]})", "", header, "|" + "---|" * (header.count("|") - 1)]
    for result in results:
        row = yaw_bin_table(result.nme2d, eval_set.yaw_degrees)
        cells = [_pct(v) for v in row.as_tuple()] + [ _pct(result.nme2d.mean()), f"{ced_auc(result.nme2d):.3f}"]
        if has3d:
            cells.append(_pct(result.nme3d.mean()) if result.nme3d is not None else "-")
        lines.append(f"| {result.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"


def write_report(eval_sets_results: list[tuple[EvalSet, list[MethodResult]]], out_dir: str | Path) -> Path:
    """Markdown tables + one CED PNG per set into ``out_dir``; returns the markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for eval_set, results in eval_sets_results:
        parts.append(format_table(eval_set, results))
        parts.append(format_roll_table(eval_set, results))
        png = out_dir / f"ced_{eval_set.name}.png"
        plot_ced({r.method: r.nme2d for r in results}, png, title=f"CED, NME2D, {eval_set.name}")
        parts.append(f"\n![CED {eval_set.name}]({png.name})\n")
    report = out_dir / "report.md"
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text("\n\n".join(parts) + "\n")
    tmp.replace(report)
    return report
