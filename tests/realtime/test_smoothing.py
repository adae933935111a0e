"""One-Euro and head-motion filters, per-track face smoothing, and the one crop<->image pose conversion."""

from __future__ import annotations

import numpy as np
import pytest

from drtn.crop import model_to_image
from realtime.smoothing import (
    FaceSmoother,
    HeadMotionFilter,
    OneEuroConfig,
    OneEuroFilter,
    SmoothingOptions,
    compose_pose,
    decompose_pose,
    quaternion_to_rotation,
    rotation_to_quaternion,
)

FPS = 30.0


def _run(filter_, values):
    return np.array([filter_(np.atleast_1d(v), i / FPS) for i, v in enumerate(values)])


def test_reduces_jitter_on_a_noisy_constant():
    rng = np.random.default_rng(0)
    noisy = 5.0 + rng.normal(0.0, 0.1, size=(300, 3))
    out = _run(OneEuroFilter(OneEuroConfig(min_cutoff=0.5, beta=0.05)), noisy)
    settled = out[30:]
    assert settled.std(axis=0).max() < 0.35 * noisy.std(axis=0).min()
    assert np.abs(settled.mean(axis=0) - 5.0).max() < 0.03  # no bias


def test_follows_a_step_with_bounded_lag():
    values = np.r_[np.zeros(30), np.ones(60)]
    out = _run(OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=1.0)), values)[:, 0]
    after = out[30:]
    assert np.all(np.diff(after) >= -1e-12) and after.max() <= 1.0 + 1e-9  # monotone, no overshoot
    frames_to_90 = int(np.argmax(after >= 0.9))
    assert 0 < frames_to_90 <= 8  # the speed term opens the filter: < 0.3 s at 30 fps
    assert after[-1] == pytest.approx(1.0, abs=1e-3)


def test_higher_beta_means_less_lag():
    values = np.r_[np.zeros(10), np.linspace(0, 10, 60)]  # a ramp
    slow = _run(OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=0.0)), values)[-1, 0]
    fast = _run(OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=2.0)), values)[-1, 0]
    assert 10 - fast < 0.5 * (10 - slow)


def test_first_sample_passes_and_time_must_increase():
    filter_ = OneEuroFilter()
    np.testing.assert_array_equal(filter_(np.array([1.0, 2.0]), 0.0), [1.0, 2.0])
    with pytest.raises(ValueError, match="timestamps must increase"):
        filter_(np.array([1.0, 2.0]), 0.0)
    with pytest.raises(ValueError, match="shape"):
        filter_(np.array([1.0]), 1.0)


def test_config_validation():
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroConfig(min_cutoff=0)
    with pytest.raises(ValueError, match="beta"):
        OneEuroConfig(beta=-1)
    with pytest.raises(ValueError, match="unknown key 'bta'"):
        SmoothingOptions.from_dict({"rotation": {"bta": 1.0}})
    with pytest.raises(ValueError, match="unknown key 'enable'"):
        SmoothingOptions.from_dict({"enable": False})
    with pytest.raises(ValueError, match="unknown key 'd_cutoff'"):
        SmoothingOptions.from_dict({"translation": {"d_cutoff": 1.0}})
    assert SmoothingOptions.from_dict({"rotation": {"beta": 3.0}}).rotation.beta == 3.0
    assert SmoothingOptions.from_dict({"identity": {"d_cutoff": 2.0}}).identity.d_cutoff == 2.0


def test_head_motion_filter_follows_a_steady_motion_without_lag():
    """Constant velocity: no lag once the velocity is learnt (a One-Euro filter lags behind a ramp)."""
    ramp = np.linspace(0.0, 3.0, 90)[:, None]
    head = HeadMotionFilter(np.array([2.0]), np.array([0.0]))
    out = np.array([head(value, i / FPS, speed=0.0) for i, value in enumerate(ramp)])[:, 0]
    one_euro = _run(OneEuroFilter(OneEuroConfig(min_cutoff=2.0, beta=0.0)), ramp[:, 0])[:, 0]
    assert abs(out[-1] - ramp[-1, 0]) < 0.01
    assert abs(one_euro[-1] - ramp[-1, 0]) > 0.05


