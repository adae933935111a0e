"""Crash-safe video writing: fragmented MP4 with H.264 through PyAV, OpenCV's ``mp4v`` writer as the fallback.

::

    from realtime.writer import open_video_writer

    with open_video_writer("out.mp4", fps=30.0, size=(640, 480)) as writer:
        for image_bgr in frames:          # (480, 640, 3) uint8 BGR
            writer.write(image_bgr)
    # writer.frames, writer.backend ("pyav-h264" or "opencv-mp4v")

Why fragmented: a plain MP4 keeps its index (``moov``) at the end, so a process killed before ``close()``
leaves an unplayable file. With ``movflags=frag_keyframe+empty_moov+default_base_moof`` the index comes first
and the frames follow in self-contained fragments, one per keyframe; a keyframe is forced every
:data:`KEYFRAME_SECONDS`, and x264 runs with ``tune=zerolatency`` (no frames held back in a look-ahead), so a
hard kill (SIGKILL, power loss after the page cache is written) loses at most the last second. The result is
H.264 (``yuv420p``), which browsers and every player decode.

H.264 in 4:2:0 needs even frame sizes: an odd width or height is padded by one edge pixel (the written
size is :attr:`VideoWriter.size`).

Write failures (a full disk: ``ENOSPC``) raise :class:`VideoWriteError` at the frame that failed, naming
the file; the file is cut back to its last whole fragment, so what was written stays playable and decodes
without errors.

The OpenCV fallback (used when PyAV or its ``libx264`` encoder is missing, with a warning) writes ``mp4v``
in a plain MP4: not crash-safe and not playable in browsers.
"""
from __future__ import annotations

import errno
import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger(__name__)

KEYFRAME_SECONDS = 1.0  # a keyframe, hence an MP4 fragment on disk, at least this often
FRAGMENTED_MP4_FLAGS = "frag_keyframe+empty_moov+default_base_moof"
H264_CRF = 20  # x264 constant quality (lower = better; 18-23 is visually near-lossless to good)
PYAV_BACKEND = "pyav-h264"
OPENCV_BACKEND = "opencv-mp4v"


class VideoWriteError(OSError):
    """The video file cannot be opened or a frame cannot be written (full disk, unwritable path)."""


def pyav_h264_available() -> bool:
    """Whether PyAV is installed with the ``libx264`` encoder (its wheels bundle it)."""
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "no space left on the device (disk full)"
    return str(error) or type(error).__name__


