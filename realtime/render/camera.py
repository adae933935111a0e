"""Cameras: world -> clip matrices (4x4, row-major numpy; uploaded transposed) and the lighting direction.

- :class:`ImageCamera`: orthographic projection of the image frame (x right, y down, pixel centres at
  integers, larger z closer) onto a ``width x height`` viewport, for overlays on the video.
- :class:`OrbitCamera`: perspective camera orbiting a target, for the avatar view (world: x right, y up,
  z towards the default viewer, as the BFM model space).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _normalized(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


@dataclass(frozen=True)
class ImageCamera:
    """Orthographic image-space camera.

    Pixel ``(x, y)`` lands on the centre of viewport pixel ``(x, y)``: pixel ``x`` covers
    ``[x - 0.5, x + 0.5]``. Depth is mapped linearly so that the scene's largest z is nearest.
    """

    width: int
    height: int

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"ImageCamera: width and height must be positive, got {self.width}x{self.height}")

    def view_projection(self, depth_bounds: tuple[float, float] | None = None) -> np.ndarray:
        """(4, 4) float32 matrix: image pixels -> clip space.

        Args:
            depth_bounds: (min z, max z) of what is drawn; padded so nothing touches the clip planes.
        """
        z_min, z_max = depth_bounds if depth_bounds is not None else (-1.0, 1.0)
        pad = max(1e-3, 0.02 * (z_max - z_min))
        z_min, z_max = z_min - pad, z_max + pad
        depth = z_max - z_min
        w, h = float(self.width), float(self.height)
        return np.array(
            [
                [2.0 / w, 0.0, 0.0, 1.0 / w - 1.0],
                [0.0, -2.0 / h, 0.0, 1.0 - 1.0 / h],  # y down in the image, up in clip space
                [0.0, 0.0, -2.0 / depth, 1.0 + 2.0 * z_min / depth],  # z_max -> -1 (near), z_min -> +1 (far)
                [0.0, 0.0, 0.0, 1.0],
            ],
            dtype=np.float32,
        )

    def eye(self) -> np.ndarray:
        """(4,) ``(x, y, z, w)``: w = 0, direction towards the viewer (+z, larger z is closer)."""
        return np.array([0.0, 0.0, 1.0, 0.0], dtype=np.float32)

    def light_direction(self) -> np.ndarray:
        """Unit vector towards the key light: in front of the face, up (-y) and to the left (-x)."""
        return _normalized(np.array([-0.35, -0.45, 1.0], dtype=np.float32))


@dataclass
class OrbitCamera:
    """Perspective camera looking at ``target`` from ``distance`` along yaw / pitch (degrees).

    yaw = pitch = 0 looks from +z towards -z (the front of a BFM face). Mutable: the avatar widget drags it.
    """

    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    distance: float = 3.0
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    fov_y_deg: float = 35.0
    aspect: float = 1.0

    def orbit(self, delta_yaw_deg: float, delta_pitch_deg: float) -> None:
        self.yaw_deg = (self.yaw_deg + delta_yaw_deg) % 360.0
        self.pitch_deg = float(np.clip(self.pitch_deg + delta_pitch_deg, -89.0, 89.0))

    def zoom(self, factor: float) -> None:
        self.distance = float(np.clip(self.distance * factor, 0.5, 50.0))

    def eye_position(self) -> np.ndarray:
        yaw, pitch = math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        offset = np.array([math.cos(pitch) * math.sin(yaw), math.sin(pitch), math.cos(pitch) * math.cos(yaw)])
        return (np.asarray(self.target, dtype=np.float64) + self.distance * offset).astype(np.float32)

    def _basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, up, backward) unit vectors of the camera in world coordinates."""
        backward = _normalized(self.eye_position() - np.asarray(self.target, dtype=np.float32))
        right = _normalized(np.cross(np.array([0.0, 1.0, 0.0], dtype=np.float32), backward))
        up = np.cross(backward, right)
        return right, up, backward

    def view(self) -> np.ndarray:
        right, up, backward = self._basis()
        eye = self.eye_position()
        matrix = np.eye(4, dtype=np.float32)
        matrix[0, :3], matrix[1, :3], matrix[2, :3] = right, up, backward
        matrix[:3, 3] = -matrix[:3, :3] @ eye
        return matrix

    def projection(self) -> np.ndarray:
        near, far = max(1e-3, self.distance * 0.05), self.distance * 10.0
        f = 1.0 / math.tan(math.radians(self.fov_y_deg) / 2.0)
        return np.array(
            [
                [f / self.aspect, 0.0, 0.0, 0.0],
                [0.0, f, 0.0, 0.0],
                [0.0, 0.0, (far + near) / (near - far), 2.0 * far * near / (near - far)],
                [0.0, 0.0, -1.0, 0.0],
            ],
            dtype=np.float32,
        )

    def view_projection(self, depth_bounds: tuple[float, float] | None = None) -> np.ndarray:
        """(4, 4) float32 world -> clip; ``depth_bounds`` is unused (near / far follow the distance)."""
        return (self.projection() @ self.view()).astype(np.float32)

    def eye(self) -> np.ndarray:
        """(4,) eye position with w = 1 (a point: per-fragment view vectors)."""
        return np.append(self.eye_position(), np.float32(1.0)).astype(np.float32)

    def light_direction(self) -> np.ndarray:
        right, up, backward = self._basis()
        return _normalized(-0.35 * right + 0.45 * up + backward)


Camera = ImageCamera | OrbitCamera
