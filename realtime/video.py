"""Headless processing: a video (or image folder) in, an annotated video and per-face JSON records out.

``main.py video IN -o OUT.mp4 --records OUT.jsonl`` calls :func:`process_video`. Nothing a user has is lost
or destroyed (see ``docs/realtime.md``, "Safety"):

- every output path is checked before anything is opened (:func:`realtime.outputs.check_output_paths`: not
  an input, not another output, writable, a video extension, enough free space);
- the outputs are written as ``OUT.partial.mp4`` / ``OUT.partial.jsonl`` and renamed into place when the job
  ends or is stopped (Ctrl-C, SIGTERM, SIGHUP), so an existing ``OUT.mp4`` stays intact until then;
- the video is a fragmented H.264 MP4 (:mod:`realtime.writer`) and each frame's records are written in one
  piece and flushed, so a hard kill (SIGKILL, power cut) leaves ``OUT.partial.mp4`` playable up to its last
  second and ``OUT.partial.jsonl`` with only whole lines;
- a write error (a full disk) stops the job at that frame with one line naming the file; the last records
  line is never cut (the file is truncated back to the last whole frame) and the partial files are kept;
- Ctrl-C, SIGTERM and SIGHUP let the current frame finish (video and records hold the same frames), then
  raise :class:`StopRequested` (exit status 128 + signal: 130, 143, 129); a second signal stops at once;
- with offline smoothing (the pipeline's ``smoothing.mode == "offline"``, ``video``'s default) frames are written
  a few frames late (:mod:`realtime.offline_smoothing`); the frames held back are written at the end, on a stop
  and after a pipeline error (not after a write error), so no processed frame is lost.

One record per face per frame, JSONL or CSV, with a schema version and the source's name, size and frame rate
(presence, blendshapes when computed): see :mod:`realtime.records`. ``output_path=None`` writes the records only
(``--records-only``).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2

from realtime.offline_smoothing import FixedLagSmoother
from realtime.outputs import MIN_FREE_BYTES, RECORDS_SUFFIXES, VIDEO_SUFFIXES, Output, check_output_paths, partial_path
from realtime.pipeline import FacePipeline, FaceResult
from realtime.records import SourceInfo, csv_header, serialize_records
from realtime.records import face_record as _face_record
from realtime.sources import Frame, FrameSource, SourceError
from realtime.writer import VideoWriteError, open_video_writer

LOGGER = logging.getLogger(__name__)

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class StopRequested(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during processing; ``signum`` is the signal (exit status ``128 + signum``)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)


class OutputWriteError(RuntimeError):
    """An output could not be written (e.g. the disk is full); the message names the file and what was kept."""


@dataclass(frozen=True)
class VideoSummary:
    """What :func:`process_video` wrote.

    Attributes:
        frames: frames written to the video.
        face_records: JSON records written.
        output_path, records_path: the files (``records_path`` None when not asked for).
        playable: the written video opens and decodes a frame (checked after closing it).
        seconds: wall time.
        writer: the video writer used (``pyav-h264`` or ``opencv-mp4v``).
    """

    frames: int
    face_records: int
    output_path: Path | None
    records_path: Path | None
    playable: bool
    seconds: float
    writer: str = ""


def face_record(frame: Frame, face: FaceResult, source: SourceInfo | None = None, crop_size: int = 120) -> dict:
    """The record of one face in one frame (:func:`realtime.records.face_record`, schema 2)."""
    return _face_record(frame, face, source, crop_size)


def check_playable(path: str | Path) -> bool:
    """Whether OpenCV can open ``path`` and decode its first frame."""
    capture = cv2.VideoCapture(str(path))
    try:
        return bool(capture.isOpened() and capture.read()[0])
    finally:
        capture.release()


def records_format_of(path: Path) -> str:
    """``"csv"`` for a ``.csv`` name, else ``"jsonl"``."""
    return "csv" if Path(path).suffix.lower() == ".csv" else "jsonl"


class RecordsWriter:
    """A JSONL file written one frame at a time: each frame's lines go out in one write and are flushed, and a
    failed write is cut back to the last whole frame, so the file never holds a partial line.

    Raises (from :meth:`write_frame`):
        OutputWriteError: the write failed (full disk...), naming the file.
    """

    def __init__(self, path: str | Path, fmt: str | None = None):
        self.path = Path(path)
        self.format = fmt or records_format_of(self.path)  # "jsonl" or "csv" (realtime.records)
        try:
            self._handle = open(self.path, "w", encoding="utf-8", newline="")
            if self.format == "csv":
                self._handle.write(csv_header())
                self._handle.flush()
        except OSError as error:
            raise OutputWriteError(f"cannot create records file {self.path}: {error.strerror or error}") from error
        self._good_bytes = self._handle.tell()
        self.records = 0

    def write_frame(self, records: list[dict]) -> None:
        if not records:
            return
        data = serialize_records(records, self.format)
        try:
            self._handle.write(data)
            self._handle.flush()  # on disk (page cache) now: survives the process being killed
        except OSError as error:
            self._cut_back()
            reason = (
                "no space left on the device (disk full)" if error.errno == errno.ENOSPC else (error.strerror or str(error))
            )
            raise OutputWriteError(f"cannot write records to {self.path}: {reason}") from error
        self._good_bytes = self._handle.tell()
        self.records += len(records)

    def _cut_back(self) -> None:
        """Drop whatever part of the failed frame reached the file (buffered data is discarded, not retried)."""
        try:
            os.ftruncate(self._handle.fileno(), self._good_bytes)
        except OSError:
            LOGGER.warning("could not truncate %s back to its last whole line", self.path)
        handle, self._handle = self._handle, None
        try:
            handle.close()
        except OSError:
            pass  # the buffer it tries to flush is the failed frame: dropped
        try:
            os.truncate(self.path, self._good_bytes)
        except OSError:
            pass

    def close(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()


class _StopAtFrameEnd:
    """Ctrl-C / SIGTERM / SIGHUP during processing: finish the current frame (video and records stay in step),
    then stop with :class:`StopRequested`. A second signal interrupts at once."""

    def __init__(self):
        self.requested: int | None = None

    def __call__(self, signum, stack):
        if self.requested is not None:
            raise StopRequested(signum)
        self.requested = signum

    def check(self) -> None:
        if self.requested is not None:
            raise StopRequested(self.requested)


@contextmanager
def _signals_stop_at_frame_end():
    stop = _StopAtFrameEnd()
    if threading.current_thread() is not threading.main_thread():  # signal handlers live on the main thread
        yield stop
        return
    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # keep "ignore" (e.g. nohup) as it is
            previous[signum] = signal.signal(signum, stop)
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def video_outputs(output_path: str | Path | None, records_path: str | Path | None) -> list[Output]:
    """The outputs of :func:`process_video`, for :func:`realtime.outputs.check_output_paths`."""
    outputs = [Output(Path(output_path), "-o", VIDEO_SUFFIXES)] if output_path is not None else []
    if records_path is not None:
        outputs.append(Output(Path(records_path), "--records", RECORDS_SUFFIXES + (".csv",)))
    return outputs


def process_video(
    source: FrameSource,
    pipeline: FacePipeline,
    output_path: str | Path,
    records_path: str | Path | None = None,
    overlay=None,
    progress: bool = True,
    min_free_bytes: int = MIN_FREE_BYTES,
    writer_backend: str = "auto",
    records_format: str | None = None,
    source_name: str | None = None,
    on_result=None,
    pipelined: bool = True,
) -> VideoSummary:
    """Run ``pipeline`` over ``source``, writing the annotated video and the records (see the module docstring).

    Args:
        source: an open frame source (its ``fps`` and ``frame_size`` set the output's; its ``path``, when it
            has one, may not be an output).
        pipeline: a VIDEO-mode pipeline. With its ``options.smoothing.mode == "offline"`` (``video``'s default) its
            results go through a :class:`realtime.offline_smoothing.FixedLagSmoother`: each frame is written
            ``lag_frames`` frames later, smoothed two-sided; the frames held back are written at the end, on a
            stop and after a pipeline error too (not after a write error).
        output_path: the ``.mp4`` to write (parent folders are created), or ``None`` for records only.
        records_path: the ``.jsonl`` / ``.csv`` to write, or ``None``.
        overlay: an :mod:`realtime.overlay` drawer; ``None`` writes the frames unannotated.
        progress: show a tqdm progress bar.
        min_free_bytes: refuse to start with less free space on an output's disk.
        writer_backend: :class:`realtime.writer.VideoWriter` backend (``auto``, ``pyav``, ``opencv``).
        records_format: ``"jsonl"`` or ``"csv"`` (default: csv for a ``.csv`` name, else jsonl).
        source_name: the source as named in the records (default: the source's path, else its description).
        on_result: optional ``(Frame, FrameResult) -> None`` called after each frame (e.g. mesh export); on the
            output thread when ``pipelined``.
        pipelined: draw, encode and record frame k on an output thread while frame k + 1 is tracked (the
            overlay's and ``on_result``'s calls then come from that thread, one at a time, in frame order).
    Returns:
        a :class:`VideoSummary`.
    Raises:
        realtime.outputs.OutputPathError: an output path is refused (nothing was opened).
        StopRequested: Ctrl-C / SIGTERM / SIGHUP; the outputs were completed and moved into place first.
        OutputWriteError: a write failed (full disk); the partial files are kept and named in the message.
        SourceError: no frame could be read.
        Any other error propagates with the partial files kept (``*.partial.*``).
    """
    from tqdm import tqdm

    output_path = Path(output_path) if output_path is not None else None
    records_path = Path(records_path) if records_path is not None else None
    if output_path is None and records_path is None:
        raise ValueError("process_video: nothing to write (no output video and no records path)")
    records_format = records_format or (records_format_of(records_path) if records_path is not None else "jsonl")
    if records_format not in ("jsonl", "csv"):
        raise ValueError(f"records format: expected jsonl or csv, got {records_format!r}")
    check_output_paths(video_outputs(output_path, records_path), [getattr(source, "path", None)], min_free_bytes)
    width, height = (int(v) for v in source.frame_size)
    if width < 1 or height < 1:
        raise SourceError(f"{source.description or 'the source'}: no readable frame (size {width}x{height})")
    video_partial = partial_path(output_path) if output_path is not None else None
    records_partial = partial_path(records_path) if records_path is not None else None
    for path in (output_path, records_path):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    if video_partial is not None:
        try:
            writer = open_video_writer(video_partial, source.fps, (width, height), writer_backend)
        except VideoWriteError as error:
            raise OutputWriteError(str(error)) from error
    name = source_name if source_name is not None else str(getattr(source, "path", None) or source.description or "")
    info = SourceInfo(name, width, height, float(source.fps))
    crop_size = int(getattr(pipeline, "crop_size", 120))
    records = None
    frames = 0
    start = time.perf_counter()
    total = getattr(source, "claimed_frame_count", None) or None
    if getattr(source, "max_frames", None):
        total = min(total or source.max_frames, source.max_frames)
    failure: BaseException | None = None
    finished = False  # True: move the outputs into place; False: keep the partial files
    write_failed = False  # an output could not be written: nothing more is written
    # offline smoothing (``smoothing.mode == "offline"``, ``video``'s default): results come out lag_frames late
    delay = FixedLagSmoother.for_pipeline(pipeline)
    try:
        if records_partial is not None:
            same = records_format == records_format_of(records_partial)
            records = RecordsWriter(records_partial) if same else RecordsWriter(records_partial, records_format)
        with (
            _signals_stop_at_frame_end() as stop,
            tqdm(total=total, unit="frame", disable=not progress, desc=(output_path or records_path).name) as bar,
        ):

            def write_outputs(frame: Frame, result) -> None:
                """Draw, encode and record one frame (on the output thread when pipelined)."""
                nonlocal frames, write_failed
                if writer is not None:
                    image = overlay.draw(frame.image_bgr, result.faces) if overlay is not None else frame.image_bgr
                    if image.shape[1] != width or image.shape[0] != height:  # image folders may mix sizes
                        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
                try:
                    if writer is not None:
                        writer.write(image)
                    frames += 1
                    if records is not None:
                        records.write_frame([face_record(frame, face, info, crop_size) for face in result.faces])
                except (VideoWriteError, OutputWriteError) as error:
                    write_failed = True
                    if writer is not None:
                        writer.abort()  # keep the video's whole fragments; nothing more onto a full disk
                    kept = " and ".join(str(p) for p in (video_partial, records_partial) if p is not None)
                    raise OutputWriteError(f"{error}; stopped after {frames} frames, kept in {kept}") from error
                if on_result is not None:
                    on_result(frame, result)
                try:
                    bar.update(1)
                except OSError:  # the terminal went away (SIGHUP): keep working without a bar
                    bar.disable = True

            # Pipelined: frame k's outputs are written on one output thread while frame k + 1 goes through the
            # pipeline; at most one frame is in flight and its outputs are finished (or their error raised)
            # before the next frame's are started, so the files hold the same frames as when run in turn.
            outputs = ThreadPoolExecutor(1, thread_name_prefix="drtn-outputs") if pipelined else None
            pending = None

            def finish_pending() -> None:
                nonlocal pending
                if pending is not None:
                    done, pending = pending, None
                    done.result()  # raises the output thread's error here

            def emit(done: list) -> None:
                """Hand finished frames to the outputs, in order, one in flight at most."""
                nonlocal pending
                for frame_done, result_done in done:
                    finish_pending()
                    if outputs is None:
                        write_outputs(frame_done, result_done)
                    else:
                        pending = outputs.submit(write_outputs, frame_done, result_done)

            try:
                try:
                    for frame in source:
                        if stop.requested is not None:
                            break  # the frames held back by the offline smoother are written below, then the stop
                        result = pipeline.process(frame)
                        emit([(frame, result)] if delay is None else delay.push(frame, result))
                    if delay is not None:
                        emit(delay.flush())
                    finish_pending()
                    stop.check()
                    finished = True
                finally:
                    if delay is not None and delay.pending_frames and not write_failed:
                        # the pipeline failed or a second signal came: the frames it finished are written all the same
                        try:
                            emit(delay.flush())
                        except Exception as error:  # noqa: BLE001 - the first error is the one to report
                            LOGGER.warning("%s", error)
                    if pending is not None:  # the pipeline failed or was interrupted: finish the frame in flight
                        try:
                            finish_pending()
                        except Exception as error:  # noqa: BLE001 - the first error is the one to report
                            LOGGER.warning("%s", error)
                    if outputs is not None:
                        outputs.shutdown(wait=True)
            except KeyboardInterrupt:  # StopRequested, or Ctrl-C off the main thread
                finished = True  # the user's choice: the frames done are the result
                raise
    except BaseException as error:
        failure = error
        raise
    finally:
        close_errors = []
        for closable in (writer, records):
            if closable is None:
                continue
            try:
                closable.close()
            except (OSError, OutputWriteError) as error:
                close_errors.append(error)
                finished = False
        if frames == 0:
            for path in (video_partial, records_partial):
                if path is not None:
                    path.unlink(missing_ok=True)
        elif finished:
            if video_partial is not None:
                os.replace(video_partial, output_path)
            if records_partial is not None:
                os.replace(records_partial, records_path)
        elif not isinstance(failure, OutputWriteError):  # (an OutputWriteError names the kept files itself)
            kept = " and ".join(str(p) for p in (video_partial, records_partial) if p is not None and p.exists())
            LOGGER.warning("stopped after %d frames; the frames done are kept in %s", frames, kept)
    if close_errors:
        raise OutputWriteError(f"{close_errors[0]}; the frames done are kept in {video_partial or records_partial}")
    if frames == 0:
        raise SourceError(f"{source.description or 'the source'}: no frame could be read; nothing written")
    playable = output_path is None or check_playable(output_path)
    backend = writer.backend if writer is not None else ""
    if not playable:
        LOGGER.error("wrote %d frames to %s but the file does not open", frames, output_path)
    else:
        LOGGER.debug(
            "wrote %d frames to %s (%s)%s",
            frames,
            output_path,
            backend,
            f" and {records.records} records to {records_path}" if records is not None else "",
        )
    face_records = records.records if records is not None else 0
    return VideoSummary(frames, face_records, output_path, records_path, playable, time.perf_counter() - start, backend)
