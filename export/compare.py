"""Numerical comparison of two sets of 62 parameters: the one yardstick for export checks, backend parity
and the TensorRT FP16-vs-FP32 report.

Raw de-normalised differences are hard to read (identity coefficients are ~1e5, pose entries ~1e-4), so the
report gives them per group, the difference in units of each parameter's std (what the network predicts),
and, when a morphable model is at hand, the 68-landmark distance in pixels of the crop (model frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drtn.params import EXP_SLICE, ID_SLICE, NUM_PARAMS, POSE_SLICE, ParamStats


@dataclass(frozen=True)
class ParamErrorReport:
    """Differences between reference and test parameters over a batch.

    Attributes:
        count: number of faces compared.
        max_abs_normalized / mean_abs_normalized: |test - reference| / std, over all 62 values.
        max_abs_pose / max_abs_identity / max_abs_expression: de-normalised |difference| per group.
        landmark_px_max / landmark_px_mean: 2D distance of the 68 projected landmarks, pixels of the crop
            (model frame); ``None`` without a morphable model.
    """

    count: int
    max_abs_normalized: float
    mean_abs_normalized: float
    max_abs_pose: float
    max_abs_identity: float
    max_abs_expression: float
    landmark_px_max: float | None = None
    landmark_px_mean: float | None = None

    def summary(self) -> str:
        text = (
            f"{self.count} faces: |d|/std max {self.max_abs_normalized:.2e} mean {self.mean_abs_normalized:.2e}; "
            f"|d| max pose {self.max_abs_pose:.2e} identity {self.max_abs_identity:.2e} "
            f"expression {self.max_abs_expression:.2e}"
        )
        if self.landmark_px_max is not None:
            text += f"; 68-landmark px max {self.landmark_px_max:.4f} mean {self.landmark_px_mean:.4f}"
        return text


@dataclass(frozen=True)
class Tolerance:
    """Acceptance limits for a :class:`ParamErrorReport` (``None`` = not checked)."""

    max_abs_normalized: float
    landmark_px_max: float | None = None

    def violations(self, report: ParamErrorReport) -> list[str]:
        problems = []
        if not report.max_abs_normalized <= self.max_abs_normalized:  # also catches NaN
            problems.append(f"|d|/std {report.max_abs_normalized:.2e} > {self.max_abs_normalized:.0e}")
        if self.landmark_px_max is not None and report.landmark_px_max is not None:
            if not report.landmark_px_max <= self.landmark_px_max:
                problems.append(f"landmark error {report.landmark_px_max:.4f} px > {self.landmark_px_max} px")
        return problems


# ONNX Runtime vs torch, both float32: only the order of float operations differs.
FP32_TOLERANCE = Tolerance(max_abs_normalized=1e-4, landmark_px_max=0.01)
# TensorRT FP16 vs ONNX Runtime FP32: half precision inside the network, de-normalisation kept in FP32.
FP16_TOLERANCE = Tolerance(max_abs_normalized=0.05, landmark_px_max=0.5)


def compare_params(reference: np.ndarray, test: np.ndarray, stats: ParamStats, morphable=None) -> ParamErrorReport:
    """Compare (N, 62) de-normalised parameters.

    Args:
        reference, test: (N, 62) de-normalised parameters of the same N faces.
        stats: the normalisation statistics (for the per-std difference).
        morphable: optional :class:`drtn.morphable.MorphableModel` for the landmark distance.
    """
    reference = np.asarray(reference, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if reference.shape != test.shape or reference.ndim != 2 or reference.shape[1] != NUM_PARAMS:
        raise ValueError(f"compare_params: expected two (N, 62) arrays, got {reference.shape} and {test.shape}")
    if reference.shape[0] == 0:
        raise ValueError("compare_params: nothing to compare (N == 0)")
    diff = np.abs(test - reference)
    normalized = diff / stats.std.astype(np.float64)
    landmark_max = landmark_mean = None
    if morphable is not None:
        distance = np.linalg.norm(
            morphable.landmarks_model(test)[:, :2] - morphable.landmarks_model(reference)[:, :2], axis=1
        )  # (N, 68)
        landmark_max, landmark_mean = float(distance.max()), float(distance.mean())
    return ParamErrorReport(
        count=int(reference.shape[0]),
        max_abs_normalized=float(normalized.max()),
        mean_abs_normalized=float(normalized.mean()),
        max_abs_pose=float(diff[:, POSE_SLICE].max()),
        max_abs_identity=float(diff[:, ID_SLICE].max()),
        max_abs_expression=float(diff[:, EXP_SLICE].max()),
        landmark_px_max=landmark_max,
        landmark_px_mean=landmark_mean,
    )


def compare_backends(reference, test, crops_bgr: np.ndarray, stats: ParamStats, morphable=None) -> ParamErrorReport:
    """Run two :class:`export.backends.Backend` on the same uint8 crops and compare their parameters.

    Batches are split to fit either backend's ``max_batch``.
    """
    limits = [b.max_batch for b in (reference, test) if b.max_batch is not None]
    step = min(limits) if limits else max(len(crops_bgr), 1)
    chunks = [crops_bgr[i : i + step] for i in range(0, len(crops_bgr), step)]
    reference_params = np.concatenate([reference.infer(chunk).params for chunk in chunks])
    test_params = np.concatenate([test.infer(chunk).params for chunk in chunks])
    return compare_params(reference_params, test_params, stats, morphable)
