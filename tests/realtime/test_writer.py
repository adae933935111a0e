"""realtime.writer: fragmented H.264 MP4 through PyAV (crash-safe, browser-playable), OpenCV fallback."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.writer import OPENCV_BACKEND, PYAV_BACKEND, VideoWriteError, open_video_writer, pyav_h264_available

av = pytest.importorskip("av")


def _frames(count: int, width: int, height: int) -> list[np.ndarray]:
    """A moving white square on a grey ramp (so frames differ and compress like video)."""
    out = []
    for index in range(count):
        image = np.full((height, width, 3), (index * 7) % 200, np.uint8)
        x = (index * 5) % max(width - 20, 1)
        image[10:30, x : x + 20] = 255
        out.append(image)
    return out


def test_pyav_h264_is_available_with_the_wheel():
    assert pyav_h264_available() and "libx264" in av.codecs_available


def test_writes_fragmented_h264_that_decodes_frame_for_frame(tmp_path):
    path = tmp_path / "v.mp4"
    frames = _frames(40, 160, 120)
    with open_video_writer(path, 25.0, (160, 120)) as writer:
        for image in frames:
            writer.write(image)
    assert writer.backend == PYAV_BACKEND and writer.frames == 40
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (160, 120)
        assert float(stream.average_rate) == pytest.approx(25.0)
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(decoded) == 40
    assert np.abs(decoded[10].astype(int) - frames[10].astype(int)).mean() < 4  # crf 20: close to the input
    head = path.read_bytes()[:4096]
    assert b"moov" in head and b"moof" in head  # index first, then fragments: what survives a hard kill


def test_odd_sizes_are_padded_for_420(tmp_path):
    path = tmp_path / "odd.mp4"
    with open_video_writer(path, 30.0, (161, 121)) as writer:
        for image in _frames(5, 161, 121):
            writer.write(image)
    assert writer.size == (162, 122)
    capture = cv2.VideoCapture(str(path))
    ok, image = capture.read()
    capture.release()
    assert ok and image.shape == (122, 162, 3)


def test_hard_kill_leaves_the_frames_of_closed_fragments(tmp_path):
    path = tmp_path / "killed.mp4"
    script = (
        "import sys, time, numpy as np\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from realtime.writer import open_video_writer\n"
        f"w = open_video_writer({str(path)!r}, 25.0, (96, 64))\n"
        "for i in range(100000):\n"
        "    w.write(np.full((64, 96, 3), i % 250, np.uint8))\n"
        "    print(i, flush=True) if i % 10 == 0 else None\n"
        "    time.sleep(0.002)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if int(line) >= 80:  # three keyframes (one a second) have closed three fragments
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded >= 75


def test_opencv_fallback_warns(tmp_path, monkeypatch, caplog):
    import realtime.writer as writer_module

    monkeypatch.setattr(writer_module, "pyav_h264_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="realtime.writer"):
        with open_video_writer(tmp_path / "cv.mp4", 25.0, (64, 48)) as writer:
            for image in _frames(3, 64, 48):
                writer.write(image)
    assert writer.backend == OPENCV_BACKEND and "pip install av" in caplog.text
    capture = cv2.VideoCapture(str(tmp_path / "cv.mp4"))
    assert capture.read()[0]
    capture.release()


def test_bad_arguments_and_frames(tmp_path):
    with pytest.raises(ValueError, match="size must be positive"):
        open_video_writer(tmp_path / "a.mp4", 25.0, (0, 10))
    with pytest.raises(ValueError, match="fps"):
        open_video_writer(tmp_path / "a.mp4", float("nan"), (10, 10))
    with pytest.raises(ValueError, match="backend"):
        open_video_writer(tmp_path / "a.mp4", 25.0, (10, 10), backend="gstreamer")
    with pytest.raises(VideoWriteError, match="cannot create video"):
        open_video_writer(tmp_path / "missing-folder" / "a.mp4", 25.0, (10, 10))
    writer = open_video_writer(tmp_path / "a.mp4", 25.0, (16, 16))
    with pytest.raises(ValueError, match=r"expected a \(16, 16, 3\) uint8 BGR frame, got float64"):
        writer.write(np.zeros((16, 16, 3)))
    writer.close()
    writer.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        writer.write(np.zeros((16, 16, 3), np.uint8))


def test_trim_to_whole_boxes_repairs_a_cut_off_tail(tmp_path):
    from realtime.writer import trim_to_whole_boxes

    path = tmp_path / "v.mp4"
    with open_video_writer(path, 25.0, (96, 64)) as writer:
        for image in _frames(60, 96, 64):  # keyframes (fragments) at least every 25 frames
            writer.write(image)
    whole = path.read_bytes()
    assert trim_to_whole_boxes(path) == 0 and path.read_bytes() == whole  # a finished file is left alone
    boxes, offset = [], 0
    while offset < len(whole):
        length = int.from_bytes(whole[offset : offset + 4], "big")
        boxes.append((offset, whole[offset + 4 : offset + 8]))
        offset += length
    kinds = [kind for _, kind in boxes]
    assert kinds[:2] == [b"ftyp", b"moov"] and kinds.count(b"moof") >= 2
    last_moof = [start for start, kind in boxes if kind == b"moof"][-1]
    last_mdat = [start for start, kind in boxes if kind == b"mdat"][-1]
    for cut_at, expected_size in ((last_mdat + 100, last_moof), (last_moof + 5, last_moof), (last_mdat + 4, last_moof)):
        path.write_bytes(whole[:cut_at])  # a write that stopped half-way through the last fragment
        trim_to_whole_boxes(path)
        assert path.stat().st_size == expected_size
        with av.open(str(path)) as container:
            frames = sum(1 for _ in container.decode(video=0))  # the whole fragments, no decode error
        assert 0 < frames < 60


def test_threaded_writer_keeps_every_frame_in_order_and_copies_the_input(tmp_path):
    """Encoding on the writer thread gives the frames of the caller's thread, in order, though the caller
    reuses one buffer for every frame right after handing it over."""
    frames = _frames(30, 96, 64)
    decoded = {}
    for threaded in (True, False):
        path = tmp_path / f"t{threaded}.mp4"
        buffer = np.empty_like(frames[0])
        with open_video_writer(path, 25.0, (96, 64), threaded=threaded) as writer:
            for image in frames:
                buffer[:] = image
                writer.write(buffer)
        assert writer.frames == 30
        with av.open(str(path)) as container:
            decoded[threaded] = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(decoded[True]) == len(decoded[False]) == 30
    for got, want in zip(decoded[True], frames):
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 4
    assert np.array_equal(np.stack(decoded[True]), np.stack(decoded[False]))


@pytest.mark.parametrize("threaded", [True, False])
def test_a_failed_write_on_the_writer_thread_is_raised_naming_the_frame(tmp_path, threaded):
    """The disk fails at frame 5 (the container's mux raises ENOSPC): the failure is raised by a later write()
    or by close(), naming the file and frame 5; nothing more is written."""
    import errno

    path = tmp_path / "f.mp4"
    writer = open_video_writer(path, 25.0, (96, 64), threaded=threaded)
    real = writer._container

    class FailingContainer:  # the real container until frame 5's packet
        def mux(self, packet):
            if packet.pts is not None and packet.pts >= 5:
                raise OSError(errno.ENOSPC, "No space left on device")
            real.mux(packet)

        def close(self):
            real.close()

    writer._container = FailingContainer()
    with pytest.raises(VideoWriteError, match=r"cannot write frame 5 to .*f\.mp4: no space left on the device"):
        for image in _frames(40, 96, 64):
            writer.write(image)
        writer.close()
    writer.close()  # already failed and raised: closes quietly
    assert writer.frames == 5  # frames 0-4 were encoded and handed to the file
