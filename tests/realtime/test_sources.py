"""Frame sources: video files (whole, truncated, corrupt, missing), image folders, cameras, image checks."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from realtime.sources import (
    CameraSource,
    Frame,
    ImageFolderSource,
    SourceError,
    VideoFileSource,
    open_source,
    to_bgr,
)


def test_video_file_frames_and_timestamps(clip_path):
    with VideoFileSource(clip_path, max_frames=10) as source:
        assert source.fps == pytest.approx(25.0)
        assert source.frame_size == (512, 512)
        frames = list(source)
    assert [f.index for f in frames] == list(range(10))
    assert all(isinstance(f, Frame) and f.image_bgr.shape == (512, 512, 3) and f.image_bgr.dtype == np.uint8 for f in frames)
    np.testing.assert_allclose([f.timestamp_ms for f in frames], np.arange(10) * 40.0)


def test_truncated_video_ends_gracefully(truncated_clip_path, caplog):
    with caplog.at_level(logging.WARNING, logger="realtime.sources"):
        with VideoFileSource(truncated_clip_path) as source:
            assert source.claimed_frame_count == 158
            count = sum(1 for _ in source)
    assert count == 55
    assert "only 55 decoded" in caplog.text


def test_missing_video_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="video file not found"):
        VideoFileSource(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError):
        open_source(str(tmp_path / "nope.mp4"))


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage" * 40], ids=["empty", "garbage"])
def test_corrupt_video_raises_source_error(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="broken.mp4"):
        VideoFileSource(path)


def test_video_cut_before_its_index_raises_source_error(tmp_path, clip_path):
    # the sample keeps its index (moov atom) at the end: the first 20 kB alone cannot be opened
    path = tmp_path / "head.mp4"
    path.write_bytes(clip_path.read_bytes()[:20000])
    with pytest.raises(SourceError):
        VideoFileSource(path)


def test_image_folder_sorted_skips_unreadable_and_converts_gray(tmp_path, emma_bgr):
    small = cv2.resize(emma_bgr, (200, 97))
    cv2.imwrite(str(tmp_path / "b.png"), small)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
    (tmp_path / "c.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    with ImageFolderSource(tmp_path, fps=10) as source:
        frames = list(source)
    assert len(frames) == 2
    assert all(f.image_bgr.shape == (97, 200, 3) for f in frames)
    assert [f.timestamp_ms for f in frames] == [0.0, 100.0]
    np.testing.assert_array_equal(frames[1].image_bgr, small)


def test_empty_folder_and_single_image(tmp_path, emma_bgr):
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path)
    cv2.imwrite(str(tmp_path / "one.jpg"), cv2.resize(emma_bgr, (100, 50)))
    source = open_source(tmp_path / "one.jpg")
    assert isinstance(source, ImageFolderSource)
    assert len(list(source)) == 1


def test_missing_camera_raises_source_error():
    # no machine running the tests has 100 cameras
    with pytest.raises(SourceError, match="no camera at index 99"):
        CameraSource(99)
    with pytest.raises(SourceError):
        open_source("99")


@pytest.mark.parametrize(
    "image, shape",
    [
        (np.zeros((5, 7), np.uint8), (5, 7, 3)),
        (np.zeros((5, 7, 1), np.uint8), (5, 7, 3)),
        (np.zeros((5, 7, 4), np.uint8), (5, 7, 3)),
        (np.zeros((5, 7, 3), np.uint8), (5, 7, 3)),
    ],
)
def test_to_bgr_accepts_gray_bgra_bgr(image, shape):
    assert to_bgr(image).shape == shape


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((5, 7, 3), np.float32), "uint8"),
        (np.zeros((0, 7, 3), np.uint8), "non-empty"),
        (np.zeros((5, 7, 2), np.uint8), "got shape"),
        ([[0, 1]], "numpy image"),
    ],
)
def test_to_bgr_rejects_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        to_bgr(image)
