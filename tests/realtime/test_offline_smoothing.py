"""The fixed-lag, two-sided smoother of ``video`` (realtime.offline_smoothing): zero lag on smooth motion, noise
reduction, windows at track ends and gaps, frames out in order and complete, and ``process_video`` with it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from drtn.crop import model_to_image
from realtime.offline_smoothing import FixedLagParamSmoother, local_polynomial_weights
from realtime.smoothing import (
    OfflineSmoothingOptions,
    SmoothingOptions,
    compose_pose,
    decompose_pose,
    pose_to_vector,
    vector_to_pose,
)
from tests.realtime.conftest import interrupt_on_frame, send_ctrl_c

from .test_video import _check_record

FPS = 30.0


def _pivot(morphable):
    return morphable.sparse.mean.reshape(-1, 3).mean(axis=0)


def _smoother(morphable, **options):
    return FixedLagParamSmoother(OfflineSmoothingOptions(**options), morphable.stats, pivot_model=_pivot(morphable))


def _run(smoother, frames):
    """frames: [(track_ids, params (N, 62), boxes (N, 4))] at 30 fps -> [(frame number, params)] as returned."""
    out = []
    for number, (ids, params, boxes) in enumerate(frames):
        out += smoother.push(ids, params, boxes, number * 1000 / FPS, token=number)
    return out + smoother.flush()


def _landmarks(morphable, params, box):
    return model_to_image(morphable.landmarks_model(np.asarray(params, np.float64)[None])[0], box)[:2].T


def _face(morphable, seed=0):
    rng = np.random.default_rng(seed)
    stats = morphable.stats
    params = stats.mean + stats.std * rng.normal(0, 0.3, size=62)
    params[:12] = stats.mean[:12]  # a plausible frontal pose
    params[:12] *= np.r_[1.02, 0.97, 1.0, 1, 0.99, 1.03, 1, 1, 1, 1, 1.01, 1]  # a non-rigid s*R, as networks give
    return params


def _rotation(axis, angle):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _moving_face(morphable, frames, velocity_px, acceleration_px, scale_rate=0.0, spin_rad_s=0.0, box_jitter=0.0):
    """A face moving in the image with constant velocity / acceleration (pixels per frame, per frame^2), a
    log-scale ramp, a steady spin, seen through a box that follows it with ``box_jitter`` px of noise."""
    rng = np.random.default_rng(1)
    base = _face(morphable)
    box0 = np.array([200.0, 150.0, 400.0, 350.0])
    start = decompose_pose(base[:12], box0)
    out = []
    for t in range(frames):
        shift = np.asarray(velocity_px) * t + 0.5 * np.asarray(acceleration_px) * t * t
        rotation = start.rotation @ _rotation([0.2, 1.0, 0.1], spin_rad_s * t / FPS)
        pose = type(start)(
            start.scale_px * math.exp(scale_rate * t),
            rotation,
            start.stretch,
            start.translation_px + np.r_[shift, 0.0],
        )
        box = box0 + np.r_[shift, shift] + rng.normal(0, box_jitter, 4)
        box[2:] = box[:2] + (box[2] - box[0])  # square
        params = base.copy()
        params[:12] = compose_pose(pose, box).reshape(-1)
        out.append(([0], params[None], box[None]))
    return out


# ------------------------------------------------------------------------------------------ the local fit
@pytest.mark.parametrize("kernel", ["uniform", "tricube", "gaussian"])
def test_local_fit_reproduces_polynomials_up_to_its_degree(kernel):
    offsets = np.array([-3, -2, -1, 0, 1, 2.5, 4]) / FPS  # uneven spacing: a skipped frame, a late one
    weights = local_polynomial_weights(offsets, 2, kernel, 5 / FPS)
    for power in (0, 1, 2):
        assert weights @ offsets**power == pytest.approx(1.0 if power == 0 else 0.0, abs=1e-12)
    assert abs(weights @ offsets**3) > 1e-8  # a cubic is not reproduced by a quadratic fit
    np.testing.assert_array_equal(local_polynomial_weights(np.zeros(1), 2, kernel, 1.0), [1.0])
    two = local_polynomial_weights(np.array([0.0, 1 / FPS]), 2, kernel, 5 / FPS)  # degree lowered to 1
    np.testing.assert_allclose(two, [1.0, 0.0], atol=1e-12)


def test_options_are_checked():
    with pytest.raises(ValueError, match="lag_frames"):
        OfflineSmoothingOptions(lag_frames=-1)
    with pytest.raises(ValueError, match="kernel"):
        OfflineSmoothingOptions(kernel="box")
    with pytest.raises(ValueError, match="mode"):
        SmoothingOptions(mode="two-sided")
    options = SmoothingOptions.from_dict({"mode": "offline", "offline": {"lag_frames": 3}})
    assert options.offline_enabled and not options.causal and options.offline.lag_frames == 3
    with pytest.raises(ValueError, match="unknown key 'lag'"):
        SmoothingOptions.from_dict({"offline": {"lag": 3}})


# ------------------------------------------------------------------------------------------ zero lag
@pytest.mark.parametrize(
    "velocity, acceleration, scale_rate",
    [((4.0, -2.5), (0.0, 0.0), 0.0), ((3.0, 1.0), (0.4, -0.3), 0.01), ((0.0, 0.0), (0.0, 0.0), 0.0)],
    ids=["constant velocity", "constant acceleration", "still"],
)
def test_smooth_motion_passes_unchanged(morphable, velocity, acceleration, scale_rate):
    """Translation at constant velocity or acceleration and a scale ramp, seen through a jittering crop box:
    every frame, the track's ends included, comes out as it went in (no lag, no box dependence)."""
    frames = _moving_face(morphable, 30, velocity, acceleration, scale_rate, box_jitter=3.0)
    out = _run(_smoother(morphable, lag_frames=5), frames)
    assert [number for number, _ in out] == list(range(30))
    for (_, params, boxes), (_, smoothed) in zip(frames, out):
        np.testing.assert_allclose(
            _landmarks(morphable, smoothed[0], boxes[0]), _landmarks(morphable, params[0], boxes[0]), atol=2e-3
        )


