"""Torch versions of the morphable model (:mod:`drtn.morphable`), for differentiable, batched reconstruction in
training and losses. Kept apart so that inference (numpy + ONNX Runtime) never imports torch."""

from __future__ import annotations

import torch

from drtn.morphable import Basis, MorphableModel, project
from drtn.params import FaceParams


class TorchBasis(torch.nn.Module):
    """Torch version of :class:`drtn.morphable.Basis` with buffers, for differentiable reconstruction."""

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
