"""drtn.losses: eqs. 24-28 on the real morphable model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drtn.crop import model_to_crop
from drtn.losses import DRTNLoss, LossConfig
from drtn.morphable_torch import TorchMorphable
from drtn.params import NUM_PARAMS, ParamStats, compose_pose, euler_to_rotation

TERMS = ("id", "exp", "pose", "lm68")


@pytest.fixture(scope="module")
def loss(morphable) -> DRTNLoss:
    return DRTNLoss(morphable)


def realistic_params(morphable, n: int, seed: int = 0) -> torch.Tensor:
    """(n, 62) float32: a proper s*R pose; identity and expression drawn from the statistics."""
    rng = np.random.default_rng(seed)
    params = morphable.stats.mean + morphable.stats.std * rng.normal(size=(n, NUM_PARAMS))
    rotation = euler_to_rotation(rng.normal(0, 0.2, n), rng.uniform(-1.2, 1.2, n), rng.normal(0, 0.2, n))
    translation = np.stack([rng.normal(60, 5, n), rng.normal(60, 5, n), rng.normal(-60, 10, n)], axis=1)
    params[:, :12] = compose_pose(rng.uniform(3.5e-4, 5e-4, n), rotation, translation).reshape(n, 12)
    return torch.as_tensor(params, dtype=torch.float32)


def test_paper_weights():
    config = LossConfig()
    assert (config.lambda_id, config.lambda_exp, config.lambda_pose) == (1e-3, 1e-4, 1e-4)
    assert config.lambda_68 == 1e-4 and config.normalized_param_weight == 0.0


def test_config_rejects_unknown_and_bad_values():
    assert LossConfig.from_dict({"lambda_68": 2e-4, "pose_points": "sparse"}) == LossConfig(
        lambda_68=2e-4, pose_points="sparse"
    )
    with pytest.raises(ValueError, match="unknown key 'lamda_id'"):
        LossConfig.from_dict({"lamda_id": 1.0})
    with pytest.raises(ValueError, match="lambda_pose"):
        LossConfig(lambda_pose=-1.0)
    with pytest.raises(ValueError, match="pose_points"):
        LossConfig(pose_points="mesh")


def test_zero_when_prediction_is_target(loss, morphable):
    target = realistic_params(morphable, 4)
    terms = loss(target.clone(), target)
    assert set(terms) == {"id", "exp", "pose", "lm68", "param", "total"}
    for name, value in terms.items():
        assert value.shape == () and float(value) == pytest.approx(0.0, abs=1e-6), name


@pytest.mark.parametrize(
    "group, changed",
    [
        ("identity", {"id", "lm68"}),
        ("expression", {"exp", "lm68"}),
        ("rotation", {"pose", "lm68"}),
        ("translation", {"pose", "lm68"}),
    ],
)
def test_each_term_responds_to_its_own_group(loss, morphable, group, changed):
    target = realistic_params(morphable, 3, seed=1)
    pred = target.clone()
    std = torch.as_tensor(morphable.stats.std)
    if group == "identity":
        pred[:, 12:52] += 0.5 * std[12:52]
    elif group == "expression":
        pred[:, 52:] += 0.5 * std[52:]
    elif group == "rotation":
        pose = pred[:, :12].reshape(3, 3, 4).double()
        small = torch.as_tensor(euler_to_rotation(0.05, -0.1, 0.03)[0])
        pred[:, :12] = torch.cat([pose[:, :, :3] @ small, pose[:, :, 3:]], dim=2).reshape(3, 12).float()
    else:
        pred[:, [3, 7]] += 2.0
    terms = loss(pred, target, reduction="none")
    for name in TERMS:
        if name in changed:
            assert (terms[name] > 1e-3).all(), (group, name, terms[name])
        else:
            assert (terms[name].abs() < 1e-6).all(), (group, name, terms[name])


def test_pixel_units(loss, morphable):
    """A 2-px shift of the translation costs exactly 2^2 px^2 in both projection terms."""
    target = realistic_params(morphable, 2, seed=2)
    pred = target.clone()
    pred[:, 3] += 2.0
    terms = loss(pred, target)
    assert float(terms["pose"]) == pytest.approx(4.0, rel=1e-4)
    assert float(terms["lm68"]) == pytest.approx(4.0, rel=1e-4)


def test_depth_alignment(morphable):
    """With depth on, t_z is free but the third pose row is supervised; the paper's P_r sees neither."""
    target = realistic_params(morphable, 2, seed=3)
    shifted = target.clone()
    shifted[:, 11] += 25.0  # t_z
    tilted = target.clone()
    tilted[:, 8:11] *= 0.5  # third row of s*R: only depth changes
    with_depth, paper = DRTNLoss(morphable, LossConfig(depth=True)), DRTNLoss(morphable, LossConfig(depth=False))
    assert float(with_depth(shifted, target)["pose"]) == pytest.approx(0.0, abs=1e-4)
    assert float(with_depth(tilted, target)["pose"]) > 1.0
    assert float(paper(tilted, target)["pose"]) == pytest.approx(0.0, abs=1e-6)


