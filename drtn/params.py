"""The 62-parameter layout of the 3DDFA family and its normalisation.

62 = 12 pose (3x4 matrix ``[s*R | t]`` row-major) + 40 identity + 10 expression.
The pose matrix maps a model vertex ``v`` (BFM units, xyz) to the 120x120 *model frame*
``p = [s*R | t] @ [v; 1]``; :mod:`drtn.crop` maps that frame to crop and image pixels.
Euler angles follow 3DDFA: ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``, radians.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported by whoever hands us tensors; numpy-only callers (the app) never load it
    import torch

NUM_PARAMS = 62
NUM_POSE = 12  # 3x4 [s*R | t], row-major
NUM_ID = 40
NUM_EXP = 10


def torch_if_tensor(value):
    """The ``torch`` module if ``value`` is a torch tensor, else ``None`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(value, torch.Tensor) else None


POSE_SLICE = slice(0, NUM_POSE)
ID_SLICE = slice(NUM_POSE, NUM_POSE + NUM_ID)
EXP_SLICE = slice(NUM_POSE + NUM_ID, NUM_PARAMS)


def _check_last_dim(params, name: str = "params") -> None:
    if params.shape[-1] != NUM_PARAMS:
        raise ValueError(f"{name}: expected last dimension {NUM_PARAMS}, got shape {tuple(params.shape)}")


def _as_matrices(array, rows: int, cols: int, name: str) -> np.ndarray:
    """(rows, cols) or (N, rows, cols) -> (N, rows, cols) float64, or a ValueError naming the shape."""
    out = np.asarray(array, dtype=np.float64)
    if out.ndim not in (2, 3) or out.shape[-2:] != (rows, cols):
        raise ValueError(f"{name}: expected shape ({rows}, {cols}) or (N, {rows}, {cols}), got {out.shape}")
    return out.reshape(-1, rows, cols)


@dataclass(frozen=True)
class FaceParams:
    """Typed split of a batch of de-normalised 62-vectors.

    Attributes:
        pose: (N, 3, 4) ``[s*R | t]``.
        identity: (N, 40) alpha_id.
        expression: (N, 10) beta_exp.
    Works for numpy arrays and torch tensors alike.
    """

    pose: np.ndarray | torch.Tensor
    identity: np.ndarray | torch.Tensor
    expression: np.ndarray | torch.Tensor

    @staticmethod
    def from_array(params) -> "FaceParams":
        """Split (N, 62) or (62,) parameters (numpy or torch)."""
        _check_last_dim(params)
        batch = params.reshape(-1, NUM_PARAMS)
        return FaceParams(
            pose=batch[:, POSE_SLICE].reshape(-1, 3, 4),
            identity=batch[:, ID_SLICE],
            expression=batch[:, EXP_SLICE],
        )

    def to_array(self):
        """Concatenate back to (N, 62)."""
        pose = self.pose.reshape(-1, NUM_POSE)
        torch = torch_if_tensor(pose)
        if torch is not None:
            return torch.cat([pose, self.identity, self.expression], dim=1)
        return np.concatenate([pose, self.identity, self.expression], axis=1)

    @property
    def rotation_scaled(self):
        """(N, 3, 3) ``s * R``."""
        return self.pose[:, :, :3]

    @property
    def translation(self):
        """(N, 3) ``t`` in the model frame (pixels of the 120x120 frame for x, y)."""
        return self.pose[:, :, 3]


@dataclass(frozen=True)
class ParamStats:
    """Per-parameter mean and std (62,) used to (de-)normalise network outputs."""

    mean: np.ndarray
    std: np.ndarray

    @staticmethod
    def load(path: str | Path) -> "ParamStats":
        from drtn.assets import load_pickle_asset

        stats = load_pickle_asset(path, keys=("mean", "std"))
        mean = np.asarray(stats["mean"], dtype=np.float32).reshape(-1)
        std = np.asarray(stats["std"], dtype=np.float32).reshape(-1)
        if mean.shape != (NUM_PARAMS,) or std.shape != (NUM_PARAMS,):
            raise ValueError(f"{path}: expected mean/std of shape (62,), got {mean.shape} / {std.shape}")
        return ParamStats(mean, std)

    def normalize(self, params):
        _check_last_dim(params)
        torch = torch_if_tensor(params)
        if torch is not None:
            return (params - torch.as_tensor(self.mean, device=params.device, dtype=params.dtype)) / torch.as_tensor(
                self.std, device=params.device, dtype=params.dtype
            )
        return (params - self.mean) / self.std

    def denormalize(self, params_normalized):
        _check_last_dim(params_normalized)
        torch = torch_if_tensor(params_normalized)
        if torch is not None:
            device, dtype = params_normalized.device, params_normalized.dtype
            return params_normalized * torch.as_tensor(self.std, device=device, dtype=dtype) + torch.as_tensor(
                self.mean, device=device, dtype=dtype
            )
        return params_normalized * self.std + self.mean


def euler_to_rotation(pitch, yaw, roll) -> np.ndarray:
    """Rotation matrices ``Rx(pitch) @ Ry(yaw) @ Rz(roll)`` (3DDFA convention).

    Args:
        pitch, yaw, roll: radians, scalars or (N,) arrays.
    Returns:
        (N, 3, 3) float64.
    """
    pitch, yaw, roll = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (pitch, yaw, roll))
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cz, sz = np.cos(roll), np.sin(roll)
    n = np.broadcast(pitch, yaw, roll).shape[0]
    one, zero = np.ones(n), np.zeros(n)
    rx = np.stack([one, zero, zero, zero, cx, sx, zero, -sx, cx], -1).reshape(n, 3, 3)
    ry = np.stack([cy, zero, -sy, zero, one, zero, sy, zero, cy], -1).reshape(n, 3, 3)
    rz = np.stack([cz, sz, zero, -sz, cz, zero, zero, zero, one], -1).reshape(n, 3, 3)
    return rx @ ry @ rz


def rotation_to_euler(rotation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_to_rotation`.

    Args:
        rotation: (N, 3, 3) or (3, 3) orthonormal matrices.
    Returns:
        (N, 3) ``[pitch, yaw, roll]`` in radians; yaw in [-pi/2, pi/2].
    """
    r = _as_matrices(rotation, 3, 3, "rotation")
    # R = Rx Ry Rz  =>  R[0,2] = -sin(yaw), R[0,0] = cy*cz, R[0,1] = cy*sz, R[1,2] = sx*cy, R[2,2] = cx*cy
    yaw = np.arcsin(np.clip(-r[:, 0, 2], -1.0, 1.0))
    pitch = np.arctan2(r[:, 1, 2], r[:, 2, 2])
    roll = np.arctan2(r[:, 0, 1], r[:, 0, 0])
    return np.stack([pitch, yaw, roll], axis=1)


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion ``(w, x, y, z)`` with ``w >= 0`` (Shepperd's method)."""
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3):
        raise ValueError(f"rotation_to_quaternion: expected a (3, 3) matrix, got shape {r.shape}")
    trace = np.trace(r)
    candidates = np.array([trace, r[0, 0], r[1, 1], r[2, 2]])
    k = int(np.argmax(candidates))
    if k == 0:
        w = np.sqrt(1.0 + trace) / 2
        q = np.array([w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)])
    else:
        i = k - 1
        j, m = (i + 1) % 3, (i + 2) % 3
        s = np.sqrt(1.0 + r[i, i] - r[j, j] - r[m, m]) * 2  # s = 4 * q_i
        q = np.empty(4)
        q[0] = (r[m, j] - r[j, m]) / s
        q[1 + i] = s / 4
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + m] = (r[m, i] + r[i, m]) / s
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def quaternion_to_rotation(quaternion_wxyz: np.ndarray) -> np.ndarray:
    """(4,) ``(w, x, y, z)`` -> (3, 3) rotation (the quaternion is normalised first)."""
    w, x, y, z = np.asarray(quaternion_wxyz, dtype=np.float64) / np.linalg.norm(quaternion_wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def decompose_pose(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``[s*R | t]`` into scale, an orthonormal rotation and translation.

    Args:
        pose: (N, 3, 4) or (3, 4).
    Returns:
        scale (N,), rotation (N, 3, 3) (nearest orthonormal, det +1), translation (N, 3).
    """
    pose = _as_matrices(pose, 3, 4, "pose")
    scaled = pose[:, :, :3]
    u, singular, vt = np.linalg.svd(scaled)
    scale = singular.mean(axis=1)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones((pose.shape[0], 3))
    fix[:, 2] = d
    rotation = (u * fix[:, None, :]) @ vt
    return scale, rotation, pose[:, :, 3]


def compose_pose(scale, rotation, translation) -> np.ndarray:
    """(N,), (N,3,3), (N,3) -> (N, 3, 4) ``[s*R | t]``."""
    rotation = _as_matrices(rotation, 3, 3, "rotation")
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 1, 1)
    translation = np.asarray(translation, dtype=np.float64)
    if translation.shape[-1:] != (3,) or translation.ndim > 2:
        raise ValueError(f"translation: expected shape (3,) or (N, 3), got {translation.shape}")
    translation = translation.reshape(-1, 3, 1)
    if rotation.shape[0] != translation.shape[0] or scale.shape[0] not in (1, rotation.shape[0]):
        raise ValueError(
            f"compose_pose: batch sizes differ: scale {scale.shape[0]}, rotation {rotation.shape[0]}, "
            f"translation {translation.shape[0]}"
        )
    return np.concatenate([scale * rotation, translation], axis=2)


def pose_angles_degrees(params) -> np.ndarray:
    """(N, 62) de-normalised params -> (N, 3) ``[yaw, pitch, roll]`` in degrees.

    Yaw is positive when the subject turns to the image's left side in the 3DDFA convention.
    """
    fp = FaceParams.from_array(np.asarray(params))
    _, rotation, _ = decompose_pose(fp.pose)
    pitch, yaw, roll = rotation_to_euler(rotation).T
    return np.degrees(np.stack([yaw, pitch, roll], axis=1))