def test_head_motion_filter_removes_noise_and_speed_opens_it():
    rng = np.random.default_rng(5)
    noisy = 1.0 + rng.normal(0.0, 0.05, size=(150, 2))
    still = HeadMotionFilter(np.array([1.0, 1.0]), np.array([5.0, 5.0]))
    out = np.array([still(value, i / FPS, speed=0.0) for i, value in enumerate(noisy)])
    assert out[30:].std(axis=0).max() < 0.5 * noisy.std(axis=0).min()
    fast = HeadMotionFilter(np.array([1.0, 1.0]), np.array([5.0, 5.0]))
    opened = np.array([fast(value, i / FPS, speed=10.0) for i, value in enumerate(noisy)])
    assert opened[30:].std(axis=0).min() > out[30:].std(axis=0).max()  # a fast head: the filter follows closely


def _face_params(morphable, rng, count=1):
    stats = morphable.stats
    params = stats.mean + stats.std * rng.normal(0, 0.3, size=(count, 62))
    params[:, :12] = stats.mean[:12]  # a plausible frontal pose
    return params.astype(np.float64)


def test_off_switch_is_identity(morphable):
    rng = np.random.default_rng(1)
    smoother = FaceSmoother(SmoothingOptions(enabled=False), morphable.stats)
    boxes = np.array([[10.0, 20.0, 210.0, 220.0]])
    for step in range(5):
        params = _face_params(morphable, rng)
        out = smoother.smooth([0], params, boxes, step * 33.0)
        np.testing.assert_array_equal(out, params.astype(np.float32))


def test_pose_image_round_trip(morphable):
    params = _face_params(morphable, np.random.default_rng(2))[0]
    params[:12] *= np.r_[1.02, 0.97, 1.0, 1, 0.99, 1.03, 1, 1, 1, 1, 1.01, 1]  # a non-rigid s*R, as networks give
    box = np.array([100.0, 50.0, 300.0, 250.0])
    image_pose = decompose_pose(params[:12], box)
    np.testing.assert_allclose(compose_pose(image_pose, box).reshape(-1), params[:12], rtol=1e-10, atol=1e-12)
    # the translation is where the model origin lands in the image
    origin = model_to_image(params[[3, 7, 11]].reshape(3, 1), box).ravel()
    np.testing.assert_allclose(image_pose.translation_px, origin, rtol=1e-10)
    np.testing.assert_allclose(np.trace(image_pose.stretch), 3.0)


@pytest.mark.parametrize("angle", [0.0, 1.0, 2.5, np.pi - 1e-3])
def test_quaternion_round_trip(angle):
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    np.testing.assert_allclose(quaternion_to_rotation(rotation_to_quaternion(rotation)), rotation, atol=1e-12)


def test_face_smoother_is_box_invariant_and_per_track(morphable):
    """The same face seen through moving crop boxes is a still face: smoothing must not drag it."""
    params = _face_params(morphable, np.random.default_rng(3))[0]
    box = np.array([100.0, 100.0, 300.0, 300.0])
    image_pose = decompose_pose(params[:12], box)
    smoother = FaceSmoother(SmoothingOptions(), morphable.stats)
    for step in range(6):
        moved = box + np.array([3.0, -2.0, 3.0, -2.0]) * step  # the box jitters, the face does not
        shifted = params.copy()
        shifted[:12] = compose_pose(image_pose, moved).reshape(-1)
        out = smoother.smooth([7], shifted[None], moved[None], step * 33.0)
        landmarks = model_to_image(morphable.landmarks_model(out)[0], moved)
        expected = model_to_image(morphable.landmarks_model(shifted[None])[0], moved)
        np.testing.assert_allclose(landmarks[:2], expected[:2], atol=1e-3)
    smoother.retain([])
    assert smoother.smooth([7], params[None], box[None], 0.0) is not None  # state forgotten: time may restart


