"""The face pipeline end to end on real frames (MediaPipe detector + the teacher backend)."""

from __future__ import annotations

import dataclasses
import threading

import cv2
import numpy as np
import pytest

from realtime.pipeline import STAGES, FacePipeline, FaceResult, FrameResult, PipelineOptions, RunningMode
from realtime.sources import Frame
from realtime.tracker import TrackerOptions


def _inside(points, box, margin=0.0):
    x0, y0, x1, y1 = box
    return bool(
        np.all(
            (points[:, 0] >= x0 - margin)
            & (points[:, 0] <= x1 + margin)
            & (points[:, 1] >= y0 - margin)
            & (points[:, 1] <= y1 + margin)
        )
    )


def test_video_frames_give_one_tracked_face(make_pipeline, clip_frames):
    pipeline = make_pipeline(tracker=TrackerOptions(detect_every_n_frames=5))
    results = [pipeline.process(frame) for frame in clip_frames[:8]]
    for result in results:
        assert isinstance(result, FrameResult) and len(result.faces) == 1
        face = result.faces[0]
        assert isinstance(face, FaceResult) and face.track_id == 0
        assert face.params.shape == (62,) and face.params.dtype == np.float32
        assert face.landmarks_2d.shape == (68, 2) and face.landmarks_3d.shape == (68, 3)
        assert face.vertices_image.shape == (4096, 3)
        assert np.isfinite(face.landmarks_3d).all() and np.isfinite(face.vertices_image).all()
        assert _inside(face.landmarks_2d, face.roi_box)
        side = face.roi_box[2] - face.roi_box[0]
        assert 150 < side < 512  # the face fills much of the 512 x 512 talking-head frame
        assert abs(face.yaw) < 45 and abs(face.pitch) < 45 and abs(face.roll) < 45
        assert set(STAGES) <= set(result.timings_ms) and result.timings_ms["total"] > 0
    # the detector ran on frame 0 and frame 5 only: between, crops come from the landmarks
    ran = [result.timings_ms["detect"] > 0 for result in results]
    assert ran == [True, False, False, False, False, True, False, False]
    assert [r.frame_index for r in results] == list(range(8))
    # the mesh sits on the face: nose tip (landmark 30) nearer the camera than the jaw ends
    face = results[-1].faces[0]
    assert face.landmarks_3d[30, 2] > face.landmarks_3d[[0, 16], 2].max()
    assert len(pipeline.dense_triangles) > 5000 and pipeline.dense_triangles.max() < 4096


def test_image_mode_finds_every_face(make_pipeline, emma_bgr):
    pipeline = make_pipeline(running_mode=RunningMode.IMAGE)
    image = cv2.resize(emma_bgr, None, fx=0.3, fy=0.3)
    for _ in range(2):  # independent calls: same ids, no state carried
        result = pipeline.process(image)
        # the three Emmas and the blurred bystander behind the first (YuNet finds real background faces)
        assert [face.track_id for face in result.faces] == [0, 1, 2, 3]
        for face in result.faces:
            assert _inside(face.landmarks_2d, face.roi_box)


def test_batched_inference_over_faces(make_pipeline, emma_bgr, backend):
    calls = []

    class Counting:
        crop_size = backend.crop_size

        def infer(self, crops):
            calls.append(len(crops))
            return backend.infer(crops)

    pipeline = FacePipeline(Counting(), make_pipeline().options, morphable=make_pipeline().morphable)
    try:
        pipeline.process(cv2.resize(emma_bgr, None, fx=0.3, fy=0.3), 0.0)
        pipeline.process(cv2.resize(emma_bgr, None, fx=0.3, fy=0.3), 40.0)
    finally:
        pipeline.close()
    # frame 0: all four detected faces (three Emmas, one bystander) in one batch, then the refinement pass in
    # one batch; frame 1: one batch
    assert calls == [4, 4, 4]


