"""Face detection with the model files of the asset folder (YuNet default, MediaPipe Tasks BlazeFace)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.detector import DetectorOptions, FaceDetector


def test_finds_the_three_faces_of_emma(detector, emma_bgr):
    # YuNet also finds the blurred bystander behind the first Emma (a real face, score ~0.73)
    detections = detector.detect(emma_bgr)[:3]
    assert len(detections) == 3
    height, width = emma_bgr.shape[:2]
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.5
    centers_x = sorted((d.box_xyxy[0] + d.box_xyxy[2]) / 2 / width for d in detections)
    # one face in each third of the triptych
    assert [int(c * 3) for c in centers_x] == [0, 1, 2]
    for detection in detections:
        x0, y0, x1, y1 = detection.box_xyxy
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert 0.05 * width < x1 - x0 < 0.2 * width  # a face, not the whole picture
        assert detection.keypoints_xy.shape[1] == 2 and len(detection.keypoints_xy) >= 5


def test_no_face_in_a_blank_or_tiny_image(detector):
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(np.full((480, 640, 3), 200, np.uint8)) == []
    assert detector.detect(np.zeros((4, 4, 3), np.uint8)) == []


def test_grayscale_input(detector, emma_bgr):
    gray = cv2.cvtColor(cv2.resize(emma_bgr, None, fx=0.25, fy=0.25), cv2.COLOR_BGR2GRAY)
    assert len(detector.detect(gray)) >= 2


def test_min_face_size_filters_small_faces(emma_bgr, assets_dir):
    small = cv2.resize(emma_bgr, None, fx=0.1, fy=0.1)  # faces ~45 px
    with FaceDetector(DetectorOptions(min_face_size_px=100), assets_dir) as strict:
        assert strict.detect(small) == []


def test_options_are_validated():
    with pytest.raises(ValueError, match="model"):
        DetectorOptions(model="long_range")
    with pytest.raises(ValueError, match="min_confidence"):
        DetectorOptions(min_confidence=1.5)
    with pytest.raises(ValueError, match="unknown key 'min_confidance'"):
        DetectorOptions.from_dict({"min_confidance": 0.3})
    assert DetectorOptions.from_dict({"model": "blazeface"}).model == "blazeface"


def test_closed_detector_fails_loudly(assets_dir):
    detector = FaceDetector(assets_dir=assets_dir)
    detector.close()
    detector.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        detector.detect(np.zeros((64, 64, 3), np.uint8))


@pytest.mark.parametrize("model", ["yunet", "blazeface"])
def test_both_models_find_emma_faces(model, assets_dir, emma_bgr):
    with FaceDetector(DetectorOptions(model=model), assets_dir) as face_detector:
        largest = sorted(face_detector.detect(emma_bgr), key=lambda d: d.box_xyxy[0] - d.box_xyxy[2])[:3]
        assert len(largest) == 3 and all(d.score > 0.8 for d in largest)


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="face_detection_yunet"):
        FaceDetector(DetectorOptions(model="yunet"), tmp_path)


def test_tiles_find_the_same_faces_once(emma_bgr, assets_dir):
    """2x2 tiles on a large frame: every face of the single pass, no face twice (merged across tile borders)."""
    with (
        FaceDetector(DetectorOptions(max_input_side_px=640), assets_dir) as single,
        FaceDetector(DetectorOptions(max_input_side_px=640, tiles=True), assets_dir) as tiled,
    ):
        one, many = single.detect(emma_bgr), tiled.detect(emma_bgr)
    assert len(many) == len(one) >= 3
    centres = np.array([(d.box_xyxy[:2] + d.box_xyxy[2:]) / 2 for d in many])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(many)) * 1e9
    assert gaps.min() > 100  # distinct faces