def test_a_turning_head_is_followed_with_no_lag(morphable):
    """A steady 90 deg/s turn plus an accelerating slide: no lag (a moving average of the same window lags)."""
    frames = _moving_face(morphable, 40, (5.0, 0.0), (0.3, 0.0), spin_rad_s=math.pi / 2)
    out = _run(_smoother(morphable, lag_frames=6), frames)
    errors = [
        np.linalg.norm(_landmarks(morphable, s[0], f[2][0]) - _landmarks(morphable, f[1][0], f[2][0]), axis=1).mean()
        for f, (_, s) in zip(frames, out)
    ]
    averaged = _run(_smoother(morphable, lag_frames=6, pose_order=0, shape_order=0), frames)
    lagged = [
        np.linalg.norm(_landmarks(morphable, s[0], f[2][0]) - _landmarks(morphable, f[1][0], f[2][0]), axis=1).mean()
        for f, (_, s) in zip(frames, averaged)
    ]
    assert max(errors) < 0.05  # pixels, on a ~200 px face
    assert max(lagged) > 20 * max(errors)


def test_noise_falls_by_the_fit_s_factor(morphable):
    """White noise on the pose parts (the network's per-frame noise) falls by the fit's factor sqrt(sum h^2)."""
    rng = np.random.default_rng(2)
    base = _face(morphable)
    box = np.array([200.0, 150.0, 400.0, 350.0])
    pivot = _pivot(morphable)
    vector = pose_to_vector(base[:12], box, pivot, 200.0)
    frames = []
    for _ in range(200):
        noisy = vector + np.r_[rng.normal(0, 0.002, 4), rng.normal(0, 0.004, 3), rng.normal(0, 0.004, 1), np.zeros(6)]
        params = base.copy()
        params[:12] = vector_to_pose(noisy, box, pivot, 200.0)
        params[12:] += rng.normal(0, 0.05, 50) * morphable.stats.std[12:]
        frames.append(([0], params[None], box[None]))
    defaults = OfflineSmoothingOptions()  # the product's window
    lag = defaults.lag_frames
    out = _run(_smoother(morphable), frames)
    inner = slice(lag, -lag)  # full windows
    raw = np.array([_landmarks(morphable, p[0], box) for _, p, _ in frames])[inner]
    smooth = np.array([_landmarks(morphable, s[0], box) for _, s in out])[inner]
    ratio = smooth.std(axis=0).mean() / raw.std(axis=0).mean()
    weights = local_polynomial_weights(np.arange(-lag, lag + 1) / FPS, defaults.pose_order, defaults.kernel, (lag + 1) / FPS)
    expected = math.sqrt(np.sum(weights**2))
    assert expected < 0.6
    assert ratio == pytest.approx(expected, rel=0.2)
    # jitter (the second difference the benchmark measures) falls far more than the spread
    second = lambda x: np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).mean()  # noqa: E731
    assert second(smooth) < 0.15 * second(raw)