def test_sparse_pose_points(morphable):
    target = realistic_params(morphable, 2, seed=4)
    pred = target.clone()
    pred[:, 7] -= 3.0
    terms = DRTNLoss(morphable, LossConfig(pose_points="sparse"))(pred, target)
    assert float(terms["pose"]) == pytest.approx(9.0, rel=1e-4)


def test_total_is_weighted_sum(morphable):
    config = LossConfig(normalized_param_weight=0.5)
    loss = DRTNLoss(morphable, config)
    target = realistic_params(morphable, 3, seed=5)
    pred = realistic_params(morphable, 3, seed=6)
    terms = loss(pred, target)
    expected = (
        config.lambda_id * terms["id"]
        + config.lambda_exp * terms["exp"]
        + config.lambda_pose * terms["pose"]
        + config.lambda_68 * terms["lm68"]
        + 0.5 * terms["param"]
    )
    assert float(terms["total"]) == pytest.approx(float(expected), rel=1e-5)
    std = torch.as_tensor(morphable.stats.std)
    assert float(terms["param"]) == pytest.approx(float((((pred - target) / std) ** 2).mean()), rel=1e-5)


def test_identity_term_is_dense_vertex_error(morphable):
    """The Gram-matrix shortcut equals the per-point mean of ||s * A_id (alpha - alpha_gt)||^2 on 4,096 points."""
    target = realistic_params(morphable, 2, seed=7)
    pred = target.clone()
    pred[:, 12:52] = realistic_params(morphable, 2, seed=8)[:, 12:52]
    terms = DRTNLoss(morphable).double()(pred.double(), target.double(), reduction="none")
    delta = (pred - target).double().numpy()[:, 12:52]
    scale = np.linalg.norm(target.double().numpy()[:, :12].reshape(2, 3, 4)[:, :, :3], axis=(1, 2)) / np.sqrt(3)
    offsets = (delta @ morphable.dense.identity.T).reshape(2, -1, 3) * scale[:, None, None]
    np.testing.assert_allclose(terms["id"].numpy(), (offsets**2).sum(axis=2).mean(axis=1), rtol=1e-4)


def test_gradients_flow(loss, morphable):
    target = realistic_params(morphable, 4, seed=9)
    pred = (target + 0.3 * torch.as_tensor(morphable.stats.std) * torch.randn(4, NUM_PARAMS)).requires_grad_(True)
    target.requires_grad_(True)  # e.g. a teacher's output: the loss must not train it
    loss(pred, target)["total"].backward()
    assert target.grad is None
    grad = pred.grad
    assert torch.isfinite(grad).all()
    for part in (slice(0, 12), slice(12, 52), slice(52, 62)):
        assert (grad[:, part].abs().sum(dim=1) > 0).all()


def test_pose_term_gradient_reaches_only_pose(loss, morphable):
    target = realistic_params(morphable, 2, seed=10)
    pred = realistic_params(morphable, 2, seed=11).requires_grad_(True)
    loss(pred, target)["pose"].backward()
    assert pred.grad[:, :12].abs().sum() > 0
    assert pred.grad[:, 12:].abs().sum() == 0


def test_gradcheck_float64(morphable):
    loss = DRTNLoss(morphable, LossConfig(normalized_param_weight=1.0)).double()
    std = torch.as_tensor(morphable.stats.std, dtype=torch.float64)
    target = realistic_params(morphable, 2, seed=12).double()
    pred = (target + 0.2 * std * torch.randn(2, NUM_PARAMS, dtype=torch.float64)) / std
    assert torch.autograd.gradcheck(
        lambda x: loss(x * std, target)["total"], (pred.requires_grad_(True),), eps=1e-5, atol=1e-5, fast_mode=True
    )


