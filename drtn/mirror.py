"""The exact mirror of a 62-parameter vector for a horizontally flipped crop, and mirror-averaged predictions.

Flipping a crop (``crop[:, ::-1]``, pixel ``x -> S - 1 - x``) shows the mirror image of the face. Its parameters
follow from the original ones without running the network again:

- **Pose.** Crop pixel ``x`` is model-frame ``u = x + 1`` (:func:`drtn.crop.crop_to_model`), so the flip is
  ``u -> S + 1 - u`` in the model frame. With ``D = F = diag(-1, 1, 1)`` and the face mirrored about its own
  symmetry plane ``x = c`` of the BFM (``c`` = mean x of the mean landmarks, about -350 BFM units, not 0):
  ``s*R' = D (s*R) F`` (row 0 and column 0 negated: still a rotation) and
  ``t' = D t + (S + 1, 0, 0) + 2c * D (s*R)[:, 0]``. Exact, and its own inverse.
- **Shape.** A mirrored face is again a BFM face: vertex ``k`` of the mirror is vertex ``pi(k)`` with x negated
  about ``c``, ``pi`` the left/right correspondence (the 68-landmark permutation, exactly the nearest neighbour of
  the x-mirrored mean landmarks; on the dense 64x64 grid column ``i -> 63 - i``, exact for every on-face point).
  The coefficients of the mirrored shape are the least-squares fit ``M = pinv(B) . Mirror . B`` of each basis
  (identity 40x40, expression 10x10) over the 68 landmarks and the on-face dense points, plus the fit of the mean
  shape's own small asymmetry (an offset on the identity coefficients). Not exactly an involution (the bases
  are not closed under mirroring); ``mirror(mirror(p))`` is ``p`` to ~1e-3 of a landmark pixel (tests).

The whole mirror is one affine map of the de-normalised 62-vector, ``p' = p @ A.T + b``
(:meth:`MirrorMap.affine`): the ONNX export bakes it into the graph as a constant MatMul + Add.

numpy only. Parameters are **de-normalised** (what the ONNX contract outputs; the torch network's normalised
output goes through :meth:`drtn.params.ParamStats.denormalize` first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drtn.params import EXP_SLICE, ID_SLICE, NUM_ID, NUM_PARAMS, NUM_POSE

# 68-point left/right permutation (iBUG / 300W order): landmark k of the mirrored face is landmark FLIP_68[k]
# of the face. Equals the nearest neighbour of the x-mirrored BFM mean landmarks (checked in the tests).
FLIP_68 = np.array(
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]  # jaw
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]  # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65],  # inner lips
    dtype=np.int64,
)
POSE_MODES = ("linear", "rotation")


def flip_crops(crops: np.ndarray) -> np.ndarray:
    """Mirror crops left-right: (N, S, S, C) uint8 HWC -> same shape, C-contiguous (``x -> S - 1 - x``)."""
    crops = np.asarray(crops)
    if crops.ndim != 4:
        raise ValueError(f"flip_crops: expected (N, S, S, C) crops, got shape {crops.shape}")
    return np.ascontiguousarray(crops[:, :, ::-1])


def flip_landmarks(points_model: np.ndarray, crop_size: int) -> np.ndarray:
    """Model-frame points (..., 3, K) of a crop -> the same points in the flipped crop (``u -> S + 1 - u``),
    not re-indexed (use :data:`FLIP_68` on the last axis for the 68 landmarks)."""
    out = np.array(points_model, dtype=np.float64, copy=True)
    out[..., 0, :] = crop_size + 1.0 - out[..., 0, :]
    return out


def _mirror_vectors(vectors: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """(3K, D) xyz-interleaved displacement columns -> mirrored (x negated, points re-indexed)."""
    points = vectors.reshape(-1, 3, vectors.shape[1])[permutation]
    points = points * np.array([-1.0, 1.0, 1.0])[None, :, None]
    return points.reshape(vectors.shape)


def _rows(points_index: np.ndarray) -> np.ndarray:
    return (3 * points_index[:, None] + np.arange(3)[None]).reshape(-1)


@dataclass(frozen=True)
class MirrorMap:
    """The mirror of de-normalised 62-vectors for a horizontally flipped ``crop_size`` crop.

    Attributes:
        identity_matrix: (40, 40) ``alpha' = identity_matrix @ alpha + identity_offset``.
        identity_offset: (40,) the mean shape's own asymmetry, in identity coefficients.
        expression_matrix: (10, 10) ``beta' = expression_matrix @ beta``.
        center_x: x of the face's symmetry plane in BFM units.
        crop_size: S of the crops (120).
    """

    identity_matrix: np.ndarray
    identity_offset: np.ndarray
    expression_matrix: np.ndarray
    center_x: float
    crop_size: int

    @staticmethod
    def from_morphable(morphable, crop_size: int = 120, dense_weight: float = 1.0, offset: bool = True) -> "MirrorMap":
        """Fit the shape maps from a :class:`drtn.morphable.MorphableModel` (sparse 68 + on-face dense points).

        Args:
            dense_weight: weight of the dense on-face rows against the 68 landmark rows (0: landmarks only).
            offset: fit the mean shape's asymmetry as an identity offset (else the offset is zero).
        """
        sparse, dense = morphable.sparse, morphable.dense
        center_x = float(sparse.mean.reshape(-1, 3)[:, 0].mean())
        grid = int(round(np.sqrt(dense.num_points)))
        k = np.arange(dense.num_points)
        dense_flip = (grid - 1 - k // grid) * grid + k % grid  # column i -> grid-1-i (module docstring)
        on_face = np.flatnonzero(morphable.dense_on_face) if dense_weight > 0 else np.zeros(0, np.int64)
        # every on-face point's mirror is on the face too; keep the rows of points whose mirror is as well
        on_face = on_face[np.isin(dense_flip[on_face], on_face)]
        weight = np.sqrt(dense_weight * 68.0 / max(len(on_face), 1))  # both sets count alike at dense_weight 1

        def stacked(sparse_columns, dense_columns, mirror: bool):
            if mirror:
                sparse_columns = _mirror_vectors(sparse_columns, FLIP_68)
                dense_columns = _mirror_vectors(dense_columns, dense_flip)
            return np.vstack([sparse_columns, weight * dense_columns[_rows(on_face)]])

        def mirrored_mean(mean):
            points = mean.reshape(-1, 3).copy()
            points[:, 0] = 2 * center_x - points[:, 0]
            return points.reshape(-1, 1)

        def fit(sparse_basis, dense_basis):
            basis = stacked(sparse_basis, dense_basis, mirror=False)
            return np.linalg.pinv(basis) @ stacked(sparse_basis, dense_basis, mirror=True), basis

        identity_matrix, identity_basis = fit(sparse.identity, dense.identity)
        expression_matrix, _ = fit(sparse.expression, dense.expression)
        if offset:
            residual = stacked(
                (mirrored_mean(sparse.mean).reshape(-1, 3)[FLIP_68].reshape(-1, 1) - sparse.mean.reshape(-1, 1)),
                (mirrored_mean(dense.mean).reshape(-1, 3)[dense_flip].reshape(-1, 1) - dense.mean.reshape(-1, 1)),
                mirror=False,
            )
            identity_offset = (np.linalg.pinv(identity_basis) @ residual)[:, 0]
        else:
            identity_offset = np.zeros(NUM_ID)
        return MirrorMap(identity_matrix, identity_offset, expression_matrix, center_x, int(crop_size))

    # ------------------------------------------------------------------------------------------ the map
    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The mirror as ``p' = p @ matrix.T + offset``: (62, 62) matrix, (62,) offset (float64)."""
        matrix = np.zeros((NUM_PARAMS, NUM_PARAMS))
        offset = np.zeros(NUM_PARAMS)
        sign = np.array([-1.0, 1.0, 1.0])
        for i in range(3):
            for j in range(3):
                matrix[4 * i + j, 4 * i + j] = sign[i] * sign[j]  # D (sR) F
            # t'_i = d_i t_i + 2c d_i (sR)_{i0}
            matrix[4 * i + 3, 4 * i + 3] = sign[i]
            matrix[4 * i + 3, 4 * i + 0] = 2.0 * self.center_x * sign[i]
        offset[3] = self.crop_size + 1.0
        matrix[ID_SLICE, ID_SLICE] = self.identity_matrix
        offset[ID_SLICE] = self.identity_offset
        matrix[EXP_SLICE, EXP_SLICE] = self.expression_matrix
        return matrix, offset

    def mirror(self, params: np.ndarray) -> np.ndarray:
        """(N, 62) or (62,) de-normalised parameters of crops -> those of the flipped crops (float64)."""
        params = np.asarray(params, dtype=np.float64)
        if params.shape[-1] != NUM_PARAMS:
            raise ValueError(f"MirrorMap.mirror: expected last dimension {NUM_PARAMS}, got shape {params.shape}")
        matrix, offset = self.affine()
        return params @ matrix.T + offset

    def average(self, params: np.ndarray, params_flipped: np.ndarray, pose_mode: str = "linear") -> np.ndarray:
        """Mirror-averaged parameters: the mean of ``params`` (N, 62) of crops and the mirror of ``params_flipped``
        (N, 62) of the flipped crops. ``pose_mode``: ``"linear"`` averages the 3x4 ``[s*R | t]`` blocks;
        ``"rotation"`` splits each ``s*R`` into rotation and stretch (polar decomposition ``A = R K``), takes the
        rotation nearest the mean rotation (chordal mean) times the mean stretch, and averages the translations
        (the linear mean of two rotations shrinks the scale by ``cos(angle / 2)``). ``linear`` measured better
        on every held-out set (docs/STATUS.md)."""
        if pose_mode not in POSE_MODES:
            raise ValueError(f"pose_mode: expected one of {POSE_MODES}, got {pose_mode!r}")
        params = np.asarray(params, dtype=np.float64).reshape(-1, NUM_PARAMS)
        other = self.mirror(np.asarray(params_flipped, dtype=np.float64).reshape(-1, NUM_PARAMS))
        if other.shape != params.shape:
            raise ValueError(f"MirrorMap.average: {params.shape} params but {other.shape} flipped params")
        out = (params + other) / 2
        if pose_mode == "rotation":
            rot_a, stretch_a = _polar(params[:, :NUM_POSE].reshape(-1, 3, 4)[:, :, :3])
            rot_b, stretch_b = _polar(other[:, :NUM_POSE].reshape(-1, 3, 4)[:, :, :3])
            rotation, _ = _polar(rot_a + rot_b)
            pose = out[:, :NUM_POSE].reshape(-1, 3, 4)
            pose[:, :, :3] = rotation @ ((stretch_a + stretch_b) / 2)
            out[:, :NUM_POSE] = pose.reshape(-1, NUM_POSE)
        return out


def _polar(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 3) -> rotation (N, 3, 3) (det +1, nearest to the matrix) and symmetric stretch K with ``A = R K``."""
    u, singular, vt = np.linalg.svd(matrices)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones_like(singular)
    fix[:, 2] = d
    rotation = (u * fix[:, None, :]) @ vt
    stretch = np.swapaxes(vt, 1, 2) @ ((singular * fix)[:, :, None] * vt)
    return rotation, stretch


def flip_averaged(predict, mirror_map: MirrorMap, pose_mode: str = "linear"):
    """Wrap a predictor ``crops (N, S, S, 3) uint8 -> (N, 62)`` de-normalised into its mirror-averaged version:
    one call on the 2N crops (the crops, then their flips), averaged by :meth:`MirrorMap.average`."""

    def predict_averaged(crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, NUM_PARAMS))
        both = np.asarray(predict(np.concatenate([crops, flip_crops(crops)])), dtype=np.float64)
        return mirror_map.average(both[: len(crops)], both[len(crops) :], pose_mode)

    return predict_averaged


__all__ = ["FLIP_68", "POSE_MODES", "MirrorMap", "flip_averaged", "flip_crops", "flip_landmarks"]
