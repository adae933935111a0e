"""Evaluation metrics of the paper (section IV.C, eqs. 29-30, Table I), numpy only.

Points are coordinate-major like the rest of :mod:`drtn`: ``(N, D, K)`` = N faces, D = 2 or 3 rows (x, y[, z])
in image pixels, K points. NMEs are returned per image as fractions (multiply by 100 for the paper's %).

Normalisation follows 3DDFA's benchmark code rather than the paper's wording ("diagonal size"): the error is
divided by ``sqrt(w * h)`` of the ground-truth points' 2D bounding box, the convention behind the published
AFLW2000-3D numbers that Table I compares against.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

LOGGER = logging.getLogger(__name__)

YAW_BINS_DEGREES = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))
DEFAULT_CED_MAX = 0.1  # CED x-axis up to 10 % NME, the range of the paper's Figs. 4 and 6


def _as_points(points, name: str, rows: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] not in rows or array.shape[2] < 2:
        expected = " or ".join(f"(N, {r}, K)" for r in rows)
        raise ValueError(f"{name}: expected {expected} points with K >= 2, got shape {np.shape(points)}")
    return array


def _check_pair(pred, target, rows: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _as_points(pred, "pred", rows), _as_points(target, "target", rows)
    if pred.shape[0] != target.shape[0] or pred.shape[2] != target.shape[2]:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in faces or points")
    return pred, target


def box_size(points) -> np.ndarray:
    """``sqrt(w * h)`` of the 2D bounding box of each face's points (3DDFA's NME normaliser).

    Args:
        points: (N, D, K) or (D, K), D >= 2; only x and y are used.
    Returns:
        (N,) in the points' units.
    """
    array = _as_points(points, "points", (2, 3))
    extent = array[:, :2].max(axis=2) - array[:, :2].min(axis=2)
    return np.sqrt(extent[:, 0] * extent[:, 1])


def nme_2d(pred, target) -> np.ndarray:
    """Eq. 29 per image: mean 2D point distance over ``sqrt(w * h)`` of the target's box.

    Args:
        pred, target: (N, D, K) or (D, K), D in {2, 3}; z, if present, is ignored.
    Returns:
        (N,) fractions.
    """
    pred, target = _check_pair(pred, target, (2, 3))
    distance = np.linalg.norm(pred[:, :2] - target[:, :2], axis=1)
    return distance.mean(axis=1) / box_size(target)


def nme_3d(pred, target) -> np.ndarray:
    """Eq. 30 per image: mean 3D point distance after z-alignment, over ``sqrt(w * h)`` of the target's 2D box.

    Weak perspective leaves depth defined only up to a shift, so each point set's mean z is removed first
    (the paper's "rigid translation along the z-axis").

    Args:
        pred, target: (N, 3, K) or (3, K), x, y, z in the same units (image pixels).
    Returns:
        (N,) fractions.
    """
    pred, target = _check_pair(pred, target, (3,))
    pred = pred.copy()
    pred[:, 2] += target[:, 2].mean(axis=1, keepdims=True) - pred[:, 2].mean(axis=1, keepdims=True)
    distance = np.linalg.norm(pred - target, axis=1)
    return distance.mean(axis=1) / box_size(target)


@dataclass(frozen=True)
class YawBinRow:
    """One row of Table I: mean NME per absolute-yaw bin, the mean of the three bin means and their std.

    ``mean`` is the mean of the bin means (not of all images) and ``std`` their population std (ddof 0), which
    reproduces the published rows (DRTN: 2.861, 3.592, 4.436 -> 3.630, 0.644). Empty bins give NaN.
    """

    bin_0_30: float
    bin_30_60: float
    bin_60_90: float
    mean: float
    std: float
    counts: tuple[int, int, int]

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        """``([0,30], [30,60], [60,90], mean, std)`` in Table I's column order."""
        return (self.bin_0_30, self.bin_30_60, self.bin_60_90, self.mean, self.std)

    def format(self, scale: float = 100.0, digits: int = 3) -> str:
        """Tab-separated row, by default in percent as Table I prints it."""
        return "\t".join(f"{value * scale:.{digits}f}" for value in self.as_tuple())


def yaw_bin_table(nme, yaw_degrees) -> YawBinRow:
    """Group per-image NMEs by absolute yaw into Table I's bins.

    Bins follow 3DDFA's benchmark: ``|yaw| <= 30``, ``30 < |yaw| <= 60``, ``|yaw| > 60`` (|yaw| beyond 90, which
    fitted AFLW2000-3D labels occasionally give, counts in the last bin).

    Args:
        nme: (N,) per-image errors (any unit; the row keeps it).
        yaw_degrees: (N,) yaw angles in degrees, either sign.
    """
    nme = np.asarray(nme, dtype=np.float64).reshape(-1)
    yaw = np.abs(np.asarray(yaw_degrees, dtype=np.float64).reshape(-1))
    if nme.shape != yaw.shape:
        raise ValueError(f"nme {nme.shape} and yaw_degrees {yaw.shape} must have the same length")
    masks = (yaw <= 30.0, (yaw > 30.0) & (yaw <= 60.0), yaw > 60.0)
    means = []
    for (low, high), mask in zip(YAW_BINS_DEGREES, masks):
        if mask.any():
            means.append(float(nme[mask].mean()))
        else:
            LOGGER.warning("yaw bin [%g, %g] is empty; its mean is NaN", low, high)
            means.append(float("nan"))
    bin_means = np.asarray(means)
    return YawBinRow(
        *means,
        mean=float(bin_means.mean()),
        std=float(bin_means.std()),
        counts=tuple(int(mask.sum()) for mask in masks),
    )


def ced_curve(nme, thresholds=None) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: the fraction of images with NME <= each threshold.

    Args:
        nme: (N,) per-image errors; NaN counts as a failure (never below a threshold).
        thresholds: (T,) increasing; default ``linspace(0, 0.1, 1001)``.
    Returns:
        thresholds (T,), fractions (T,) in [0, 1], non-decreasing.
    """
    nme = np.asarray(nme, dtype=np.float64).reshape(-1)
    if nme.size == 0:
        raise ValueError("ced_curve: nme is empty")
    grid = np.linspace(0.0, DEFAULT_CED_MAX, 1001) if thresholds is None else np.asarray(thresholds, np.float64)
    if grid.ndim != 1 or np.any(np.diff(grid) < 0):
        raise ValueError(f"thresholds: expected an increasing 1D grid, got shape {grid.shape}")
    finite = np.sort(nme[np.isfinite(nme)])
    fractions = np.searchsorted(finite, grid, side="right") / nme.size
    return grid, fractions


def ced_auc(nme, threshold: float = 0.07) -> float:
    """Area under the CED curve from 0 to ``threshold``, divided by ``threshold`` (in [0, 1]; 1 = all errors 0).

    Exact for the step-shaped CED: each image contributes ``max(0, threshold - nme) / threshold``.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    nme = np.asarray(nme, dtype=np.float64).reshape(-1)
    if nme.size == 0:
        raise ValueError("ced_auc: nme is empty")
    clipped = np.where(np.isfinite(nme), np.clip(nme, 0.0, None), np.inf)
    return float(np.clip(threshold - clipped, 0.0, threshold).mean() / threshold)


def plot_ced(
    curves: Mapping[str, Sequence[float]],
    path: str | Path,
    max_nme: float = DEFAULT_CED_MAX,
    title: str = "CED",
    percent: bool = True,
) -> Path:
    """Plot the CED curves of several methods to a PNG (matplotlib's Agg canvas; no display needed).

    Args:
        curves: method name -> (N,) per-image NMEs (fractions).
        path: output file; parent folders are created.
        max_nme: right end of the x axis (fraction).
        title: figure title.
        percent: label the x axis in % as the paper does.
    Returns:
        the written path.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # an optional dependency of drtn: only plotting needs it
        raise ImportError("plot_ced needs matplotlib: pip install matplotlib") from error
    if not curves:
        raise ValueError("plot_ced: no curves given")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.linspace(0.0, max_nme, 501)
    scale = 100.0 if percent else 1.0
    # Figure + Agg canvas directly: no pyplot, so no global backend switch inside a host application
    figure = Figure(figsize=(5, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for name, nme in curves.items():
        _, fractions = ced_curve(nme, grid)
        axes.plot(grid * scale, fractions, label=f"{name} (mean {np.nanmean(nme) * scale:.2f}{'%' if percent else ''})")
    axes.set_xlim(0, max_nme * scale)
    axes.set_ylim(0, 1)
    axes.set_xlabel("NME (%)" if percent else "NME")
    axes.set_ylabel("fraction of images")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    return path