@pytest.mark.parametrize(
    "make_image",
    [
        lambda frame: cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY),  # grayscale
        lambda frame: frame[:, :, :1],  # (H, W, 1)
        lambda frame: cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA),  # BGRA
        lambda frame: np.ascontiguousarray(frame[13:500, 7:390]),  # odd size: 383 x 487
    ],
    ids=["gray", "one-channel", "bgra", "odd-size"],
)
def test_unusual_images_still_track(make_pipeline, clip_frames, make_image):
    pipeline = make_pipeline()
    result = pipeline.process(make_image(clip_frames[0].image_bgr), 0.0)
    assert len(result.faces) == 1 and np.isfinite(result.faces[0].landmarks_2d).all()


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640, 3), np.uint8),  # no face
        np.full((3, 5, 3), 128, np.uint8),  # tiny frame
        np.zeros((1, 1), np.uint8),
        np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8),  # noise
    ],
    ids=["blank", "tiny", "one-pixel", "noise"],
)
def test_frames_without_a_face_give_an_empty_result(make_pipeline, image):
    pipeline = make_pipeline()
    result = pipeline.process(image, 0.0)
    assert isinstance(result, FrameResult) and result.faces == []


def test_tiny_and_cut_off_faces_do_not_crash(make_pipeline, clip_frames):
    frame = clip_frames[0].image_bgr
    tiny = cv2.resize(frame, (24, 24), interpolation=cv2.INTER_AREA)  # a face of ~10 px
    cut = np.ascontiguousarray(frame[:, 300:])  # the left half of the face is outside
    for image in (tiny, cut, frame[:40]):
        pipeline = make_pipeline()
        for step in range(3):
            result = pipeline.process(image, step * 40.0)
            for face in result.faces:
                assert np.isfinite(face.landmarks_2d).all() and np.isfinite(face.params).all()


def test_lost_face_is_dropped_and_found_again(make_pipeline, clip_frames):
    pipeline = make_pipeline(tracker=TrackerOptions(detect_every_n_frames=1, max_missed_detections=2))
    blank = np.zeros_like(clip_frames[0].image_bgr)
    timestamp = iter(np.arange(100) * 40.0)
    assert len(pipeline.process(clip_frames[0].image_bgr, next(timestamp)).faces) == 1
    counts = [len(pipeline.process(blank, next(timestamp)).faces) for _ in range(3)]
    assert counts == [0, 0, 0]  # the face is gone: not reported from the first frame without it
    assert pipeline.tracker.tracks == []  # and its track has ended
    found = pipeline.process(clip_frames[1].image_bgr, next(timestamp)).faces
    assert len(found) == 1 and found[0].track_id == 0  # back at once where it was: it keeps its id


def test_presence_is_high_on_a_face_and_ends_a_track_in_the_frame_its_face_goes(make_pipeline, clip_frames):
    pipeline = make_pipeline(tracker=TrackerOptions(detect_every_n_frames=0))
    timestamp = iter(np.arange(100) * 40.0)
    faces = [pipeline.process(frame.image_bgr, next(timestamp)).faces for frame in clip_frames[:4]]
    assert all(len(f) == 1 and f[0].presence > 0.7 for f in faces)
    # the face is covered by a flat patch (the frame stays busy elsewhere): no face reported in that frame
    covered = clip_frames[4].image_bgr.copy()
    x0, y0, x1, y1 = faces[-1][0].roi_box.astype(int)
    covered[max(y0, 0) : y1, max(x0, 0) : x1] = 90
    assert pipeline.process(covered, next(timestamp)).faces == []
    off = make_pipeline(presence_check=False)
    assert off._presence_detector is None


def test_no_track_on_dark_blobs_and_textures(make_pipeline):
    from realtime.detector import DetectorOptions
    from realtime.tracking_scenes import draw_distractors, make_background

    rng = np.random.default_rng(3)
    image = make_background(rng, 640, 480)
    draw_distractors(image, rng, 9)
    pipeline = make_pipeline(detector=DetectorOptions(min_confidence=0.3))  # a lax detector: the presence check decides
    reported = sum(len(pipeline.process(image, t * 40.0).faces) for t in range(1, 6))
    assert reported == 0


