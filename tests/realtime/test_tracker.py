"""Track ids, detector scheduling, IoU matching and track loss, on synthetic landmarks (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from drtn.crop import roi_box_from_landmarks
from realtime.tracker import FaceTracker, TrackerOptions, box_iou

IMAGE = (640, 480)
_TEMPLATE = np.random.default_rng(0).uniform(-1.0, 1.0, size=(68, 2))
_TEMPLATE[0], _TEMPLATE[1] = (-1.0, -1.0), (1.0, 1.0)  # extent exactly [-1, 1]


def face_landmarks(center, half_size):
    """(68, 2) landmarks filling the square of ``half_size`` around ``center``."""
    return np.asarray(center, dtype=np.float64) + half_size * _TEMPLATE


def box_of(center, half_size):
    return roi_box_from_landmarks(face_landmarks(center, half_size))


def test_box_iou():
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 1 / 3, 0.0]])


def test_ids_stay_stable_while_faces_move():
    tracker = FaceTracker(TrackerOptions(detect_every_n_frames=0))
    assert tracker.needs_detection()
    tracker.apply_detections(np.stack([box_of((150, 200), 50), box_of((450, 220), 40)]), np.array([0.9, 0.8]))
    assert [t.track_id for t in tracker.tracks] == [0, 1]
    for step in range(20):
        centers = [(150 + 3 * step, 200), (450 - 2 * step, 220 + step)]
        lost = tracker.update([0, 1], np.stack([face_landmarks(centers[0], 50), face_landmarks(centers[1], 40)]), IMAGE)
        assert lost == []
        assert not tracker.needs_detection()  # tracking from landmarks, no detector
    assert [t.track_id for t in tracker.tracks] == [0, 1]
    # the next crop is where the face will be: the landmark box predicted one frame ahead (3 px / frame)
    np.testing.assert_allclose(tracker.tracks[0].roi_box, box_of((150 + 60, 200), 50), atol=0.5)


def test_periodic_detection_matches_by_iou_and_adds_new_faces():
    tracker = FaceTracker(TrackerOptions(detect_every_n_frames=3, max_faces=2))
    tracker.apply_detections(box_of((150, 200), 50)[None], np.array([0.9]))
    for _ in range(3):
        tracker.update([0], face_landmarks((150, 200), 50)[None], IMAGE)
    assert tracker.needs_detection()
    # the known face, slightly off, plus two new ones: only one fits under max_faces (the higher score)
    boxes = np.stack([box_of((470, 220), 40), box_of((155, 205), 52), box_of((320, 100), 30)])
    tracker.apply_detections(boxes, np.array([0.95, 0.9, 0.6]))
    assert [t.track_id for t in tracker.tracks] == [0, 1]
    np.testing.assert_allclose(tracker.tracks[1].roi_box, boxes[0])
    assert tracker.tracks[1].from_detection and not tracker.tracks[0].from_detection
    assert not tracker.needs_detection()


def test_face_leaving_the_frame_is_lost_and_triggers_detection():
    tracker = FaceTracker(TrackerOptions(detect_every_n_frames=0))
    tracker.apply_detections(box_of((320, 240), 60)[None], np.array([0.9]))
    assert tracker.update([0], face_landmarks((320, 240), 60)[None], IMAGE) == []
    assert tracker.update([0], face_landmarks((680, 240), 60)[None], IMAGE) == [0]  # mostly right of x = 640
    assert tracker.tracks == [] and tracker.needs_detection()


@pytest.mark.parametrize(
    "landmarks, reason",
    [
        (face_landmarks((320, 240), 5), "too small"),
        (face_landmarks((320, 240), 130), "size jump"),
        (np.full((68, 2), np.nan), "not finite"),
    ],
)
def test_degenerate_landmarks_lose_the_track(landmarks, reason):
    tracker = FaceTracker(TrackerOptions(detect_every_n_frames=0))
    tracker.apply_detections(box_of((320, 240), 60)[None], np.array([0.9]))
    tracker.update([0], face_landmarks((320, 240), 60)[None], IMAGE)
    assert tracker.update([0], landmarks[None], IMAGE) == [0], reason
    assert tracker.needs_detection()


def test_a_track_lost_and_found_at_once_keeps_its_id():
    tracker = FaceTracker(TrackerOptions(detect_every_n_frames=0))
    tracker.apply_detections(box_of((320, 240), 60)[None], np.array([0.9]))
    tracker.update([0], face_landmarks((320, 240), 60)[None], IMAGE)
    tracker.update([0], face_landmarks((320, 240), 5)[None], IMAGE)  # degenerate: lost
    tracker.apply_detections(box_of((322, 240), 58)[None], np.array([0.9]))  # re-detected in place
    assert [t.track_id for t in tracker.tracks] == [0]
    tracker.update([0], face_landmarks((322, 240), 58)[None], IMAGE)
    tracker.update([0], np.full((1, 68, 2), np.nan), IMAGE)
    tracker.apply_detections(box_of((100, 100), 40)[None], np.array([0.9]))  # a face elsewhere: a new id
    assert [t.track_id for t in tracker.tracks] == [1]


def test_tracks_missed_by_the_detector_are_dropped_unless_verified():
    options = TrackerOptions(detect_every_n_frames=1, max_missed_detections=2)
    tracker = FaceTracker(options)
    tracker.apply_detections(box_of((320, 240), 60)[None], np.array([0.9]))
    tracker.update([0], face_landmarks((320, 240), 60)[None], IMAGE)
    # a turned face the whole-frame detector misses, but the check on its own crop finds
    for _ in range(4):
        assert tracker.apply_detections(np.zeros((0, 4)), np.zeros(0), verify=lambda track: True) == []
        tracker.update([0], face_landmarks((320, 240), 60)[None], IMAGE)
    assert tracker.apply_detections(np.zeros((0, 4)), np.zeros(0), verify=lambda track: False) == []
    tracker.update([0], face_landmarks((320, 240), 60)[None], IMAGE)
    assert tracker.apply_detections(np.zeros((0, 4)), np.zeros(0)) == [0]
    assert tracker.tracks == []


def test_duplicate_tracks_keep_the_older():
    tracker = FaceTracker(TrackerOptions(detect_every_n_frames=0, iou_match_threshold=0.9))
    tracker.apply_detections(np.stack([box_of((300, 240), 60), box_of((340, 240), 60)]), np.array([0.9, 0.8]))
    assert len(tracker.tracks) == 2
    # both converge on the same face
    lost = tracker.update([0, 1], np.stack([face_landmarks((320, 240), 60), face_landmarks((322, 240), 60)]), IMAGE)
    assert lost == [1] and [t.track_id for t in tracker.tracks] == [0]


def test_small_detections_are_ignored_and_options_checked():
    tracker = FaceTracker(TrackerOptions(min_face_size_px=50))
    tracker.apply_detections(box_of((100, 100), 10)[None], np.array([0.99]))
    assert tracker.tracks == []
    with pytest.raises(ValueError, match="max_faces"):
        TrackerOptions(max_faces=0)
    with pytest.raises(ValueError, match="unknown key 'max_face'"):
        TrackerOptions.from_dict({"max_face": 2})
    with pytest.raises(ValueError, match="unknown track id 5"):
        FaceTracker().update([5], face_landmarks((100, 100), 40)[None], IMAGE)


def test_absent_face_ends_its_track_and_a_brief_occlusion_keeps_the_id():
    tracker = FaceTracker(TrackerOptions(detect_every_n_frames=0, min_presence=0.5, max_absent_frames=2, id_memory_frames=10))
    tracker.apply_detections(box_of((150, 200), 50)[None], np.array([0.9]))
    for step in range(5):
        assert tracker.update([0], face_landmarks((150 + 4 * step, 200), 50)[None], IMAGE, presence=np.array([0.9])) == []
    assert (
        tracker.update([0], face_landmarks((170, 200), 50)[None], IMAGE, presence=np.array([0.1])) == []
    )  # one frame of grace
    assert tracker.update([0], face_landmarks((100, 300), 20)[None], IMAGE, presence=np.array([0.0])) == [0]  # gone: ends
    assert tracker.tracks == [] and tracker.needs_detection()
    for _ in range(3):  # hidden for a few frames while moving on (the detector finds nothing)
        tracker.apply_detections(np.zeros((0, 4)), np.zeros(0))
        tracker.update([], np.zeros((0, 68, 2)), IMAGE)
    tracker.apply_detections(box_of((190, 200), 50)[None], np.array([0.9]))  # back, further along its path
    assert [t.track_id for t in tracker.tracks] == [0]


def test_a_face_found_after_the_id_memory_gets_a_new_id():
    tracker = FaceTracker(TrackerOptions(detect_every_n_frames=0, id_memory_frames=2))
    tracker.apply_detections(box_of((150, 200), 50)[None], np.array([0.9]))
    tracker.update([0], face_landmarks((150, 200), 50)[None], IMAGE, presence=np.array([0.9]))
    tracker.update([0], face_landmarks((150, 200), 50)[None], IMAGE, presence=np.array([0.0]))
    assert tracker.update([0], face_landmarks((150, 200), 50)[None], IMAGE, presence=np.array([0.0])) == [0]
    for _ in range(4):
        tracker.apply_detections(np.zeros((0, 4)), np.zeros(0))
        tracker.update([], np.zeros((0, 68, 2)), IMAGE)
    tracker.apply_detections(box_of((150, 200), 50)[None], np.array([0.9]))
    assert [t.track_id for t in tracker.tracks] == [1]
