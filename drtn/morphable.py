"""The BFM-derived 3D morphable model of the 3DDFA family (paper eqs. 1-3).

Three meshes share the 62-parameter space:

- ``sparse``: the 68 landmarks (``landmarks68_bases_v2.json``), with 40 identity + 10 expression bases.
- ``dense``: 4,096 points of ``Model_PAF.pkl`` with their own 40 identity bases. Layout (verified): a 64x64 grid,
  point ``k = 64 * i + j`` with ``i`` walking +x and ``j`` walking -y over the face; some border points lie
  off the face surface, so :attr:`dense_triangles` keeps only quads whose corners lie on the mean mesh.
  The file's ``w_exp_filter`` is byte-identical to ``w_filter[:, :10]`` (identity bases, ~1e5 times too weak for
  the expression coefficients), so the dense expression basis is rebuilt from the sparse one: each of its 10
  columns is the 3D thin-plate interpolation (kernel ``r``) of the 68 landmark displacements over the mean face
  (:func:`interpolate_basis`). It equals the sparse basis at the landmarks and is smooth in between.
- ``display``: the 38,365-vertex no-neck BFM mean mesh with its 76,073 triangles (no bases of its own);
  :meth:`MorphableModel.display_vertices` moves it with the dense model's deformation, interpolated.

Vertices are ``S = mean + A_id @ alpha + B_exp @ beta`` (xyz interleaved, eq. 2), projected to the 120x120
model frame by ``[s*R | t] @ [S; 1]`` (eq. 3, weak perspective: x, y used, z kept for depth).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from drtn.assets import Assets, find_assets, load_json_asset, load_npy_asset, load_pickle_asset
from drtn.params import NUM_EXP, NUM_ID, FaceParams, ParamStats

LOGGER = logging.getLogger(__name__)

DENSE_GRID = 64  # Model_PAF: 64 x 64 = 4096 points
# A dense grid point belongs to the face if it lies within this distance (BFM units, ~micrometres) of the
# mean full mesh; off-face padding points of the grid are ~13,000+ away, on-face ones < 3,000.
_ON_SURFACE_TOLERANCE = 6000.0


@dataclass(frozen=True)
class Basis:
    """One linear shape model: mean (3K,), identity basis (3K, 40), expression basis (3K, 10), xyz interleaved."""

    mean: np.ndarray
    identity: np.ndarray
    expression: np.ndarray

    @property
    def num_points(self) -> int:
        return self.mean.shape[0] // 3

    def vertices(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """(N, 40), (N, 10) -> (N, 3, K) model-space vertices (float64)."""
        shape = self.mean[None] + identity @ self.identity.T + expression @ self.expression.T
        return shape.reshape(shape.shape[0], -1, 3).transpose(0, 2, 1)


class TorchBasis(torch.nn.Module):
    """Torch version of :class:`Basis` with buffers, for differentiable reconstruction."""

    def __init__(self, basis: Basis):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(basis.mean, dtype=torch.float32))
        self.register_buffer("identity", torch.as_tensor(basis.identity, dtype=torch.float32))
        self.register_buffer("expression", torch.as_tensor(basis.expression, dtype=torch.float32))

    def vertices(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(N, 40), (N, 10) -> (N, 3, K)."""
        shape = self.mean + identity @ self.identity.T + expression @ self.expression.T
        return shape.reshape(shape.shape[0], -1, 3).transpose(1, 2)

    def deformation(self, identity: torch.Tensor | None, expression: torch.Tensor | None) -> torch.Tensor:
        """Offsets from the mean, (N, 3K): ``A_id @ alpha`` and/or ``B_exp @ beta`` (eqs. 24-25)."""
        out = 0
        if identity is not None:
            out = out + identity @ self.identity.T
        if expression is not None:
            out = out + expression @ self.expression.T
        return out


