"""Decode ahead: a frame source read by a background thread, so decoding overlaps tracking, drawing and encoding.

OpenCV releases the GIL while it decodes, so on two or more cores the next frames are ready when the pipeline
asks for them. Used by ``drtn video`` for files and image folders (not cameras: a live source must not queue).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from realtime.sources import Frame, FrameSource

_END = object()


class PrefetchedSource(FrameSource):
    """Wraps an open :class:`realtime.sources.FrameSource`; yields the same frames in the same order.

    Args:
        source: the source to read (its ``fps``, ``frame_size`` and other attributes show through).
        depth: most frames decoded ahead (memory: ``depth`` frames; 16 x 720p BGR = 44 MB).
    Errors raised while reading are raised by the iteration, at the frame where they happened.
    """

    def __init__(self, source: FrameSource, depth: int = 16):
        if depth < 1:
            raise ValueError(f"depth: expected >= 1, got {depth}")
        self.source = source
        self.depth = depth
        self.fps, self.frame_size, self.description = source.fps, source.frame_size, source.description
        self._frames: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    def __getattr__(self, name: str):  # fps, frame_size, claimed_frame_count, max_frames, ...
        if name.startswith("_") or "source" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["source"], name)

    def start(self) -> "PrefetchedSource":
        """Begin decoding now (e.g. while the models load); iteration then starts from the frames read so far."""
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name="drtn-decode", daemon=True)
            self._reader.start()
        return self

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for frame in self.source:
                if not self._put(frame):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the consumer, raised there
            self._put(error)

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        try:
            while True:
                item = self._frames.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop_reader()

    def _stop_reader(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=5.0)

    def close(self) -> None:
        """Stop the reader, then close the source (safe to call twice)."""
        self._stop_reader()
        self.source.close()
