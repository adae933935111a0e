"""Frame sources: a webcam by index, a video file or a folder of images -> :class:`Frame` objects.

Every source is an iterable context manager::

    with open_source("clip.mp4") as source:
        for frame in source:
            ...

Failures that a user can cause give one clear exception at open time: a missing path raises
:class:`FileNotFoundError`, an unreadable or corrupt video and a missing camera raise :class:`SourceError`.
A video whose container claims more frames than decode (a truncated file) ends at the last good frame with
a warning, never an exception or a hang.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

LOGGER = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FPS = 30.0  # for image folders and cameras that report no rate


class SourceError(RuntimeError):
    """A source that exists but cannot deliver frames (corrupt video, no camera, empty folder)."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        image_bgr: (H, W, 3) uint8, BGR.
        timestamp_ms: presentation time in milliseconds from the start of the source (video: index / fps;
            camera: monotonic clock since the first frame).
        index: 0-based position in the source.
    """

    image_bgr: np.ndarray
    timestamp_ms: float
    index: int


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a contiguous (H, W, 3) uint8 BGR array.

    Accepts grayscale (H, W) or (H, W, 1), BGR (H, W, 3) and BGRA (H, W, 4) uint8 images.

    Raises:
        ValueError: wrong type, dtype, rank, channel count, or an empty image; the message names what was received.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


class FrameSource:
    """Base class: iterable over :class:`Frame`, closable, usable as a context manager.

    Attributes:
        fps: nominal frames per second (the container's rate, or :data:`DEFAULT_FPS`).
        frame_size: ``(width, height)`` of the first frame, pixels.
        description: what was opened, for messages.
    """

    fps: float = DEFAULT_FPS
    frame_size: tuple[int, int] = (0, 0)
    description: str = ""

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the underlying device or file; safe to call twice."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class VideoFileSource(FrameSource):
    """Frames of a video file decoded by OpenCV.

    Args:
        path: the video file.
        max_frames: stop after this many frames (``None``: all).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SourceError: OpenCV cannot open the file or decode its first frame (corrupt or not a video).
    """

    def __init__(self, path: str | os.PathLike, max_frames: int | None = None):
        self.path = Path(path)
        self.description = str(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            raise SourceError(f"cannot open video {self.path}: not a video OpenCV can decode, or a corrupt file")
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise SourceError(f"cannot decode any frame of {self.path}: the file is corrupt or empty")
        self._first: np.ndarray | None = first
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 1000.0 else DEFAULT_FPS
        self.claimed_frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_size = (first.shape[1], first.shape[0])
        self.max_frames = max_frames
        self.frames_read = 0

    def __iter__(self) -> Iterator[Frame]:
        if self._capture is None:
            raise SourceError(f"video {self.path} is closed")
        if self._first is None:
            raise SourceError(f"video {self.path} can be iterated once; open it again")
        image, self._first = self._first, None
        index = 0
        while image is not None:
            if self.max_frames is not None and index >= self.max_frames:
                return
            yield Frame(to_bgr(image), timestamp_ms=index * 1000.0 / self.fps, index=index)
            self.frames_read = index = index + 1
            ok, image = self._capture.read()
            if not ok:
                image = None
        if self.claimed_frame_count > self.frames_read:
            # A truncated file (e.g. obama.mp4: claims 158, decodes 55): end at the last good frame.
            LOGGER.warning(
                "%s: the container claims %d frames but only %d decoded (truncated file?); stopping at the last good frame",
                self.path,
                self.claimed_frame_count,
                self.frames_read,
            )

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class CameraSource(FrameSource):
    """Live frames from a webcam.

    Args:
        index: OpenCV camera index (0 = the default camera).
        frame_size: requested ``(width, height)``; the camera may choose another.
        max_failed_reads: consecutive failed reads after which the camera counts as gone.

    Raises:
        SourceError: no camera at ``index``, or it delivers no frame.
    """

    def __init__(self, index: int = 0, frame_size: tuple[int, int] | None = (640, 480), max_failed_reads: int = 30):
        self.index = int(index)
        self.description = f"camera {self.index}"
        self.max_failed_reads = max_failed_reads
        self._capture = cv2.VideoCapture(self.index)
        if not self._capture.isOpened():
            raise SourceError(f"no camera at index {self.index} (is one connected, and is it free?)")
        if frame_size is not None:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, frame_size[0])
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, frame_size[1])
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise SourceError(f"camera {self.index} opened but delivers no frames")
        self._first: np.ndarray | None = first
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else DEFAULT_FPS
        self.frame_size = (first.shape[1], first.shape[0])

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        image, self._first = self._first, None
        index, failures = 0, 0
        while self._capture is not None:
            if image is None:
                ok, image = self._capture.read()
                if not ok or image is None:
                    failures += 1
                    if failures >= self.max_failed_reads:
                        LOGGER.warning("camera %d stopped delivering frames", self.index)
                        return
                    image = None
                    time.sleep(0.01)
                    continue
            failures = 0
            yield Frame(to_bgr(image), timestamp_ms=(time.monotonic() - start) * 1000.0, index=index)
            index += 1
            image = None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class ImageFolderSource(FrameSource):
    """The images of a folder (or one image file), in file-name order, as a clip at ``fps``.

    Unreadable (corrupt, empty, not really an image) files are skipped with a warning naming each; the frame
    size is the first readable image's.

    Raises:
        FileNotFoundError: the path does not exist.
        SourceError: the folder holds no image, or none of its images can be decoded (the message names the
            first bad file).
    """

    def __init__(self, path: str | os.PathLike, fps: float = DEFAULT_FPS, max_frames: int | None = None):
        self.path = Path(path)
        self.description = str(self.path)
        if not self.path.exists():
            raise FileNotFoundError(f"image folder not found: {self.path}")
        if self.path.is_file():
            self.files = [self.path]
        else:
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.path}")
        self.fps = float(fps)
        self.max_frames = max_frames
        self.skipped: list[Path] = []
        first = None
        for path in self.files:
            first = self._read(path)
            if first is not None:
                break
            self.skipped.append(path)
        if first is None:
            what = (
                f"image {self.path}"
                if self.path.is_file()
                else f"any image in {self.path} ({len(self.files)} tried, first {self.files[0].name})"
            )
            raise SourceError(f"cannot decode {what}: corrupt or not an image")
        self.frame_size = (first.shape[1], first.shape[0])

    @staticmethod
    def _read(path: Path) -> np.ndarray | None:
        try:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error:  # some decoders raise on damaged data instead of returning None
            image = None
        if image is None or image.size == 0:
            LOGGER.warning("skipping unreadable image %s (corrupt or not an image)", path)
            return None
        return image

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for path in self.files:
            if self.max_frames is not None and index >= self.max_frames:
                return
            image = None if path in self.skipped else self._read(path)  # (the bad files before the first were named at open)
            if image is None:
                continue
            yield Frame(to_bgr(image), timestamp_ms=index * 1000.0 / self.fps, index=index)
            index += 1


def open_source(spec: str | int | os.PathLike, max_frames: int | None = None, fps: float = DEFAULT_FPS) -> FrameSource:
    """Open a camera (an int, or a string of digits), an image folder / image file, or a video file.

    Args:
        spec: ``0`` or ``"0"`` -> camera 0; a folder or an image file -> :class:`ImageFolderSource`;
            anything else -> :class:`VideoFileSource`.
        max_frames: stop files after this many frames.
        fps: frame rate assigned to image folders.
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return CameraSource(int(spec))
    path = Path(spec)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(path, fps=fps, max_frames=max_frames)
    return VideoFileSource(path, max_frames=max_frames)