def test_smoothing_off_and_on_differ_only_after_the_first_frame(make_pipeline, clip_frames):
    from realtime.smoothing import SmoothingOptions

    smooth = make_pipeline()
    raw = make_pipeline(smoothing=SmoothingOptions(enabled=False))
    for index, frame in enumerate(clip_frames[:4]):
        a, b = smooth.process(frame).faces[0], raw.process(frame).faces[0]
        if index == 0:
            np.testing.assert_allclose(a.params, b.params, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a.params, b.params)


def test_running_mode_misuse_fails_loudly(make_pipeline, clip_frames, assets_dir):
    video = make_pipeline()
    image = clip_frames[0].image_bgr
    with pytest.raises(ValueError, match="needs a timestamp_ms"):
        video.process(image)
    video.process(image, 100.0)
    with pytest.raises(ValueError, match="timestamps must increase"):
        video.process(image, 100.0)
    with pytest.raises(ValueError, match="LIVE_STREAM"):
        video.process_async(image, 200.0)
    with pytest.raises(ValueError, match="result_callback"):
        PipelineOptions(running_mode=RunningMode.LIVE_STREAM)
    with pytest.raises(ValueError, match="unknown key 'max_face'"):
        PipelineOptions.from_dict({"tracker": {"max_face": 2}})
    with pytest.raises(ValueError, match="unknown key 'smothing'"):
        PipelineOptions.from_dict({"smothing": {}})
    assert PipelineOptions.from_dict({"running_mode": "image"}).running_mode is RunningMode.IMAGE
    with pytest.raises(ValueError, match="infer"):
        FacePipeline(object(), PipelineOptions(assets_dir=str(assets_dir)))
    video.close()
    with pytest.raises(ValueError, match="closed"):
        video.process(image, 300.0)


def test_live_stream_delivers_results_on_a_worker(make_pipeline, clip_frames):
    results, done = [], threading.Event()

    def on_result(result: FrameResult, frame: Frame) -> None:
        results.append((result, frame.index))
        if frame.index == clip_frames[5].index:
            done.set()

    pipeline = make_pipeline(
        PipelineOptions(
            running_mode=RunningMode.LIVE_STREAM, result_callback=on_result, assets_dir=make_pipeline().options.assets_dir
        )
    )
    with pytest.raises(ValueError, match="process_async"):
        pipeline.process(clip_frames[0])
    for frame in clip_frames[:6]:
        pipeline.process_async(frame)
    assert done.wait(timeout=60)
    pipeline.close()
    indices = [index for _, index in results]
    assert indices == sorted(indices) and indices[-1] == 5  # the newest frame is always processed
    assert len(indices) + pipeline.dropped_frames == 6
    assert all(len(result.faces) == 1 for result, _ in results)


def test_flip_average_option_runs_each_crop_and_its_mirror_in_one_call(backend, morphable, assets_dir, clip_frames):
    """``PipelineOptions.flip_average``: one backend call on 2N crops per inference; the face stays where the
    plain pipeline puts it (within a few pixels of the 512 x 512 frame)."""
    from realtime.pipeline import FacePipeline, PipelineOptions

    sizes = []

    class Recording:
        crop_size = backend.crop_size

        def infer(self, crops):
            sizes.append(len(crops))
            return backend.infer(crops)

    options = PipelineOptions(assets_dir=str(assets_dir), running_mode=RunningMode.IMAGE, presence_check=False)
    with FacePipeline(Recording(), options, morphable=morphable) as plain_pipeline:
        plain = plain_pipeline.process(clip_frames[0]).faces
    plain_calls, sizes[:] = list(sizes), []
    with FacePipeline(Recording(), dataclasses.replace(options, flip_average=True), morphable=morphable) as pipeline:
        averaged = pipeline.process(clip_frames[0]).faces
    assert sizes == [2 * n for n in plain_calls] and len(averaged) == len(plain) == 1
    shift = np.linalg.norm(averaged[0].landmarks_2d - plain[0].landmarks_2d, axis=1)
    assert 0 < shift.mean() < 5.0
    with pytest.raises(ValueError, match="flip_pose"):
        PipelineOptions(flip_pose="slerp")