class VideoWriter:
    """An open video file; frames are BGR uint8 arrays of the size given at open time.

    Use :func:`open_video_writer` (or the constructor) as a context manager; :meth:`close` finishes the file
    and is safe to call twice.

    Args:
        path: the file to write (``.mp4``, ``.m4v`` or ``.mov``); its folder must exist.
        fps: frames per second (> 0).
        size: ``(width, height)`` in pixels of the frames given to :meth:`write`.
        backend: ``"auto"`` (PyAV H.264 when available, else OpenCV with a warning), ``"pyav"`` or ``"opencv"``.

    Raises:
        ValueError: a bad ``fps`` / ``size`` / ``backend``.
        VideoWriteError: the file cannot be created.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], backend: str = "auto"):
        self.path = Path(path)
        width, height = (int(v) for v in size)
        if width < 1 or height < 1:
            raise ValueError(f"video size must be positive, got {width}x{height} for {self.path}")
        if not (np.isfinite(fps) and 0 < fps <= 1000):
            raise ValueError(f"video fps must be in (0, 1000], got {fps} for {self.path}")
        if backend not in ("auto", "pyav", "opencv"):
            raise ValueError(f"video writer backend: expected auto, pyav or opencv, got {backend!r}")
        self.input_size = (width, height)
        self.fps = float(fps)
        self.frames = 0
        self._container = self._stream = self._cv_writer = None
        self._closed = False
        self._good_bytes = 0  # file size after the last frame fully handed to the disk
        self._failed = False
        if backend == "pyav" or (backend == "auto" and pyav_h264_available()):
            self._open_pyav()
        else:
            if backend == "auto":
                LOGGER.warning("PyAV with libx264 is not available (pip install av): writing %s with OpenCV mp4v, which a hard kill leaves unplayable and browsers do not play", self.path)
            self._open_opencv()

    # ------------------------------------------------------------------------------------------ opening
    def _open_pyav(self) -> None:
        import av

        width, height = self.input_size
        self.size = (width + width % 2, height + height % 2)
        try:
            open(self.path, "wb").close()  # FFmpeg opens the file lazily: fail here, at open time, if it cannot be created
            self._container = av.open(str(self.path), mode="w", format="mp4", container_options={"movflags": FRAGMENTED_MP4_FLAGS, "flush_packets": "1"})
        except (OSError, av.FFmpegError) as error:
            raise VideoWriteError(f"cannot create video {self.path}: {_describe(error)}") from error
        rate = Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self.size
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.gop_size = max(1, round(self.fps * KEYFRAME_SECONDS))
        self._stream.options = {"crf": str(H264_CRF), "preset": "veryfast", "tune": "zerolatency"}
        self.backend = PYAV_BACKEND

    def _open_opencv(self) -> None:
        import cv2

        self.size = self.input_size
        self._cv_writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not self._cv_writer.isOpened():
            raise VideoWriteError(f"cannot create video {self.path} (OpenCV mp4v, {self.size[0]}x{self.size[1]} at {self.fps} fps)")
        self.backend = OPENCV_BACKEND

    # ------------------------------------------------------------------------------------------ writing
    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame of the size given at open time.

        Raises:
            ValueError: wrong shape or dtype, or the writer is closed.
            VideoWriteError: the frame could not be written (e.g. the disk is full).
        """
        if self._closed:
            raise ValueError(f"video writer for {self.path} is closed")
        width, height = self.input_size
        if not isinstance(frame_bgr, np.ndarray) or frame_bgr.dtype != np.uint8 or frame_bgr.shape != (height, width, 3):
            got = f"{frame_bgr.dtype} {frame_bgr.shape}" if isinstance(frame_bgr, np.ndarray) else type(frame_bgr).__name__
            raise ValueError(f"video {self.path}: expected a ({height}, {width}, 3) uint8 BGR frame, got {got}")
        if self._cv_writer is not None:
            self._cv_writer.write(frame_bgr)
            self.frames += 1
            return
        import av

        if self.size != self.input_size:  # odd size: pad one edge pixel for 4:2:0
            frame_bgr = np.pad(frame_bgr, ((0, self.size[1] - height), (0, self.size[0] - width), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
        frame.pts = self.frames
        if self._failed:
            raise VideoWriteError(f"cannot write frame {self.frames} to {self.path}: an earlier write failed")
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (OSError, av.FFmpegError) as error:
            self._fail()
            raise VideoWriteError(f"cannot write frame {self.frames} to {self.path}: {_describe(error)}") from error
        self.frames += 1
        self._good_bytes = os.path.getsize(self.path)  # packets are flushed as muxed: whole fragments only

    def _fail(self) -> None:
        """After a failed write: cut the file back to its last whole fragment, so it stays clean to decode."""
        self._failed = True
        try:
            os.truncate(self.path, self._good_bytes)
        except OSError:
            LOGGER.warning("could not cut %s back to its last whole fragment", self.path)

    def close(self) -> None:
        """Flush the encoder and finish the file (safe to call twice).

        Raises:
            VideoWriteError: the last frames could not be written (the file still holds the earlier fragments).
        """
        if self._closed:
            return
        self._closed = True
        if self._cv_writer is not None:
            self._cv_writer.release()
            return
        import av

        if self._failed:  # the disk refused a write: close without writing more, keep the whole fragments
            try:
                self._container.close()
            except (OSError, av.FFmpegError):
                pass
            self._fail()
            return
        try:
            try:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            finally:
                self._container.close()
        except (OSError, av.FFmpegError) as error:
            self._fail()
            raise VideoWriteError(f"cannot finish video {self.path}: {_describe(error)}") from error
        finally:
            # FFmpeg does not report every failed write at close (a disk that filled up meanwhile): check the boxes
            if self.path.exists():
                trim_to_whole_boxes(self.path)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:  # already failing: close what can be closed, keep the original error
            try:
                self.close()
            except Exception as error:  # noqa: BLE001 - the first error is the one to report
                LOGGER.warning("%s", error)


def trim_to_whole_boxes(path: str | os.PathLike) -> int:
    """Cut an MP4 back to its last whole top-level box, so a file whose last write failed half-way (a full
    disk) decodes without errors; a fragment whose ``mdat`` is cut off loses its ``moof`` too. Only the box
    headers are read. Returns the bytes removed.
    """
    path = Path(path)
    size = path.stat().st_size
    offset, previous = 0, (0, b"")  # previous: (start, type) of the last whole box
    with open(path, "rb") as handle:
        while offset < size:
            handle.seek(offset)
            header = handle.read(16)
            if len(header) < 8:
                break
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if length == 1:
                length = int.from_bytes(header[8:16], "big") if len(header) == 16 else 0
            elif length == 0:  # "to the end of the file"
                length = size - offset
            if length < 8 or offset + length > size:
                break
            previous, offset = (offset, kind), offset + length
    if offset >= size:
        return 0
    cut = previous[0] if previous[1] == b"moof" else offset  # a moof without its whole mdat goes too
    os.truncate(path, cut)
    LOGGER.debug("%s: cut %d bytes of an incomplete last fragment (a write failed)", path, size - cut)
    return size - cut


def open_video_writer(path: str | os.PathLike, fps: float, size: tuple[int, int], backend: str = "auto") -> VideoWriter:
    """Open ``path`` for writing ``size = (width, height)`` BGR frames at ``fps``; see :class:`VideoWriter`."""
    return VideoWriter(path, fps, size, backend)