def test_from_normalized_matches_forward(loss, morphable):
    target = realistic_params(morphable, 3, seed=13)
    normalized = torch.randn(3, NUM_PARAMS) * 0.3
    direct = loss(morphable.stats.denormalize(normalized), target)
    via_module = loss.from_normalized(normalized, target)
    stats = ParamStats(morphable.stats.mean, morphable.stats.std)
    via_stats = loss.from_normalized(normalized, target, stats=stats)
    for name in direct:
        assert float(via_module[name]) == pytest.approx(float(direct[name]), rel=1e-5)
        assert float(via_stats[name]) == pytest.approx(float(direct[name]), rel=1e-5)


def test_lambda_68_balances_pose_at_initialisation(loss, morphable):
    """The documented choice: at the start (mean prediction vs targets drawn from the statistics) the weighted
    landmark term is level with the weighted pose term, and both are the largest."""
    generator = torch.Generator().manual_seed(0)
    mean, std = torch.as_tensor(morphable.stats.mean), torch.as_tensor(morphable.stats.std)
    target = mean + std * torch.randn(512, NUM_PARAMS, generator=generator)
    with torch.no_grad():
        terms = loss(mean.expand(512, NUM_PARAMS), target)
    config = loss.config
    weighted = {
        "id": config.lambda_id * terms["id"],
        "exp": config.lambda_exp * terms["exp"],
        "pose": config.lambda_pose * terms["pose"],
        "lm68": config.lambda_68 * terms["lm68"],
    }
    assert 0.5 < float(weighted["lm68"] / weighted["pose"]) < 2.0
    assert min(weighted["pose"], weighted["lm68"]) > max(weighted["id"], weighted["exp"])
    # raw terms are O(1..1e4) px^2, not the ~1e10 of BFM units
    for name in TERMS:
        assert 1e-2 < float(terms[name]) < 1e4, (name, float(terms[name]))


def test_landmark_loss_2d(loss, morphable):
    params = realistic_params(morphable, 3, seed=14)
    with torch.no_grad():
        landmarks_crop = model_to_crop(TorchMorphable(morphable).landmarks(params))[:, :2]
    assert float(loss.landmark_loss_2d(params, landmarks_crop)) == pytest.approx(0.0, abs=1e-6)
    shifted = landmarks_crop.clone()
    shifted[:, 1] += 3.0  # 3 px down in the crop
    assert float(loss.landmark_loss_2d(params, shifted)) == pytest.approx(9.0, rel=1e-4)
    # an invisible outlier is ignored; a visible one counts
    outlier = landmarks_crop.clone()
    outlier[:, 0, 5] += 68.0
    visibility = torch.ones(3, 68)
    visibility[:, 5] = 0
    assert float(loss.landmark_loss_2d(params, outlier, visibility)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss.landmark_loss_2d(params, outlier)) == pytest.approx(68.0, rel=1e-4)
    per_face = loss.landmark_loss_2d(params, outlier, reduction="none")
    assert per_face.shape == (3,)
    # gradients reach every parameter group
    pred = params.clone().requires_grad_(True)
    loss.landmark_loss_2d(pred, shifted).backward()
    assert all(pred.grad[:, part].abs().sum() > 0 for part in (slice(0, 12), slice(12, 52), slice(52, 62)))


def test_bad_inputs_name_the_shape(loss, morphable):
    target = realistic_params(morphable, 2)
    with pytest.raises(ValueError, match=r"\(2, 61\)"):
        loss(target[:, :61], target)
    with pytest.raises(ValueError, match=r"\(3, 62\).*\(2, 62\)"):
        loss(torch.cat([target, target[:1]]), target)
    with pytest.raises(ValueError, match=r"\(2, 68, 2\)"):
        loss.landmark_loss_2d(target, torch.zeros(2, 68, 2))
    with pytest.raises(ValueError, match=r"visibility.*\(2, 67\)"):
        loss.landmark_loss_2d(target, torch.zeros(2, 2, 68), torch.ones(2, 67))
    with pytest.raises(ValueError, match="reduction"):
        loss(target, target, reduction="sum")
