"""Evaluation reports: Table I layout (NME2D per yaw bin, mean, std), NME3D, CED plots; the peer side by side.

Protocol (3DDFA's): each face is cropped from its ground-truth 68 landmarks with the inference crop policy
(:func:`drtn.crop.roi_box_from_landmarks`), every method sees the very same 120x120 crops, NME2D is normalised by
``sqrt(w * h)`` of the ground-truth landmark box. Yaw (and pitch) bins use the ground-truth pose: AFLW2000-3D's
Pose_Para, or for landmark-only data the pose of a 3DMM fit to the annotation (:mod:`training.labels`).

Sets: the held-out splits of the landmark corpus (HELEN test, AFW, InfAnFace test) and ``val_pose``, the real
large-pose set (faces beyond 30 degrees of yaw or 25 of pitch, held out by photo / identity:
:mod:`training.heldout`). The robustness table runs every method on held-out faces under the changes of
:mod:`training.corruptions` (grayscale, half resolution, JPEG, motion blur, occluders, new background, cut forehead).
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
from training.corruptions import ROBUSTNESS_CONDITIONS, corrupt_crops
from training.datasets import find_mat_samples, large_pose_faces, load_corpus, read_mat_sample
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
    pitch_degrees: np.ndarray | None = None  # (N,) |pitch| when known
    tags: np.ndarray | None = None  # (N,) str subset of each face (val_pose: its origin), for a per-subset table
    paths: np.ndarray | None = None  # (N,) str image file of each face (robustness pools faces of several sets)


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


def _held_out_faces(data_root, split: str, morphable: MorphableModel, teacher: Predictor, limit: int, samples=None):
    """Images, inference-policy ROI boxes, crops, annotated landmarks and a 3DMM fit to them, for one split."""
    if samples is None:
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


VAL_POSE = "val_pose"
ORIGIN_NAMES = {
    "train": "bundled stage 2 trained on these",
    "val_helen": "HELEN test",
    "val_afw": "AFW",
    "val_infant": "InfAnFace test",
}


def landmark_eval_set(
    data_root: str | Path, split: str, morphable: MorphableModel, teacher: Predictor, limit: int = 0
) -> EvalSet:
    """A held-out split of the landmark corpus (``val_helen``, ``val_afw``, ``val_infant``) or ``val_pose``, the
    real large-pose set (tagged by origin: which faces the first bundled model trained on)."""
    samples, tags = None, None
    if split == VAL_POSE:
        samples, entries = large_pose_faces(data_root)
        tags = np.array([ORIGIN_NAMES.get(e["origin"], e["origin"]) for e in entries])
        if limit:
            tags = tags[:limit]
    _, boxes, crops, landmarks, fitted = _held_out_faces(data_root, split, morphable, teacher, limit, samples)
    if samples is None:
        samples = [s for s in load_corpus(data_root) if s.split == split]
    paths = np.array([str(Path(s.image_path).resolve()) for s in samples][: len(crops)])
    angles = np.abs(pose_angles_degrees(fitted))
    return EvalSet(split, crops, boxes, landmarks, None, angles[:, 0], angles[:, 1], tags, paths)


def cached_eval_set(folder: str | Path | None, key: str, make) -> EvalSet:
    """``make()``'s set, stored as ``folder/key.npz`` the first time and read back after (the ground-truth pose
    fits take minutes on a busy CPU); ``folder`` '' or None: no cache. Delete the folder when the data changes."""
    if not folder:
        return make()
    path = Path(folder) / f"{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            values = {
                name: (data[name] if name in data.files else None) for name in EvalSet.__dataclass_fields__ if name != "name"
            }
            return EvalSet(name=str(data["set_name"]), **values)
    eval_set = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        name: getattr(eval_set, name)
        for name in EvalSet.__dataclass_fields__
        if name != "name" and getattr(eval_set, name) is not None
    }
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, set_name=np.array(eval_set.name), **arrays)
    tmp.replace(path)
    return eval_set


def profiled_eval_set(
    data_root: str | Path, split: str, morphable: MorphableModel, teacher: Predictor, limit: int = 0, seed: int = 0
) -> EvalSet:
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
        face = profile_face(
            image, box, params, sample_target_yaw(yaw0, rng, 30, 85) - yaw0, morphable, canvas_size=320, canvas_margin=1.6
        )
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
PITCH_BINS_DEGREES = ((0.0, 15.0), (15.0, 25.0), (25.0, 40.0), (40.0, 180.0))


def format_pitch_table(eval_set: EvalSet, results: list[MethodResult]) -> str:
    """NME2D % per |pitch| bin (looking up / down; pitch of the ground-truth pose)."""
    if eval_set.pitch_degrees is None:
        return ""
    return _binned_table("pitch", np.abs(eval_set.pitch_degrees), PITCH_BINS_DEGREES, results)


def format_subset_table(eval_set: EvalSet, results: list[MethodResult]) -> str:
    """NME2D % per subset tag (val_pose: where its faces come from)."""
    if eval_set.tags is None:
        return ""
    names = sorted(set(eval_set.tags.tolist()))
    masks = [eval_set.tags == n for n in names]
    header = "| method (by subset) | " + " | ".join(f"{n} ({int(m.sum())})" for n, m in zip(names, masks)) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for result in results:
        lines.append(f"| {result.method} | " + " | ".join(_pct(result.nme2d[m].mean()) for m in masks) + " |")
    return "\n".join(lines)


def _binned_table(what: str, values: np.ndarray, bins, results: list[MethodResult]) -> str:
    masks = [(values >= low) & (values < high) for low, high in bins]
    names = [f"[{low:g},{high:g}]" if high < 180 else f">{low:g}" for low, high in bins]
    header = f"| method (by \\|{what}\\|) | " + " | ".join(f"{n} ({int(m.sum())})" for n, m in zip(names, masks)) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for result in results:
        cells = [_pct(result.nme2d[m].mean()) if m.any() else "-" for m in masks]
        lines.append(f"| {result.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def robustness_set(eval_sets: list[EvalSet], name: str = "robustness") -> EvalSet:
    """The faces of several held-out sets, each once (by image file), for the robustness table."""
    seen, rows = set(), []
    for eval_set in eval_sets:
        if eval_set.paths is None:
            raise ValueError(f"set {eval_set.name} has no image paths: robustness needs landmark-corpus sets")
        for i, path in enumerate(eval_set.paths):
            if path not in seen:
                seen.add(path)
                rows.append((eval_set, i))
    take = lambda field: np.stack([getattr(s, field)[i] for s, i in rows])  # noqa: E731
    return EvalSet(
        name,
        take("crops"),
        take("roi_boxes"),
        take("landmarks"),
        None,
        take("yaw_degrees"),
        take("pitch_degrees") if all(s.pitch_degrees is not None for s, _ in rows) else None,
        None,
        take("paths"),
    )


def robustness_results(
    eval_set: EvalSet,
    methods: list[tuple[str, Predictor]],
    morphable: MorphableModel,
    conditions: list[str] | None = None,
    seed: int = 0,
) -> dict[str, list[MethodResult]]:
    """Every method on the same crops under each condition of :data:`training.corruptions.ROBUSTNESS_CONDITIONS`."""
    landmarks_crop = np.stack([crop.image_to_crop(lm.T, box).T for lm, box in zip(eval_set.landmarks, eval_set.roi_boxes)])
    out = {}
    for condition in conditions or list(ROBUSTNESS_CONDITIONS):
        crops = corrupt_crops(eval_set.crops, landmarks_crop, condition, seed)
        changed = EvalSet(eval_set.name, crops, eval_set.roi_boxes, eval_set.landmarks, None, eval_set.yaw_degrees)
        out[condition] = [evaluate(changed, predict, morphable, name) for name, predict in methods]
    return out


def format_robustness_table(eval_set: EvalSet, results: dict[str, list[MethodResult]]) -> str:
    """Rows: conditions; columns: methods (mean NME2D %); the last column is our change from the clean crops."""
    methods = [r.method for r in next(iter(results.values()))]
    header = "| condition | " + " | ".join(methods) + " | ours vs clean |"
    lines = [
        f"**Robustness** ({len(eval_set.crops)} held-out faces: {eval_set.name}; NME2D %, same crops for every method)",
        "",
        header,
        "|" + "---|" * (len(methods) + 2),
    ]
    clean = results.get("clean", [None])[0]
    for condition, row in results.items():
        delta = f"{100 * (row[0].nme2d.mean() - clean.nme2d.mean()):+.2f}" if clean is not None else "-"
        lines.append(f"| {condition} | " + " | ".join(_pct(r.nme2d.mean()) for r in row) + f" | {delta} |")
    return "\n".join(lines)


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
    lines = [
        f"**{eval_set.name}** ({len(eval_set.crops)} faces; |yaw| bins: {counts[0]} / {counts[1]} / {counts[2]})",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for result in results:
        row = yaw_bin_table(result.nme2d, eval_set.yaw_degrees)
        cells = [_pct(v) for v in row.as_tuple()] + [_pct(result.nme2d.mean()), f"{ced_auc(result.nme2d):.3f}"]
        if has3d:
            cells.append(_pct(result.nme3d.mean()) if result.nme3d is not None else "-")
        lines.append(f"| {result.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"


def write_report(
    eval_sets_results: list[tuple[EvalSet, list[MethodResult]]], out_dir: str | Path, extra: list[str] = ()
) -> Path:
    """Markdown tables (yaw, pitch, roll, subsets) + one CED PNG per set into ``out_dir``, then ``extra``
    markdown parts (the robustness table); returns the markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for eval_set, results in eval_sets_results:
        parts.append(format_table(eval_set, results))
        parts += [t for t in (format_pitch_table(eval_set, results), format_subset_table(eval_set, results)) if t]
        parts.append(format_roll_table(eval_set, results))
        png = out_dir / f"ced_{eval_set.name}.png"
        plot_ced({r.method: r.nme2d for r in results}, png, title=f"CED, NME2D, {eval_set.name}")
        parts.append(f"\n![CED {eval_set.name}]({png.name})\n")
    parts += list(extra)
    report = out_dir / "report.md"
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text("\n\n".join(parts) + "\n")
    tmp.replace(report)
    return report
