"""realtime.prefetch: decode-ahead yields exactly the frames of the source, passes errors on, stops cleanly."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from realtime.prefetch import PrefetchedSource
from realtime.sources import Frame, FrameSource, VideoFileSource


class Counting(FrameSource):
    def __init__(self, count: int, fail_at: int | None = None):
        self.count, self.fail_at, self.read, self.closed = count, fail_at, 0, False
        self.fps, self.frame_size, self.description = 25.0, (4, 3), "counting"
        self.claimed_frame_count = count

    def __iter__(self):
        for index in range(self.count):
            if index == self.fail_at:
                raise RuntimeError(f"corrupt frame {index}")
            self.read += 1
            yield Frame(np.full((3, 4, 3), index, np.uint8), index * 40.0, index)

    def close(self):
        self.closed = True


def test_same_frames_same_order_and_attributes():
    inner = Counting(40)
    source = PrefetchedSource(inner, depth=4).start()
    assert (source.fps, source.frame_size, source.description, source.claimed_frame_count) == (25.0, (4, 3), "counting", 40)
    assert [frame.index for frame in source] == list(range(40))
    source.close()
    assert inner.closed


def test_reads_ahead_at_most_depth_frames_before_iteration():
    inner = Counting(100)
    source = PrefetchedSource(inner, depth=5).start()
    for _ in range(200):
        if inner.read >= 6:
            break
        threading.Event().wait(0.005)
    assert 5 <= inner.read <= 6  # depth queued + one waiting to be put
    source.close()


def test_errors_reach_the_consumer_at_their_frame():
    seen = []
    with pytest.raises(RuntimeError, match="corrupt frame 7"):
        for frame in PrefetchedSource(Counting(20, fail_at=7), depth=3):
            seen.append(frame.index)
    assert seen == list(range(7))


def test_stopping_early_ends_the_reader_thread():
    source = PrefetchedSource(Counting(1000), depth=2)
    for frame in source:
        if frame.index == 3:
            break
    source.close()
    assert not any(t.name == "drtn-decode" and t.is_alive() for t in threading.enumerate())


def test_video_file_frames_are_identical(clip_path):
    with VideoFileSource(clip_path, max_frames=12) as direct:
        expected = [frame.image_bgr for frame in direct]
    with PrefetchedSource(VideoFileSource(clip_path, max_frames=12)) as prefetched:
        got = [frame.image_bgr for frame in prefetched]
    assert len(got) == len(expected) == 12 and all(np.array_equal(a, b) for a, b in zip(got, expected))
