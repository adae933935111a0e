"""ARKit blendshapes retargeted from the 10 BFM expression coefficients through the ICT FaceKit model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realtime.blendshapes import (
    ARKIT_NAMES,
    NUM_BLENDSHAPES,
    BlendshapeRetargeter,
    as_dict,
    ict_to_arkit_name,
    similarity_transform,
)


@pytest.fixture(scope="module")
def retargeter(assets_dir):
    if not (assets_dir / "ict" / "ict_face_area_model.npz").is_file():
        pytest.skip("ICT FaceKit model missing from the asset folder")
    return BlendshapeRetargeter.load(str(assets_dir))


def _bfm_expression_for(retargeter, ict_weights: np.ndarray, bfm_mean, bfm_basis) -> np.ndarray:
    """The 10 BFM coefficients whose landmarks best reproduce an ICT expression (least squares, BFM frame)."""
    ict = retargeter.ict
    ict_landmarks = ict.mean[ict.landmarks68].astype(np.float64)
    scale, rotation, _ = similarity_transform(ict_landmarks, bfm_mean)
    offsets = np.einsum("k,kvc->vc", ict_weights, ict.expression_basis[:, ict.landmarks68].astype(np.float64))
    target = (scale * offsets @ rotation.T).reshape(-1)
    return np.linalg.lstsq(bfm_basis, target, rcond=None)[0]


def test_names_are_the_52_arkit_blendshapes():
    assert len(ARKIT_NAMES) == NUM_BLENDSHAPES == 52 and len(set(ARKIT_NAMES)) == 52
    assert {"jawOpen", "eyeBlinkLeft", "mouthSmileRight", "browInnerUp", "tongueOut"} <= set(ARKIT_NAMES)
    assert ict_to_arkit_name("browDown_L") == "browDownLeft" and ict_to_arkit_name("jawOpen") == "jawOpen"


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(68, 3))
    angle = 0.4
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    target = 3.0 * source @ rotation.T + np.array([1.0, -2.0, 5.0])
    scale, found, translation = similarity_transform(source, target)
    assert scale == pytest.approx(3.0) and np.allclose(found, rotation) and np.allclose(translation, [1, -2, 5])


def test_neutral_face_gives_no_expression(retargeter):
    weights = retargeter.blendshapes(np.zeros((1, 10)))
    assert weights.shape == (1, 52) and weights.dtype == np.float32
    assert weights.max() < 1e-6


def test_weights_stay_in_range_and_ignore_gaze_and_tongue(retargeter):
    rng = np.random.default_rng(1)
    weights = retargeter.blendshapes(rng.normal(size=(64, 10)) * [1.6, 1.5, 0.6, 0.6, 0.2, 0.26, 0.28, 0.38, 0.16, 0.26])
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    assert weights.max() > 0.2  # expressions do move the weights
    pinned = [ARKIT_NAMES.index(n) for n in ARKIT_NAMES if n.startswith("eyeLook") or n == "tongueOut"]
    assert np.all(weights[:, pinned] == 0.0)


@pytest.mark.parametrize("shape", ["jawOpen", "mouthSmile_L", "mouthPucker"])
def test_an_ict_expression_seen_through_bfm_comes_back_as_itself(retargeter, assets_dir, shape):
    """Render an ICT shape on the 68 landmarks, project it onto the 10 BFM bases, retarget: that shape must lead."""
    sparse = json.loads((assets_dir / "bfm" / "landmarks68_bases_v2.json").read_text())
    bfm_mean = np.asarray(sparse["u_base"], np.float64).reshape(68, 3)
    bfm_basis = np.asarray(sparse["w_exp_base"], np.float64)
    ict_weights = np.zeros(len(retargeter.ict.expression_names))
    ict_weights[retargeter.ict.expression_names.index(shape)] = 0.8
    expression = _bfm_expression_for(retargeter, ict_weights, bfm_mean, bfm_basis)
    weights = as_dict(retargeter.blendshapes(expression[None])[0])
    name = ict_to_arkit_name(shape)
    assert max(weights, key=weights.get) == name, sorted(weights.items(), key=lambda item: -item[1])[:4]
    assert weights[name] > 0.3


def test_pipeline_fills_blendshapes_and_records_carry_them(make_pipeline, clip_frames, assets_dir):
    from realtime.video import face_record

    pipeline = make_pipeline()
    faces = []
    for frame in clip_frames[:4]:
        faces = pipeline.process(frame).faces
    assert faces, "no face tracked in the sample clip"
    blendshapes = faces[0].blendshapes
    assert list(blendshapes) == list(ARKIT_NAMES)
    assert all(0.0 <= value <= 1.0 for value in blendshapes.values())
    record = json.loads(json.dumps(face_record(clip_frames[3], faces[0])))
    assert record["blendshapes"] == blendshapes

    off = make_pipeline(compute_blendshapes=False)
    assert off.process(clip_frames[0]).faces[0].blendshapes is None
