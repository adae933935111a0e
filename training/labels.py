"""62-parameter labels for landmark-annotated faces, made the way 300W-LP made them.

For each face (and its mirror image): crop it with the inference crop policy (square box from its 68 landmarks),
start from the peer teacher's prediction on that crop, then fit pose, identity and expression to the 68
landmarks with a shape prior and a pull towards the teacher's shape (which settles what the landmarks leave
ambiguous). All faces are fitted together as one batched torch problem.

The result is a ``.npz`` label file: image path, mirrored flag, ROI box, params (N, 62) in that box's model
frame, the (possibly mirrored) 68 annotated landmarks, split and group, and the fit residual.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from drtn import crop
from drtn.morphable import MorphableModel
from drtn.morphable_torch import TorchMorphable
from drtn.params import compose_pose, decompose_pose
from training.datasets import FLIP_68, LandmarkSample
from training.teacher import Predictor

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """Weights of the landmark fit (model-frame pixels of the 120 crop)."""

    # Measured on 120 HELEN-test faces: no prior fits to 1.25% NME but with implausible shapes (mean |coef|
    # 3 std); these weights give ~1.5% with mean |coef| ~1.5 std; the teacher alone is at 3.3%.
    steps: int = 600
    learning_rate: float = 0.03
    contour_weight: float = 0.8  # jaw points 0-16 are 2D silhouettes, not fixed vertices: trust them less
    prior_weight: float = 0.002  # ||alpha/std||^2 + ||beta/std||^2 (per coefficient)
    teacher_weight: float = 0.005  # ||shape/std - teacher/std||^2: settles what 68 points leave ambiguous


@dataclass(frozen=True)
class LabelSet:
    """Arrays of a label file (one row per face or mirrored face)."""

    image_paths: np.ndarray  # (N,) str
    mirrored: np.ndarray  # (N,) bool
    roi_boxes: np.ndarray  # (N, 4) image pixels (of the mirrored image when mirrored)
    params: np.ndarray  # (N, 62) model frame of roi_box
    landmarks: np.ndarray  # (N, 68, 2) annotated, image pixels (mirrored when mirrored)
    splits: np.ndarray  # (N,) str
    groups: np.ndarray  # (N,) str
    fit_nme: np.ndarray  # (N,) fit residual / sqrt(landmark box area)
    teacher_params: np.ndarray  # (N, 62) the teacher's prediction on the same crop

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **{k: getattr(self, k) for k in self.__dataclass_fields__})
        tmp.replace(path)

    @staticmethod
    def load(path: str | Path) -> "LabelSet":
        with np.load(path, allow_pickle=False) as data:
            return LabelSet(**{k: data[k] for k in LabelSet.__dataclass_fields__})

    def select(self, mask: np.ndarray) -> "LabelSet":
        return LabelSet(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    def __len__(self) -> int:
        return len(self.params)


def read_image(path: str | Path, mirrored: bool = False) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image[:, ::-1].copy() if mirrored else image


def mirror_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the horizontally mirrored image (x -> W - 1 - x, points renumbered)."""
    out = landmarks[FLIP_68].copy()
    out[:, 0] = width - 1 - out[:, 0]
    return out


def _rodrigues(omega: torch.Tensor) -> torch.Tensor:
    """(N, 3) axis-angle -> (N, 3, 3)."""
    theta = omega.norm(dim=1, keepdim=True).clamp_min(1e-12)
    axis = omega / theta
    x, y, z = axis.unbind(1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], 1).reshape(-1, 3, 3)
    sin, cos = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=omega.dtype).expand_as(k)
    return eye + sin * k + (1 - cos) * (k @ k)