def test_face_smoother_reduces_landmark_jitter(morphable):
    rng = np.random.default_rng(4)
    base = _face_params(morphable, rng)[0]
    box = np.array([100.0, 100.0, 300.0, 300.0])
    smoother = FaceSmoother(SmoothingOptions(), morphable.stats)
    raw, smooth = [], []
    for step in range(90):
        noisy = base.copy()
        noisy[:12] += rng.normal(0, 1, 12) * morphable.stats.std[:12] * 0.02
        noisy[12:] += rng.normal(0, 1, 50) * morphable.stats.std[12:] * 0.05
        out = smoother.smooth([0], noisy[None], box[None], step * 1000 / FPS)
        raw.append(model_to_image(morphable.landmarks_model(noisy[None])[0], box)[:2].T)
        smooth.append(model_to_image(morphable.landmarks_model(out)[0], box)[:2].T)
    raw, smooth = np.array(raw)[30:], np.array(smooth)[30:]
    # the defaults trade some smoothing of a still face for no lag on a moving one (docs/realtime.md)
    assert smooth.std(axis=0).mean() < 0.75 * raw.std(axis=0).mean()


def test_pose_conversion_is_exact_and_lives_in_drtn(morphable):
    """drtn.crop's image-frame pose projects the vertices where model_to_image puts them; training uses it."""
    from drtn.crop import image_to_crop_affine, pose_crop_to_image, pose_image_to_crop
    from training import geometry

    params = _face_params(morphable, np.random.default_rng(6))[0]
    box = np.array([40.0, 60.0, 250.0, 270.0])
    pose_image = pose_crop_to_image(params[:12].reshape(3, 4), box)
    points = np.random.default_rng(7).normal(0, 50, size=(3, 20))
    in_model = params[:12].reshape(3, 4) @ np.vstack([points, np.ones((1, 20))])
    in_image = pose_image @ np.vstack([points, np.ones((1, 20))])
    np.testing.assert_allclose(in_image, model_to_image(in_model, box), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pose_image_to_crop(pose_image, image_to_crop_affine(box)), params[:12].reshape(3, 4), atol=1e-9)
    assert geometry.pose_to_image is pose_crop_to_image and geometry.pose_to_crop is pose_image_to_crop


def _rotation(axis_angle: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(axis_angle))
    k = np.cross(np.eye(3), axis_angle / max(angle, 1e-12))
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_smoothing_about_the_face_pivot_keeps_what_the_network_gets_right(morphable):
    """Rotation noise about the face's centroid (the origin translation compensating, as the network's errors
    do): filtered about the pivot the face stays put; filtered about the model origin, far behind the face,
    the rotation and translation filters disagree and the landmarks jitter more. A still face passes exactly."""
    rng = np.random.default_rng(5)
    base = _face_params(morphable, rng)[0]
    box = np.array([100.0, 100.0, 300.0, 300.0])
    pivot = morphable.sparse.mean.reshape(-1, 3).mean(axis=0)
    linear, translation = base[:12].reshape(3, 4)[:, :3], base[:12].reshape(3, 4)[:, 3]
    smoothers = {
        "pivot": FaceSmoother(SmoothingOptions(), morphable.stats, pivot_model=pivot),
        "origin": FaceSmoother(SmoothingOptions(), morphable.stats),
    }
    still = smoothers["pivot"].smooth([1], base[None], box[None], 0.0)
    np.testing.assert_allclose(smoothers["pivot"].smooth([1], base[None], box[None], 50.0), still, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(still[0], base, rtol=1e-5, atol=1e-6)
    spread = {name: [] for name in smoothers}
    for step in range(90):
        noisy = base.copy()
        turned = linear @ _rotation(rng.normal(0, 0.03, 3))
        noisy[:12] = np.concatenate([turned, (translation + linear @ pivot - turned @ pivot)[:, None]], axis=1).reshape(-1)
        for name, smoother in smoothers.items():
            out = smoother.smooth([0], noisy[None], box[None], step * 1000 / FPS)
            spread[name].append(model_to_image(morphable.landmarks_model(out)[0], box)[:2].T)
    pivot_std, origin_std = (np.array(spread[name])[30:].std(axis=0).mean() for name in ("pivot", "origin"))
    assert pivot_std < 0.8 * origin_std