# ------------------------------------------------------------------------------------------ windows, order, flush
def test_frames_come_out_late_in_order_and_complete(morphable):
    smoother = _smoother(morphable, lag_frames=3)
    face = _face(morphable)[None]
    box = np.array([[0.0, 0.0, 200.0, 200.0]])
    returned = []
    for number in range(8):
        done = smoother.push([4], face, box, number * 33.0, token=number)
        returned.append([token for token, _ in done])
    assert returned == [[], [], [], [0], [1], [2], [3], [4]]  # each frame once its 3 later frames exist
    assert smoother.pending_frames == 3
    # the track ends (a frame without it): its held frames are final at once, then the empty frame
    done = smoother.push([], np.zeros((0, 62)), np.zeros((0, 4)), 8 * 33.0, token=8)
    assert [token for token, _ in done] == [5, 6, 7, 8] and smoother.pending_frames == 0
    assert [token for token, _ in smoother.push([], np.zeros((0, 62)), np.zeros((0, 4)), 9 * 33.0, token=9)] == [9]
    smoother.push([4], face, box, 10 * 33.0, token=10)
    assert [token for token, _ in smoother.flush()] == [10] and smoother.flush() == []


def test_windows_stop_at_track_gaps_and_ends(morphable):
    """A face still at one place, gone for a frame, then still at another: no frame borrows across the gap
    (each comes out as it went in), and two faces are smoothed apart."""
    base = _face(morphable)
    frames = []
    for number in range(20):
        ids, params, boxes = [], [], []
        if number != 9:  # track 1: frames 0-8 at x = 0, frames 10-19 at x = 80
            box = np.array([0.0, 0.0, 200.0, 200.0]) + (80.0 if number > 9 else 0.0) * np.array([1, 0, 1, 0])
            ids.append(1), params.append(base), boxes.append(box)
        if number >= 4:  # track 2 from frame 4, another face far away, moving steadily
            box = np.array([400.0, 0.0, 600.0, 200.0]) + 3.0 * number * np.array([1, 0, 1, 0])
            ids.append(2), params.append(_face(morphable, seed=5)), boxes.append(box)
        frames.append((ids, np.array(params).reshape(-1, 62), np.array(boxes).reshape(-1, 4)))
    out = _run(_smoother(morphable, lag_frames=4), frames)
    assert [number for number, _ in out] == list(range(20))
    for (ids, params, boxes), (_, smoothed) in zip(frames, out):
        assert smoothed.shape == params.shape
        for row in range(len(ids)):
            np.testing.assert_allclose(
                _landmarks(morphable, smoothed[row], boxes[row]), _landmarks(morphable, params[row], boxes[row]), atol=2e-3
            )


