"""Headless processing: a video (or image folder) in, an annotated video and per-face JSON records out.

``main.py video IN -o OUT.mp4 --records OUT.jsonl`` calls :func:`run_video`. The video is written with
OpenCV's ``mp4v`` encoder and released in a ``finally`` block, and the records are flushed after every frame,
so Ctrl-C (or SIGTERM, or a crash) mid-file leaves a playable video of the frames done and a JSONL file whose
every line is a complete record. Ctrl-C and SIGTERM let the current frame finish first, so the video and the
records hold the same frames (a second Ctrl-C stops at once). A hard kill (SIGKILL) cannot be caught: the mp4
index is then missing.

One JSON record per face per frame::

    {"frame_index": 12, "timestamp_ms": 480.0, "track_id": 0, "detection_score": 0.93,
     "roi_box": [x0, y0, x1, y1], "pose": {"yaw": 10.2, "pitch": -3.1, "roll": 0.4},
     "landmarks_2d": [[x, y], ... 68], "landmarks_3d": [[x, y, z], ... 68], "params": [... 62]}

Image pixels, x right, y down; angles in degrees; ``params`` de-normalised, relative to ``roi_box``
(see :class:`realtime.pipeline.FaceResult`).
"""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from realtime.pipeline import FacePipeline, FaceResult
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
    output_path: Path
    records_path: Path | None
    playable: bool
    seconds: float


def face_record(frame: Frame, face: FaceResult) -> dict:
    """The JSON record of one face in one frame (see the module docstring)."""
    return {
        "frame_index": int(frame.index),
        "timestamp_ms": round(float(frame.timestamp_ms), 3),
        "track_id": int(face.track_id),
        "detection_score": round(float(face.detection_score), 4),
        "roi_box": np.round(np.asarray(face.roi_box, dtype=np.float64), 2).tolist(),
        "pose": {"yaw": round(face.yaw, 3), "pitch": round(face.pitch, 3), "roll": round(face.roll, 3)},
        "landmarks_2d": np.round(face.landmarks_2d.astype(np.float64), 2).tolist(),
        "landmarks_3d": np.round(face.landmarks_3d.astype(np.float64), 2).tolist(),
        "params": [float(f"{value:.7g}") for value in np.asarray(face.params, dtype=np.float64)],
    }


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
) -> VideoSummary:
    """Run ``pipeline`` over ``source``, writing the annotated video and the records.

    Args:
        source: an open frame source (its ``fps`` and ``frame_size`` set the output's).
        pipeline: a VIDEO-mode pipeline.
        output_path: the ``.mp4`` to write (parent folders are created).
        records_path: the ``.jsonl`` to write, or ``None``.
        overlay: an :mod:`realtime.overlay` drawer; ``None`` writes the frames unannotated.
        progress: show a tqdm progress bar.
    Returns:
        a :class:`VideoSummary`; on an exception or interrupt the files are closed first and the exception
        propagates (the partial outputs stay valid).
    """
    from tqdm import tqdm

    output_path = Path(output_path)
    records_path = Path(records_path) if records_path is not None else None
    output_path.parent.mkdir(parents=True, exist_ok=True)
    width, height = source.frame_size
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
            records_path.parent.mkdir(parents=True, exist_ok=True)
            records = open(records_path, "w", encoding="utf-8")
        with _signals_stop_at_frame_end() as stop, tqdm(total=total, unit="frame", disable=not progress, desc=output_path.name) as bar:
            for frame in source:
                stop.check()
                result = pipeline.process(frame)
                image = overlay.draw(frame.image_bgr, result.faces) if overlay is not None else frame.image_bgr
                if image.shape[1] != width or image.shape[0] != height:  # image folders may mix sizes
                    image = cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_AREA)
                writer.write(image)
                frames += 1
                if records is not None:
                    for face in result.faces:
                        records.write(json.dumps(face_record(frame, face)) + "\n")
                        face_records += 1
                    records.flush()  # every line on disk is a whole record, whatever happens next
                bar.update(1)
    finally:
        writer.release()
        if records is not None:
            records.close()
        playable = frames > 0 and check_playable(output_path)
        if frames and not playable:
            LOGGER.error("wrote %d frames to %s but the file does not open", frames, output_path)
        else:
            LOGGER.debug("wrote %d frames to %s%s", frames, output_path, f" and {face_records} records to {records_path}" if records_path else "")
    return VideoSummary(frames, face_records, output_path, records_path, playable, time.perf_counter() - start)
