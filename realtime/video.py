"""Headless processing: a video (or image folder) in, an annotated video and per-face JSON records out.

``main.py video IN -o OUT.mp4 --records OUT.jsonl`` calls :func:`run_video`. The video is written with
OpenCV's ``mp4v`` encoder and released in a ``finally`` block, and the records are flushed after every frame,
so Ctrl-C (or SIGTERM, or a crash) mid-file leaves a playable video of the frames done and a JSONL file whose
every line is a complete record. Ctrl-C and SIGTERM let the current frame finish first, so the video and the
records hold the same frames (a second Ctrl-C stops at once). A hard kill (SIGKILL) cannot be caught: the mp4
index is then missing.

One record per face per frame, JSONL or CSV, with a schema version and the source's name, size and frame rate:
see :mod:`realtime.records`. ``output_path=None`` writes the records only (``--records-only``).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2

from realtime.pipeline import FacePipeline, FaceResult
from realtime.records import RecordWriter, SourceInfo
from realtime.records import face_record as _face_record
from realtime.sources import Frame, FrameSource

LOGGER = logging.getLogger(__name__)

FOURCC = "mp4v"


@dataclass(frozen=True)
class VideoSummary:
    """What :func:`process_video` wrote.

    Attributes:
        frames: frames written to the video.
        face_records: JSON records written.
        output_path, records_path: the files (``records_path`` None when not asked for).
        playable: the written video opens and decodes a frame (checked after closing it).
        seconds: wall time.
    """

    frames: int
    face_records: int
    output_path: Path | None
    records_path: Path | None
    playable: bool
    seconds: float


def face_record(frame: Frame, face: FaceResult, source: SourceInfo | None = None) -> dict:
    """The JSON record of one face in one frame (:func:`realtime.records.face_record`)."""
    return _face_record(frame, face, source)


def check_playable(path: str | Path) -> bool:
    """Whether OpenCV can open ``path`` and decode its first frame."""
    capture = cv2.VideoCapture(str(path))
    try:
        return bool(capture.isOpened() and capture.read()[0])
    finally:
        capture.release()


class _StopAtFrameEnd:
    """Ctrl-C / SIGTERM during processing: finish the current frame (video and records stay in step), then
    stop with KeyboardInterrupt. A second signal interrupts at once."""

    def __init__(self):
        self.requested: int | None = None

    def __call__(self, signum, stack):
        if self.requested is not None:
            raise KeyboardInterrupt(f"signal {signum}")
        self.requested = signum

    def check(self) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt(f"signal {self.requested}")


@contextmanager
def _signals_stop_at_frame_end():
    stop = _StopAtFrameEnd()
    if threading.current_thread() is not threading.main_thread():  # signal handlers live on the main thread
        yield stop
        return
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # keep "ignore" (e.g. nohup) as it is
            previous[signum] = signal.signal(signum, stop)
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def process_video(
    source: FrameSource,
    pipeline: FacePipeline,
    output_path: str | Path,
    records_path: str | Path | None = None,
    overlay=None,
    progress: bool = True,
    records_format: str | None = None,
    source_name: str | None = None,
    on_result=None,
) -> VideoSummary:
    """Run ``pipeline`` over ``source``, writing the annotated video and the records.

    Args:
        source: an open frame source (its ``fps`` and ``frame_size`` set the output's).
        pipeline: a VIDEO-mode pipeline.
        output_path: the ``.mp4`` to write (parent folders are created), or ``None`` for records only.
        records_path: the ``.jsonl`` / ``.csv`` to write, or ``None``.
        overlay: an :mod:`realtime.overlay` drawer; ``None`` writes the frames unannotated.
        progress: show a tqdm progress bar.
        records_format: ``"jsonl"`` or ``"csv"`` (default: from the suffix).
        source_name: the source as named in the records (default: unnamed).
        on_result: optional ``(Frame, FrameResult) -> None`` called after each frame (e.g. mesh export).
    Returns:
        a :class:`VideoSummary`; on an exception or interrupt the files are closed first and the exception
        propagates (the partial outputs stay valid).
    """
    from tqdm import tqdm

    output_path = Path(output_path) if output_path is not None else None
    records_path = Path(records_path) if records_path is not None else None
    if output_path is None and records_path is None:
        raise ValueError("process_video: nothing to write (no output video and no records path)")
    width, height = source.frame_size
    writer = None
    if output_path is not None:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(output_path), cv2.VideoWriter_fourcc(*FOURCC), float(source.fps), (int(width), int(height)))
        if not writer.isOpened():
            raise RuntimeError(f"cannot write video {output_path} ({FOURCC}, {width}x{height} at {source.fps} fps)")
    records = None
    frames = face_records = 0
    start = time.perf_counter()
    total = getattr(source, "claimed_frame_count", None) or None
    if getattr(source, "max_frames", None):
        total = min(total or source.max_frames, source.max_frames)
    try:
        if records_path is not None:
            info = SourceInfo(source_name or "", int(width), int(height), float(source.fps))
            records = RecordWriter(records_path, info, records_format, getattr(pipeline, "crop_size", 120))
        name = (output_path or records_path).name
        with _signals_stop_at_frame_end() as stop, tqdm(total=total, unit="frame", disable=not progress, desc=name) as bar:
            for frame in source:
                stop.check()
                result = pipeline.process(frame)
                if writer is not None:
                    image = overlay.draw(frame.image_bgr, result.faces) if overlay is not None else frame.image_bgr
                    if image.shape[1] != width or image.shape[0] != height:  # image folders may mix sizes
                        image = cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_AREA)
                    writer.write(image)
                frames += 1
                if records is not None:
                    face_records += records.write(frame, result.faces)  # flushed: every line on disk is whole
                if on_result is not None:
                    on_result(frame, result)
                bar.update(1)
    finally:
        if writer is not None:
            writer.release()
        if records is not None:
            records.close()
        playable = frames > 0 and (output_path is None or check_playable(output_path))
        if frames and not playable:
            LOGGER.error("wrote %d frames to %s but the file does not open", frames, output_path)
        else:
            LOGGER.info("wrote %d frames to %s%s", frames, output_path, f" and {face_records} records to {records_path}" if records_path else "")
    return VideoSummary(frames, face_records, output_path, records_path, playable, time.perf_counter() - start)