def interpolate_basis(source_mean: np.ndarray, source_basis: np.ndarray, target_mean: np.ndarray) -> np.ndarray:
    """Carry a linear basis from one point set to another by 3D thin-plate interpolation.

    Each basis column's per-point displacement is interpolated with the biharmonic kernel ``phi(r) = r`` plus an
    affine term, fitted exactly at the source points (the mean shapes say where they are).

    Args:
        source_mean: (3K,) xyz-interleaved source points.
        source_basis: (3K, D) basis at the source points.
        target_mean: (3M,) xyz-interleaved target points.
    Returns:
        (3M, D) float64 basis at the target points.
    """
    source = np.asarray(source_mean, dtype=np.float64).reshape(-1, 3)
    target = np.asarray(target_mean, dtype=np.float64).reshape(-1, 3)
    basis = np.asarray(source_basis, dtype=np.float64)
    num_source, num_columns = source.shape[0], basis.shape[1]
    if basis.shape[0] != 3 * num_source:
        raise ValueError(f"source_basis: expected {3 * num_source} rows for {num_source} points, got shape {basis.shape}")
    # work in units of the source's extent so the linear system is well conditioned
    center, extent = source.mean(axis=0), np.abs(source - source.mean(axis=0)).max()
    source, target = (source - center) / extent, (target - center) / extent
    kernel = np.linalg.norm(source[:, None] - source[None], axis=2)
    affine = np.hstack([np.ones((num_source, 1)), source])
    system = np.block([[kernel, affine], [affine.T, np.zeros((4, 4))]])
    values = basis.reshape(num_source, 3 * num_columns)  # row k: (x, y, z) of point k for every column
    coefficients = np.linalg.solve(system, np.vstack([values, np.zeros((4, 3 * num_columns))]))
    target_kernel = np.linalg.norm(target[:, None] - source[None], axis=2)
    target_affine = np.hstack([np.ones((target.shape[0], 1)), target])
    out = target_kernel @ coefficients[:num_source] + target_affine @ coefficients[num_source:]
    return out.reshape(3 * target.shape[0], num_columns)


def project(pose, vertices):
    """Apply ``[s*R | t]`` to vertices (eq. 3, z kept).

    Args:
        pose: (N, 3, 4), numpy or torch.
        vertices: (N, 3, K) model space.
    Returns:
        (N, 3, K) model-frame points (x, y in 120x120 frame pixels, y up; z depth, same scale).
    """
    return pose[:, :, :3] @ vertices + pose[:, :, 3:]