def test_misuse_is_refused(morphable):
    smoother = _smoother(morphable)
    face, box = _face(morphable)[None], np.array([[0.0, 0.0, 100.0, 100.0]])
    smoother.push([0], face, box, 10.0)
    with pytest.raises(ValueError, match="timestamps must increase"):
        smoother.push([0], face, box, 10.0)
    with pytest.raises(ValueError, match="repeat"):
        smoother.push([0, 0], np.repeat(face, 2, 0), np.repeat(box, 2, 0), 20.0)
    with pytest.raises(ValueError, match="ids"):
        smoother.push([0], np.repeat(face, 2, 0), box, 30.0)


def test_live_stream_refuses_offline_smoothing():
    from realtime.pipeline import PipelineOptions, RunningMode

    with pytest.raises(ValueError, match="LIVE_STREAM"):
        PipelineOptions(
            running_mode=RunningMode.LIVE_STREAM,
            result_callback=lambda result, frame: None,
            smoothing=SmoothingOptions(mode="offline"),
        )


# ------------------------------------------------------------------------------------------ with the pipeline
def _read_records(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture()
def offline_options(assets_dir):
    from realtime.pipeline import PipelineOptions

    return PipelineOptions(assets_dir=str(assets_dir), smoothing=SmoothingOptions(mode="offline"))


def test_process_video_writes_every_frame_in_order_with_the_same_crop_boxes(
    make_pipeline, truncated_clip_path, assets_dir, offline_options, tmp_path
):
    """obama.mp4 (55 frames) with causal and offline smoothing: same frames and records, in order, schema-valid,
    the same crop boxes (tracking untouched), smoother output; the derived fields follow the smoothed params."""
    from realtime.pipeline import PipelineOptions
    from realtime.sources import open_source
    from realtime.video import process_video

    runs = {}
    for name, options in (("causal", PipelineOptions(assets_dir=str(assets_dir))), ("offline", offline_options)):
        pipeline = make_pipeline(options)
        with open_source(truncated_clip_path) as source:
            summary = process_video(source, pipeline, tmp_path / f"{name}.mp4", tmp_path / f"{name}.jsonl", progress=False)
        runs[name] = (summary, _read_records(tmp_path / f"{name}.jsonl"))
    (causal, causal_records), (offline, offline_records) = runs["causal"], runs["offline"]
    assert offline.frames == causal.frames == 55 and offline.face_records == causal.face_records == len(causal_records)
    assert [r["frame_index"] for r in offline_records] == [r["frame_index"] for r in causal_records] == list(range(55))
    for mine, theirs in zip(offline_records, causal_records):
        _check_record(mine)
        assert mine["roi_box"] == theirs["roi_box"] and mine["track_id"] == theirs["track_id"]
    landmarks = {k: np.array([r["landmarks_2d"] for r in records]) for k, records in runs.items() for records in [records[1]]}
    jitter = {k: np.linalg.norm(v[2:] - 2 * v[1:-1] + v[:-2], axis=-1).mean() for k, v in landmarks.items()}
    assert jitter["offline"] < jitter["causal"]
    # the landmarks written are those of the smoothed params (rebuilt, not the raw ones)
    pipeline = make_pipeline(offline_options)
    record = offline_records[30]
    rebuilt = pipeline.faces_from_params([0], np.array([record["params"]]), np.array([record["roi_box"]]), [1.0], [1.0])[0]
    np.testing.assert_allclose(rebuilt.landmarks_2d, record["landmarks_2d"], atol=0.01)
    assert rebuilt.yaw == pytest.approx(record["pose"]["yaw"], abs=0.01)
    assert rebuilt.blendshapes == pytest.approx(record["blendshapes"], abs=1e-4)


def test_held_frames_are_written_when_the_user_stops(make_pipeline, clip_path, offline_options, tmp_path):
    """Ctrl-C on frame 3 and a pipeline failure on frame 5: every frame the pipeline finished is written."""

    from realtime.sources import VideoFileSource
    from realtime.video import process_video

    pipeline = make_pipeline(offline_options)
    interrupt_on_frame(pipeline, 3, send_ctrl_c)
    with VideoFileSource(clip_path, max_frames=20) as source:
        with pytest.raises(KeyboardInterrupt):
            process_video(source, pipeline, tmp_path / "c.mp4", tmp_path / "c.jsonl", progress=False)
    assert [r["frame_index"] for r in _read_records(tmp_path / "c.jsonl")] == [0, 1, 2, 3]

    def fall_over():
        raise RuntimeError("the model fell over")

    pipeline = make_pipeline(offline_options)
    interrupt_on_frame(pipeline, 5, fall_over)
    with VideoFileSource(clip_path, max_frames=20) as source:
        with pytest.raises(RuntimeError, match="fell over"):
            process_video(source, pipeline, tmp_path / "f.mp4", tmp_path / "f.jsonl", progress=False)
    assert [r["frame_index"] for r in _read_records(tmp_path / "f.partial.jsonl")] == [0, 1, 2, 3, 4]


def test_tracking_bench_offline_row_scores_every_frame(data_dir, backend, morphable, assets_dir):
    """The bench's offline row (the video path's smoother) scores the same frames and faces as the causal row,
    with less jitter."""
    from dataclasses import replace

    from realtime.pipeline import PipelineOptions
    from realtime.tracking_bench import OurTracker, run_benchmark
    from realtime.tracking_scenes import standard_scenes

    scenes = [s for s in standard_scenes(data_dir, "tiny") if s.name == "moving-medium-0"]
    causal = PipelineOptions(assets_dir=str(assets_dir), compute_dense=False, compute_blendshapes=False)
    rows = [
        OurTracker("causal", backend, causal, morphable),
        OurTracker("offline", backend, replace(causal, smoothing=SmoothingOptions(mode="offline")), morphable),
    ]
    try:
        results = run_benchmark(rows, scenes)
    finally:
        for row in rows:
            row.close()
    mine, theirs = results["offline"]["moving-medium"], results["causal"]["moving-medium"]
    assert (mine.frames, mine.truths, mine.hits, len(mine.jitter)) == (
        theirs.frames,
        theirs.truths,
        theirs.hits,
        len(theirs.jitter),
    )
    assert np.mean(mine.error_jitter) < np.mean(theirs.error_jitter)


def test_a_lost_track_s_last_frame_pulls_no_earlier_frame(morphable):
    """A face sliding steadily whose last output (before its track is lost) jumps 30 px: with the default
    edges that frame is passed as it is and the frames before it stay on the slide; an asymmetric window
    would drag the last ones towards it (measured: 11 px on the frame before, 3 px at most with the default)."""
    frames = _moving_face(morphable, 20, (4.0, 0.0), (0.0, 0.0))
    truth = [_landmarks(morphable, params[0], boxes[0]) for _, params, boxes in frames]
    last = frames[-1]
    jumped = last[1].copy()
    image_pose = decompose_pose(jumped[0, :12], last[2][0])
    jumped[0, :12] = compose_pose(
        type(image_pose)(
            image_pose.scale_px, image_pose.rotation, image_pose.stretch, image_pose.translation_px + [30.0, 0, 0]
        ),
        last[2][0],
    ).reshape(-1)
    frames[-1] = (last[0], jumped, last[2])
    frames.append(([], np.zeros((0, 62)), np.zeros((0, 4))))  # the track is lost
    errors = {}
    for edges in ("symmetric-lost", "asymmetric"):
        out = _run(_smoother(morphable, edges=edges), frames)
        errors[edges] = [
            np.linalg.norm(_landmarks(morphable, s[0], f[2][0]) - t, axis=1).mean()
            for f, (_, s), t in zip(frames[:-2], out[:-2], truth[:-1])
        ]
        if edges == "symmetric-lost":  # the jumped frame itself: passed as it is
            np.testing.assert_allclose(
                _landmarks(morphable, out[-2][1][0], last[2][0]), _landmarks(morphable, jumped[0], last[2][0]), atol=2e-3
            )
    assert errors["symmetric-lost"][-1] < 1e-3  # the frame just before: a 3-frame window, passed as it is
    assert max(errors["symmetric-lost"]) < 3.0  # pixels: a tenth of the jump at most, in a few frames before
    assert max(errors["asymmetric"]) > 3 * max(errors["symmetric-lost"])
