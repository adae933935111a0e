"""Synthetic tracking scenes with exact ground truth, made from held-out annotated photos.

Every face is a patch of a held-out 300W photo (HELEN test set, AFW; never a training face: see
``training/datasets.py`` for the splits) cut out with a soft elliptical mask around its 68 annotated landmarks.
Each frame places the patch with a smooth, time-varying homography (translation, zoom, in-plane roll and a
perspective "turn"), so the landmarks transform exactly with it. Two kinds of scene:

- *moving*: one face filmed by a moving camera over a textured background, at a given speed (peak speed of the
  face in face sizes per second: 0 = a still head ... 4 = a fast turn), 640x480.
- *multi*: several faces entering and leaving, crossing and occluding each other, changing scale, plus non-face
  distractors (dark blobs, textures, stripes) on the background; 640x480 and 1280x720.

Everything is seeded: the same arguments give the same frames. Frames are generated lazily, one at a time.

Ground truth per frame and face (:class:`FaceTruth`): landmarks (68, 2) image pixels (also where hidden),
``visible`` = fraction of the landmarks inside the frame and not covered by a face in front.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

LOGGER = logging.getLogger(__name__)

HELD_OUT_FOLDERS = ("300w/helen_testset", "300w/afw")  # held out from training (training/datasets.py)
SPEEDS = {"still": 0.0, "slow": 0.5, "medium": 1.5, "fast": 4.0}  # peak face sizes per second
FPS = 30.0
PATCH_FACE = 110.0  # landmark-box side of a face in its patch, pixels
PATCH_SIDE = 256  # the patch is square: face + margin


@dataclass(frozen=True)
class HeldOutFace:
    """A face patch: ``image`` (S, S, 3) uint8 BGR, ``alpha`` (S, S) float32 in [0, 1], ``landmarks`` (68, 2)."""

    image: np.ndarray
    alpha: np.ndarray
    landmarks: np.ndarray
    name: str


@dataclass(frozen=True)
class FaceTruth:
    """One face in one frame: ``face_id`` (stable over the scene), ``landmarks`` (68, 2) image pixels,
    ``visible`` in [0, 1] (fraction of landmarks in the frame and not covered by a face in front)."""

    face_id: int
    landmarks: np.ndarray
    visible: float

    @property
    def size(self) -> float:
        """Face size, pixels: sqrt(width * height) of the landmark box (the NME normaliser)."""
        lo, hi = self.landmarks.min(axis=0), self.landmarks.max(axis=0)
        return float(math.sqrt(max(hi[0] - lo[0], 1e-6) * max(hi[1] - lo[1], 1e-6)))


def default_data_dir(assets_dir: str | None = None) -> Path:
    """``$DRTN_SHARED/data``, else ``data`` beside the asset folder (the shared layout)."""
    from drtn.assets import resolve_asset_dir

    shared = os.environ.get("DRTN_SHARED")
    return (Path(shared) if shared else resolve_asset_dir(assets_dir).parent) / "data"


def _read_pts(path: Path) -> np.ndarray:
    body = path.read_text().split("{", 1)[1].split("}", 1)[0]
    return np.array(body.split(), dtype=np.float64).reshape(-1, 2)


def load_held_out_faces(data_dir: str | Path, count: int, seed: int = 0, min_face_px: float = 90.0) -> list[HeldOutFace]:
    """``count`` face patches from the held-out 300W folders (seeded choice among faces >= ``min_face_px``).

    Raises:
        FileNotFoundError: the held-out folders are missing.
    """
    root = Path(data_dir)
    files = []
    for folder in HELD_OUT_FOLDERS:
        files += sorted((root / folder).glob("*.pts"))
    if not files:
        raise FileNotFoundError(f"no held-out faces under {root} (expected {', '.join(HELD_OUT_FOLDERS)}; pass --data)")
    rng = np.random.default_rng(seed)
    faces: list[HeldOutFace] = []
    for index in rng.permutation(len(files)):
        pts = files[index]
        image_path = next((pts.with_suffix(ext) for ext in (".jpg", ".png") if pts.with_suffix(ext).is_file()), None)
        if image_path is None:
            continue
        landmarks = _read_pts(pts)
        if len(landmarks) != 68:
            continue
        lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
        if (hi - lo).max() < min_face_px:
            continue
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        faces.append(_cut_patch(image, landmarks, pts.stem))
        if len(faces) == count:
            break
    if len(faces) < count:
        raise FileNotFoundError(f"only {len(faces)} held-out faces of >= {min_face_px} px under {root}, {count} asked")
    return faces


def _cut_patch(image: np.ndarray, landmarks: np.ndarray, name: str) -> HeldOutFace:
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    scale = PATCH_FACE / (hi - lo).max()
    center = (lo + hi) / 2 - np.array([0.0, 0.1 * (hi - lo)[1]])  # a little above: the forehead
    matrix = np.array([[scale, 0, PATCH_SIDE / 2 - scale * center[0]], [0, scale, PATCH_SIDE / 2 - scale * center[1]]])
    patch = cv2.warpAffine(image, matrix, (PATCH_SIDE, PATCH_SIDE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    points = landmarks @ matrix[:, :2].T + matrix[:, 2]
    size = (points.max(axis=0) - points.min(axis=0)) * np.array([1.35, 1.6]) / 2
    mid = (points.max(axis=0) + points.min(axis=0)) / 2 - np.array([0.0, 0.12 * size[1]])
    alpha = np.zeros((PATCH_SIDE, PATCH_SIDE), np.float32)
    cv2.ellipse(alpha, (int(round(mid[0])), int(round(mid[1]))), (int(size[0]), int(size[1])), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 6.0)
    return HeldOutFace(patch, alpha, points, name)


# ------------------------------------------------------------------------------------------ backgrounds
def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A face-free textured background: smooth colour noise, a gradient, a few rectangles and stripes."""
    low = rng.uniform(40, 215, size=(max(height // 80, 2), max(width // 80, 2), 3)).astype(np.float32)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 6, size=(height, width, 3)).astype(np.float32)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 12, width // 3)), int(rng.integers(height // 12, height // 3))
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), tuple(float(v) for v in rng.uniform(20, 235, 3)), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_distractors(image: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Non-face distractors in place: dark blobs (the upside-down 'faces' of the issue), textures, stripes."""
    height, width = image.shape[:2]
    for index in range(count):
        kind = index % 3
        cx, cy = int(rng.integers(width // 10, width * 9 // 10)), int(rng.integers(height // 10, height * 9 // 10))
        radius = int(rng.integers(min(width, height) // 14, min(width, height) // 6))
        mask = np.zeros((height, width), np.float32)
        if kind == 0:  # dark blob with two darker holes (eye-like) below a bright band
            cv2.ellipse(mask, (cx, cy), (radius, int(radius * 1.3)), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), radius / 5)[..., None]
            layer = np.full_like(image, int(rng.integers(5, 40)))
            for dx in (-radius // 3, radius // 3):
                cv2.circle(layer, (cx + dx, cy + radius // 4), max(radius // 6, 2), (0, 0, 0), -1)
        elif kind == 1:  # noise texture
            cv2.circle(mask, (cx, cy), radius, 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), 3)[..., None]
            small = rng.uniform(0, 255, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
            layer = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
        else:  # stripes, skin-coloured
            cv2.rectangle(mask, (cx - radius, cy - radius), (cx + radius, cy + radius), 1.0, -1)
            mask = mask[..., None]
            ys = np.arange(height)[:, None, None]
            layer = np.where((ys // max(radius // 4, 2)) % 2 == 0, np.array([120, 150, 200]), np.array([60, 80, 110])).astype(
                np.uint8
            )
            layer = np.broadcast_to(layer, image.shape)
        image[:] = (image * (1 - mask) + layer * mask).astype(np.uint8)


# ------------------------------------------------------------------------------------------ motion
def _placement(center_xy, scale: float, roll_rad: float, turn: tuple[float, float]) -> np.ndarray:
    """3x3 homography from patch pixels to image pixels: perspective turn, zoom, roll, then translation."""
    c = PATCH_SIDE / 2
    to_center = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]])
    perspective = np.array([[1, 0, 0], [0, 1, 0], [turn[0] / PATCH_FACE, turn[1] / PATCH_FACE, 1.0]])
    cos, sin = math.cos(roll_rad), math.sin(roll_rad)
    similarity = np.array([[scale * cos, -scale * sin, center_xy[0]], [scale * sin, scale * cos, center_xy[1]], [0, 0, 1.0]])
    return similarity @ perspective @ to_center


def _apply(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = np.c_[points, np.ones(len(points))] @ homography.T
    return mapped[:, :2] / mapped[:, 2:3]


@dataclass
class _Actor:
    face: HeldOutFace
    face_id: int
    depth: float  # larger = in front
    start: int
    stop: int
    path: np.ndarray  # (3, 2) start, middle, end image positions
    face_px: tuple[float, float]  # landmark-box side at start and end
    roll: tuple[float, float, float]  # amplitude (rad), frequency (Hz), phase
    turn: tuple[float, float, float]  # amplitude, frequency (Hz), phase

    def homography(self, frame: int) -> np.ndarray:
        u = (frame - self.start) / max(self.stop - self.start - 1, 1)
        s = u * u * (3 - 2 * u)  # smoothstep: at rest at both ends of the path
        a, b, c = self.path
        center = (1 - s) ** 2 * a + 2 * (1 - s) * s * b + s * s * c
        scale = (self.face_px[0] * (1 - u) + self.face_px[1] * u) / PATCH_FACE
        t = frame / FPS
        roll = self.roll[0] * math.sin(2 * math.pi * self.roll[1] * t + self.roll[2])
        turn = self.turn[0] * math.sin(2 * math.pi * self.turn[1] * t + self.turn[2])
        return _placement(center, scale, roll, (turn, 0.3 * turn))


@dataclass(frozen=True)
class SceneFrame:
    image: np.ndarray
    truths: list[FaceTruth]
    index: int

    @property
    def timestamp_ms(self) -> float:
        return (self.index + 1) * 1000.0 / FPS


class Scene:
    """A generated clip: ``name``, ``kind`` (``moving`` / ``multi``), ``size`` (width, height), ``frames``;
    iterate for :class:`SceneFrame` (rendered lazily)."""

    def __init__(
        self,
        name: str,
        kind: str,
        size: tuple[int, int],
        frames: int,
        background: np.ndarray,
        actors: list[_Actor],
        camera=None,
        speed: float = 0.0,
    ):
        self.name, self.kind, self.size, self.frames = name, kind, size, frames
        self.speed = speed
        self._background = background
        self._actors = sorted(actors, key=lambda a: a.depth)  # back to front
        self._camera = camera  # frame -> 3x3 homography applied to the background and every face (moving scenes)

    def __len__(self) -> int:
        return self.frames

    def render(self, index: int) -> SceneFrame:
        width, height = self.size
        camera = self._camera(index) if self._camera is not None else np.eye(3)
        if self._camera is not None:
            image = cv2.warpPerspective(
                self._background, camera, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
            )
        else:
            image = self._background.copy()
        image = image.astype(np.float32)
        placed = []
        for actor in self._actors:
            if not actor.start <= index < actor.stop:
                continue
            homography = camera @ actor.homography(index)
            corners = _apply(
                homography, np.array([[0, 0], [PATCH_SIDE, 0], [0, PATCH_SIDE], [PATCH_SIDE, PATCH_SIDE]], np.float64)
            )
            x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - 1, 0, [width, height])
            x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 0, [width, height])
            alpha = np.zeros((height, width), np.float32)
            if x1 > x0 and y1 > y0:  # warp only the patch's bounding box
                shifted = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]]) @ homography
                patch = cv2.warpPerspective(
                    actor.face.image, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
                )
                alpha[y0:y1, x0:x1] = cv2.warpPerspective(
                    actor.face.alpha, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
                )
                a = alpha[y0:y1, x0:x1, None]
                image[y0:y1, x0:x1] = image[y0:y1, x0:x1] * (1 - a) + patch.astype(np.float32) * a
            placed.append((actor, _apply(homography, actor.face.landmarks), alpha))
        truths = []
        for position, (actor, points, _) in enumerate(placed):
            inside = (points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) & (points[:, 1] <= height - 1)
            covered = np.zeros(len(points), bool)
            xs = np.clip(np.round(points[:, 0]).astype(int), 0, width - 1)
            ys = np.clip(np.round(points[:, 1]).astype(int), 0, height - 1)
            for _, _, alpha in placed[position + 1 :]:
                covered |= alpha[ys, xs] > 0.5
            visible = float(np.mean(inside & ~covered))
            truths.append(FaceTruth(actor.face_id, points.astype(np.float64), visible))
        truths.sort(key=lambda t: t.face_id)
        return SceneFrame(np.clip(image, 0, 255).astype(np.uint8), truths, index)

    def __iter__(self):
        for index in range(self.frames):
            yield self.render(index)


def moving_scene(
    face: HeldOutFace, speed: float, seed: int, frames: int = 60, size: tuple[int, int] = (640, 480), name: str = ""
) -> Scene:
    """One face filmed by a smoothly moving camera; ``speed``: peak face sizes per second (0 = still)."""
    rng = np.random.default_rng(seed)
    width, height = size
    face_px = float(rng.uniform(0.28, 0.36) * height)
    background = make_background(rng, width * 2, height * 2)
    margin = np.array([width / 2, height / 2])
    actor = _Actor(
        face,
        0,
        1.0,
        0,
        frames,
        np.stack([margin + np.array([width / 2, height / 2])] * 3),
        (face_px, face_px),
        (0, 0, 0),
        (0, 0, 0),
    )
    frequency = float(rng.uniform(0.5, 0.8))  # Hz
    phases = rng.uniform(0, 2 * math.pi, 5)
    amplitude_px = speed * face_px / (2 * math.pi * frequency)  # peak translation speed = speed face sizes / s
    roll_amplitude = min(speed * 0.12, 0.5)  # rad
    turn_amplitude = min(speed * 0.05, 0.18)  # perspective units: ~ up to a 35 degree keystone turn
    zoom_amplitude = min(speed * 0.06, 0.2)

    def camera(index: int) -> np.ndarray:
        t = index / FPS
        w = 2 * math.pi * frequency * t
        dx = amplitude_px * math.sin(w + phases[0])
        dy = 0.6 * amplitude_px * math.sin(1.3 * w + phases[1])
        zoom = math.exp(zoom_amplitude * math.sin(0.7 * w + phases[2]))
        roll = roll_amplitude * math.sin(w + phases[3])
        turn = turn_amplitude * math.sin(1.1 * w + phases[4])
        cos, sin = math.cos(roll), math.sin(roll)
        # about the face (the world centre): perspective turn, zoom and roll, then the shift into the frame
        c = margin + np.array([width / 2, height / 2])
        to_c = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1.0]])
        persp = np.array([[1, 0, 0], [0, 1, 0], [turn / face_px, 0.3 * turn / face_px, 1.0]])
        sim = np.array([[zoom * cos, -zoom * sin, width / 2 + dx], [zoom * sin, zoom * cos, height / 2 + dy], [0, 0, 1.0]])
        return sim @ persp @ to_c

    return Scene(name or f"moving-{speed:g}", "moving", size, frames, background, [actor], camera=camera, speed=speed)


def multi_face_scene(
    faces: list[HeldOutFace],
    seed: int,
    frames: int = 120,
    size: tuple[int, int] = (1280, 720),
    distractors: int = 5,
    name: str = "",
    face_range: tuple[float, float] = (0.10, 0.42),
) -> Scene:
    """Several faces entering, leaving, crossing (the one in front occludes), changing scale, on a background
    with non-face distractors; face sizes (landmark box side) in ``face_range`` of the frame height."""
    rng = np.random.default_rng(seed)
    width, height = size
    background = make_background(rng, width, height)
    draw_distractors(background, rng, distractors)
    actors = []
    lane_y = np.linspace(0.3, 0.7, len(faces))
    for face_id, face in enumerate(faces):
        small, large = face_range[0] * height, face_range[1] * height
        face_px = (float(rng.uniform(small, large)), float(rng.uniform(small, large)))
        kind = face_id % 3
        if kind == 0:  # crosses the frame left to right (enters and leaves)
            start, stop = int(rng.integers(0, frames // 4)), frames
            ys = lane_y[face_id] * height
            path = np.array([[-0.15 * width, ys], [0.5 * width, ys + rng.uniform(-0.1, 0.1) * height], [1.15 * width, ys]])
        elif kind == 1:  # crosses right to left, in front of the others
            start, stop = 0, int(rng.integers(frames * 3 // 4, frames + 1))
            ys = lane_y[face_id] * height
            path = np.array([[1.1 * width, ys], [0.5 * width, ys], [-0.1 * width, ys + rng.uniform(-0.1, 0.1) * height]])
        else:  # appears in the frame, drifts and zooms, disappears (a cut)
            start = int(rng.integers(frames // 6, frames // 3))
            stop = int(rng.integers(frames * 2 // 3, frames))
            a = rng.uniform([0.2, 0.25], [0.8, 0.75]) * (width, height)
            path = np.array([a, a + rng.uniform(-0.08, 0.08, 2) * width, a + rng.uniform(-0.15, 0.15, 2) * width])
        actors.append(
            _Actor(
                face,
                face_id,
                float(face_id % 3 == 1) + rng.uniform(0, 0.5),
                start,
                stop,
                path,
                face_px,
                (float(rng.uniform(0, 0.3)), float(rng.uniform(0.2, 0.6)), float(rng.uniform(0, 6))),
                (float(rng.uniform(0, 0.15)), float(rng.uniform(0.2, 0.5)), float(rng.uniform(0, 6))),
            )
        )
    return Scene(name or f"multi-{width}x{height}", "multi", size, frames, background, actors)


def standard_scenes(data_dir: str | Path, scale: str = "full", seed: int = 0) -> list[Scene]:
    """The benchmark's scenes: ``scale`` ``"full"`` (the README table) or ``"tiny"`` (tests: few short clips)."""
    if scale not in ("full", "tiny"):
        raise ValueError(f"scale: expected 'full' or 'tiny', got {scale!r}")
    tiny = scale == "tiny"
    per_speed = 1 if tiny else 3
    multi_per_size = 1 if tiny else 2
    faces = load_held_out_faces(data_dir, len(SPEEDS) * per_speed + 4 * 2 * multi_per_size, seed=seed)
    scenes, used = [], 0
    for speed_name, speed in SPEEDS.items():
        for repeat in range(per_speed):
            scenes.append(
                moving_scene(
                    faces[used], speed, seed=seed * 1000 + used, frames=24 if tiny else 60, name=f"moving-{speed_name}-{repeat}"
                )
            )
            used += 1
    for size in ((640, 480), (1280, 720)):
        for repeat in range(multi_per_size):
            count = 3 if size[0] == 640 else 4
            scenes.append(
                multi_face_scene(
                    faces[used : used + count],
                    seed=seed * 1000 + used,
                    frames=40 if tiny else 120,
                    size=size,
                    name=f"multi-{size[0]}x{size[1]}-{repeat}",
                )
            )
            used += count
    return scenes