@dataclass(frozen=True)
class MorphableModel:
    """The sparse, dense and display meshes plus the parameter statistics."""

    sparse: Basis
    dense: Basis
    stats: ParamStats
    display_mean: np.ndarray  # (38365, 3) mean full mesh (no neck)
    display_triangles: np.ndarray  # (76073, 3) int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def load(assets: Assets | str | None = None) -> "MorphableModel":
        """Read the BFM files from the asset folder (see :func:`drtn.assets.find_assets`)."""
        if not isinstance(assets, Assets):
            assets = find_assets(assets)
        sparse_raw = load_json_asset(assets.path("bfm/landmarks68_bases_v2.json"), keys=("u_base", "w_shp_base", "w_exp_base"))
        sparse = Basis(
            mean=np.asarray(sparse_raw["u_base"], dtype=np.float64).reshape(-1),
            identity=np.asarray(sparse_raw["w_shp_base"], dtype=np.float64),
            expression=np.asarray(sparse_raw["w_exp_base"], dtype=np.float64),
        )
        dense_raw = load_pickle_asset(assets.path("bfm/Model_PAF.pkl"), keys=("mu_filter", "w_filter", "w_exp_filter"))
        dense = Basis(
            mean=np.asarray(dense_raw["mu_filter"], dtype=np.float64).reshape(-1),
            identity=np.asarray(dense_raw["w_filter"], dtype=np.float64),
            expression=np.asarray(dense_raw["w_exp_filter"], dtype=np.float64),
        )
        if np.array_equal(dense.expression, dense.identity[:, :NUM_EXP]):
            # Defect of the published file (see module docstring): rebuild the expression basis from the sparse one.
            LOGGER.debug("Model_PAF.pkl: w_exp_filter duplicates w_filter; interpolating the sparse expression basis")
            dense = Basis(dense.mean, dense.identity, interpolate_basis(sparse.mean, sparse.expression, dense.mean))
        for name, basis, points in (("landmarks68_bases_v2.json", sparse, 68), ("Model_PAF.pkl", dense, 4096)):
            if basis.mean.shape != (3 * points,) or basis.identity.shape != (3 * points, NUM_ID) or basis.expression.shape != (
                3 * points,
                NUM_EXP,
            ):
                raise ValueError(f"{name}: unexpected basis shapes {basis.mean.shape}, {basis.identity.shape}, {basis.expression.shape}")
        full = load_npy_asset(assets.path("bfm/u_shp.npy")) + load_npy_asset(assets.path("bfm/u_exp.npy"))
        indices = load_npy_asset(assets.path("bfm/indices.npy"))
        display_mean = full.reshape(-1, 3)[indices]
        triangles = np.asarray(load_pickle_asset(assets.path("bfm/tri.pkl"))).astype(np.int64)
        if triangles.shape[0] == 3:
            triangles = triangles.T
        stats = ParamStats.load(assets.path("bfm/param_mean_std_62d_120x120.pkl"))
        LOGGER.debug("loaded morphable model from %s", assets.root)
        return MorphableModel(sparse, dense, stats, display_mean, np.ascontiguousarray(triangles))

    # ---------------------------------------------------------------- numpy reconstruction
    def landmarks_model(self, params: np.ndarray) -> np.ndarray:
        """(N, 62) de-normalised -> (N, 3, 68) model-frame landmarks."""
        fp = FaceParams.from_array(np.asarray(params, dtype=np.float64))
        return project(fp.pose, self.sparse.vertices(fp.identity, fp.expression))

    def dense_model(self, params: np.ndarray) -> np.ndarray:
        """(N, 62) de-normalised -> (N, 3, 4096) model-frame dense points."""
        fp = FaceParams.from_array(np.asarray(params, dtype=np.float64))
        return project(fp.pose, self.dense.vertices(fp.identity, fp.expression))

    # ---------------------------------------------------------------- dense mesh layout
    @cached_property
    def dense_on_face(self) -> np.ndarray:
        """(4096,) bool: dense grid points that lie on the mean face surface."""
        grid = torch.as_tensor(self.dense.mean.reshape(-1, 3), dtype=torch.float32)
        surface = torch.as_tensor(self.display_mean, dtype=torch.float32)
        distance = torch.cat([torch.cdist(chunk, surface).min(dim=1).values for chunk in grid.split(512)])
        return (distance < _ON_SURFACE_TOLERANCE).numpy()

    @cached_property
    def dense_triangles(self) -> np.ndarray:
        """(T, 3) int64 triangles of the dense 64x64 grid, two per quad, on-face quads only.

        Winding is counter-clockwise seen from the front (+z) in model space.
        """
        n = DENSE_GRID
        i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
        a = (i * n + j).ravel()  # (i, j)
        b = a + n  # (i+1, j): +x
        c = a + 1  # (i, j+1): -y
        d = b + 1
        # quad corners a(x0,y0) b(x1,y0) c(x0,y1-) d(x1,y1-): CCW from +z is a, c, b then b, c, d
        triangles = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
        keep = self.dense_on_face[triangles].all(axis=1)
        return np.ascontiguousarray(triangles[keep])

    # ---------------------------------------------------------------- display mesh
    @cached_property
    def _display_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """For each display vertex: 4 nearest on-face dense points and inverse-distance weights."""
        on_face = np.flatnonzero(self.dense_on_face)
        grid = torch.as_tensor(self.dense.mean.reshape(-1, 3)[on_face], dtype=torch.float32)
        surface = torch.as_tensor(self.display_mean, dtype=torch.float32)
        neighbours, weights = [], []
        for chunk in surface.split(4096):
            distance, index = torch.cdist(chunk, grid).topk(4, largest=False)
            w = 1.0 / (distance + 1.0)
            neighbours.append(index)
            weights.append(w / w.sum(dim=1, keepdim=True))
        return on_face[torch.cat(neighbours).numpy()], torch.cat(weights).numpy().astype(np.float64)

    def display_vertices(self, params: np.ndarray) -> np.ndarray:
        """(N, 62) -> (N, 3, 38365) model-frame display mesh: mean mesh + interpolated dense deformation."""
        fp = FaceParams.from_array(np.asarray(params, dtype=np.float64))
        offsets = (fp.identity @ self.dense.identity.T + fp.expression @ self.dense.expression.T).reshape(len(fp.identity), -1, 3)
        neighbours, weights = self._display_weights
        moved = self.display_mean[None] + (offsets[:, neighbours] * weights[None, :, :, None]).sum(axis=2)
        return project(fp.pose, moved.transpose(0, 2, 1))

    # ---------------------------------------------------------------- torch
    def torch_module(self) -> "TorchMorphable":
        return TorchMorphable(self)


class TorchMorphable(torch.nn.Module):
    """Differentiable, batched reconstruction on the sparse and dense models (buffers move with ``.to``)."""

    def __init__(self, model: MorphableModel):
        super().__init__()
        self.sparse = TorchBasis(model.sparse)
        self.dense = TorchBasis(model.dense)
        self.register_buffer("param_mean", torch.as_tensor(model.stats.mean))
        self.register_buffer("param_std", torch.as_tensor(model.stats.std))

    def denormalize(self, params_normalized: torch.Tensor) -> torch.Tensor:
        return params_normalized * self.param_std + self.param_mean

    def landmarks(self, params: torch.Tensor) -> torch.Tensor:
        """(N, 62) de-normalised -> (N, 3, 68) model frame."""
        fp = FaceParams.from_array(params)
        return project(fp.pose, self.sparse.vertices(fp.identity, fp.expression))

    def dense_points(self, params: torch.Tensor) -> torch.Tensor:
        """(N, 62) de-normalised -> (N, 3, 4096) model frame."""
        fp = FaceParams.from_array(params)
        return project(fp.pose, self.dense.vertices(fp.identity, fp.expression))