def fit_params(
    morphable: MorphableModel,
    landmarks_model: np.ndarray,
    init_params: np.ndarray,
    config: FitConfig = FitConfig(),
) -> np.ndarray:
    """Fit (N, 62) params to 2D landmarks in the model frame.

    Args:
        landmarks_model: (N, 68, 2) target landmarks, model frame (120 crop, y up).
        init_params: (N, 62) de-normalised initial guess (the teacher's prediction).
    Returns:
        (N, 62) de-normalised fitted params (pose z-row kept consistent with the rotation).
    """
    torch_model = TorchMorphable(morphable).double()
    stats = morphable.stats
    scale0, rotation0, translation0 = decompose_pose(init_params[:, :12].reshape(-1, 3, 4))
    std = torch.as_tensor(stats.std, dtype=torch.float64)
    mean = torch.as_tensor(stats.mean, dtype=torch.float64)
    shape0 = torch.as_tensor(init_params[:, 12:], dtype=torch.float64)
    shape0_n = (shape0 - mean[12:]) / std[12:]
    target = torch.as_tensor(landmarks_model, dtype=torch.float64)
    weights = torch.ones(68, dtype=torch.float64)
    weights[:17] = config.contour_weight

    n = len(init_params)
    omega = torch.zeros(n, 3, dtype=torch.float64, requires_grad=True)
    log_scale = torch.zeros(n, 1, dtype=torch.float64, requires_grad=True)
    shift = torch.zeros(n, 2, dtype=torch.float64, requires_grad=True)
    shape_n = shape0_n.clone().requires_grad_(True)
    r0 = torch.as_tensor(rotation0)
    s0 = torch.as_tensor(scale0).reshape(-1, 1, 1)
    t0 = torch.as_tensor(translation0)
    optimizer = torch.optim.Adam([omega, log_scale, shift, shape_n], lr=config.learning_rate)

    # shape coefficients move in std units; pose in radians / log-scale / pixels (scaled to similar steps)
    def build():
        rotation = _rodrigues(omega) @ r0
        scaled = s0 * torch.exp(log_scale)[..., None] * rotation
        t = torch.cat([t0[:, :2] + 10.0 * shift, t0[:, 2:]], dim=1)
        shape = shape_n * std[12:] + mean[12:]
        return torch.cat([torch.cat([scaled, t[..., None]], 2).reshape(n, 12), shape], 1)

    for _ in tqdm(range(config.steps), desc="fit 3DMM", leave=False):
        optimizer.zero_grad()
        params = build()
        projected = torch_model.landmarks(params)[:, :2].transpose(1, 2)
        residual = ((projected - target) ** 2).sum(-1)
        loss = (
            (residual * weights).mean(1)
            + config.prior_weight * (shape_n**2).sum(1)
            + config.teacher_weight * ((shape_n - shape0_n) ** 2).sum(1)
        )
        loss.sum().backward()
        optimizer.step()
    with torch.no_grad():
        fitted = build().numpy()
    # keep the pose an exact scaled rotation
    scale, rotation, translation = decompose_pose(fitted[:, :12].reshape(-1, 3, 4))
    fitted[:, :12] = compose_pose(scale, rotation, translation).reshape(-1, 12)
    return fitted


def make_labels(
    samples: list[LandmarkSample],
    morphable: MorphableModel,
    teacher: Predictor,
    config: FitConfig = FitConfig(),
    mirror: bool = True,
) -> LabelSet:
    """Fit labels for every sample (and its mirror image); ``teacher`` (:func:`training.teacher.peer_predictor`)
    gives the initial guess and the shape pull."""
    rows = []
    for sample in tqdm(samples, desc="teacher init"):
        image = read_image(sample.image_path)
        for mirrored in (False, True) if mirror else (False,):
            img = image[:, ::-1] if mirrored else image
            landmarks = mirror_landmarks(sample.landmarks, image.shape[1]) if mirrored else sample.landmarks
            box = crop.roi_box_from_landmarks(landmarks)
            guess = teacher(crop.crop_image(np.ascontiguousarray(img), box)[None])[0]
            rows.append((sample, mirrored, box, landmarks, guess))
    boxes = np.stack([r[2] for r in rows])
    landmarks_image = np.stack([r[3] for r in rows])
    teacher_params = np.stack([r[4] for r in rows]).astype(np.float64)
    landmarks_model = np.stack([crop.image_to_model(lm.T, box).T for lm, box in zip(landmarks_image, boxes)])
    fitted = np.concatenate(
        [
            fit_params(morphable, landmarks_model[i : i + 4096], teacher_params[i : i + 4096], config)
            for i in range(0, len(rows), 4096)
        ]
    )
    projected = morphable.landmarks_model(fitted)[:, :2].transpose(0, 2, 1)
    image_points = np.stack(
        [crop.model_to_image(np.vstack([p.T, np.zeros((1, 68))]), box)[:2].T for p, box in zip(projected, boxes)]
    )
    extent = landmarks_image.max(1) - landmarks_image.min(1)
    fit_nme = np.linalg.norm(image_points - landmarks_image, axis=2).mean(1) / np.sqrt(extent.prod(1))
    LOGGER.info(
        "fitted %d faces: median fit NME %.2f%%, mean %.2f%%", len(rows), 100 * np.median(fit_nme), 100 * fit_nme.mean()
    )
    return LabelSet(
        image_paths=np.array([str(r[0].image_path) for r in rows]),
        mirrored=np.array([r[1] for r in rows]),
        roi_boxes=boxes,
        params=fitted.astype(np.float32),
        landmarks=landmarks_image.astype(np.float32),
        splits=np.array([r[0].split for r in rows]),
        groups=np.array([r[0].group for r in rows]),
        fit_nme=fit_nme.astype(np.float32),
        teacher_params=teacher_params.astype(np.float32),
    )
