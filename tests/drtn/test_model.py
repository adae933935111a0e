"""DRTN network, configs and checkpoint I/O (drtn.model)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from drtn.model import (
    CONFIGS,
    DRTN,
    VARIANTS,
    DRTNConfig,
    create_model,
    get_config,
    load_default_model,
    load_model,
    save_checkpoint,
)
from drtn.model import io as model_io
from drtn.model.profile import export_onnx_for_profile

RT_VARIANTS = [f"drtn_rt_{variant}" for variant in VARIANTS]
# A few-millisecond model for optimisation tests.
TINY = dict(
    input_size=64,
    stem_width=8,
    stage_widths=(16, 16, 24, 32),
    stage_depths=(1, 1, 1, 1),
    embed_dim=32,
    branch_dim=16,
    decoder_dim=32,
    num_heads=2,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are small: one intra-op thread is as fast, and does not collapse on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (batch, 3, size, size), generator=generator).float()
    return (pixels - 127.5) / 128  # the 3DDFA input convention


# ---------------------------------------------------------------- configs


def test_registry_has_every_table_iii_row_for_both_sizes():
    assert set(VARIANTS) == {"baseline", "id", "exp", "pose", "id_exp", "id_pose", "exp_pose", "full"}
    for size in ("drtn_rt", "drtn_paper"):
        for variant, branches in VARIANTS.items():
            config = CONFIGS[f"{size}_{variant}"]
            assert config.branches == branches
            assert config.variant == variant
        assert CONFIGS[size] == CONFIGS[f"{size}_full"].replace(name=size)  # the bare name is the full DRTN


def test_unknown_config_key_raises():
    with pytest.raises(ValueError, match="unknown key 'widen_factr'"):
        DRTNConfig.from_dict({"widen_factr": 2})
    with pytest.raises(ValueError, match="unknown key 'widen_factr'"):
        create_model("drtn_rt", widen_factr=2)
    with pytest.raises(ValueError, match="unknown model 'drtn_huge'"):
        create_model("drtn_huge")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(branches=("id", "shape")), "branches"),
        (dict(branches=("id", "id")), "branches"),
        (dict(stage_widths=(8, 16, 32)), "4 stages"),
        (dict(backbone="vit"), "backbone"),
        (dict(embed_dim=100, num_heads=8), "divisible"),
    ],
)
def test_invalid_config_values_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_config("drtn_rt", **overrides)


def test_config_dict_round_trip_and_canonical_branch_order():
    config = get_config("drtn_paper_id_pose")
    assert DRTNConfig.from_dict(config.to_dict()) == config
    assert get_config("drtn_rt", branches=["pose", "id"]).branches == ("id", "pose")


def test_paper_size_has_2048x7x7_deepest_features():
    model = create_model("drtn_paper_baseline").eval()
    with torch.no_grad():
        shallow, deep = model.backbone(_images(1, 224))
    assert tuple(deep.shape) == (1, 2048, 7, 7)
    assert tuple(shallow.shape) == (1, 512, 28, 28)


def test_rt_size_has_4x4_tokens_at_120():
    model = create_model("drtn_rt").eval()
    with torch.no_grad():
        _, deep = model.backbone(_images(1, 120))
    assert tuple(deep.shape[2:]) == (4, 4)
    assert model.config.token_grid == 4


# ---------------------------------------------------------------- forward / backward


def _check_forward_backward(model: DRTN, batch: int) -> None:
    torch.manual_seed(0)
    model.train()
    images = _images(batch, model.config.input_size)
    captured = {}
    if model.decomposition is not None:
        model.decomposition.register_forward_hook(lambda module, args, out: captured.update(paths=out))
    params = model(images)
    assert params.shape == (batch, 62)
    assert torch.isfinite(params).all()
    # Small heads: the untrained output is ~0, i.e. the mean parameters.
    assert params.abs().max() < 0.1
    if "paths" in captured:
        captured["paths"].retain_grad()
    target = torch.randn(batch, 62)
    torch.nn.functional.mse_loss(params, target).backward()

    no_gradient = [name for name, p in model.named_parameters() if p.grad is None or not torch.count_nonzero(p.grad)]
    assert not no_gradient, f"parameters without gradient: {no_gradient}"
    if model.decomposition is not None:
        # Every ordered path (eqs. 5-8, 11-14, 17-20) feeds the output.
        path_grad = captured["paths"].grad
        assert path_grad.shape[0] == 2 * len(model.config.branches)
        for name, grad in zip(model.decomposition.path_names(), path_grad):
            assert torch.count_nonzero(grad), f"path {name} receives no gradient"


@pytest.mark.parametrize("name", RT_VARIANTS)
def test_rt_variant_forward_backward_reaches_every_branch_and_path(name):
    model = create_model(name)
    assert model.config.name == name
    _check_forward_backward(model, batch=2)
    if model.decomposition is not None:
        assert len(model.decomposition.paths) == 2 * len(VARIANTS[name.removeprefix("drtn_rt_")])


@pytest.mark.parametrize("name", ["drtn_paper_baseline", "drtn_paper_full"])
def test_paper_variant_forward_backward(name):
    _check_forward_backward(create_model(name), batch=1)


def test_paths_follow_the_paper_order():
    paths = create_model("drtn_rt").decomposition.path_names()
    assert paths == [
        "id>exp>pose",  # eqs. 5-6, fused by eq. 9
        "id>pose>exp",  # eqs. 7-8, eq. 10
        "exp>id>pose",  # eqs. 11-12, eq. 15
        "exp>pose>id",  # eqs. 13-14, eq. 16
        "pose>id>exp",  # eqs. 17-18, eq. 21
        "pose>exp>id",  # eqs. 19-20, eq. 22
    ]


@pytest.mark.parametrize("batch", [1, 3])
def test_output_shape(batch):
    model = create_model("drtn_rt").eval()
    with torch.no_grad():
        features = model.forward_features(_images(batch, 120))
        params = model.forward_head(features)
    assert features.shape == (batch, 16 + 3, model.config.decoder_dim)
    assert params.shape == (batch, 62)
    torch.testing.assert_close(params, model(_images(batch, 120)))


def test_wrong_input_shape_names_expected_and_received():
    model = create_model("drtn_rt").eval()
    with pytest.raises(ValueError, match=r"expected \(N, 3, 120, 120\), got \(1, 3, 112, 112\)"):
        model(torch.zeros(1, 3, 112, 112))
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 3, 120, 120, dtype=torch.uint8))


def test_small_model_overfits_synthetic_samples():
    torch.manual_seed(0)
    model = create_model("drtn_rt", **TINY).train()
    images = _images(8, TINY["input_size"], seed=1)
    target = torch.randn(8, 62, generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    initial = torch.nn.functional.mse_loss(model(images), target).item()
    loss = initial
    for _ in range(300):
        optimizer.zero_grad()
        loss_tensor = torch.nn.functional.mse_loss(model(images), target)
        loss_tensor.backward()
        optimizer.step()
        loss = loss_tensor.item()
        if loss < initial / 100:
            break
    assert loss < initial / 100, f"MSE fell only from {initial:.3g} to {loss:.3g}"


# ---------------------------------------------------------------- ONNX


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_onnx_export_matches_torch(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = create_model("drtn_rt").eval()
    path = export_onnx_for_profile(model, tmp_path / "drtn_rt.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # dynamic batch
        images = _images(batch, 120, seed=batch)
        (onnx_params,) = session.run(None, {"input": images.numpy()})
        with torch.no_grad():
            torch_params = model(images).numpy()
        np.testing.assert_allclose(onnx_params, torch_params, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path):
    model = create_model("drtn_rt_id_exp").eval()
    with torch.no_grad():  # non-default BN statistics, so buffers are checked too
        model.backbone.stem[0][1].running_mean.uniform_(-1, 1)
    path = save_checkpoint(tmp_path / "run" / "last.pt", model, {"epoch": 7, "nme": 3.5})
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind
    loaded = load_model(path)
    assert loaded.config == model.config
    assert not loaded.training
    images = _images(2, 120)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)
    checkpoint = model_io.read_checkpoint(path)
    assert checkpoint["config_name"] == "drtn_rt_id_exp"
    assert (checkpoint["epoch"], checkpoint["nme"]) == (7, 3.5)


def test_checkpoint_strict_mismatch_names_file_and_keys(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", create_model("drtn_rt"))
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["state_dict"]["head_id.weight"]
    checkpoint["state_dict"]["head_shape.weight"] = torch.zeros(1)
    torch.save(checkpoint, path)
    with pytest.raises(RuntimeError, match="a.pt") as error:
        load_model(path)
    assert "missing keys (1): ['head_id.weight']" in str(error.value)
    assert "unexpected keys (1): ['head_shape.weight']" in str(error.value)

    # A checkpoint whose config says another variant than its weights.
    checkpoint = torch.load(save_checkpoint(tmp_path / "b.pt", create_model("drtn_rt_baseline")), weights_only=True)
    checkpoint["config"]["branches"] = ["id"]
    torch.save(checkpoint, tmp_path / "b.pt")
    with pytest.raises(RuntimeError, match=r"b\.pt.*missing keys"):
        load_model(tmp_path / "b.pt")


def test_checkpoint_rejects_bad_extra_and_missing_files(tmp_path, monkeypatch):
    model = create_model("drtn_rt_baseline")
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "c.pt", model, {"state_dict": {}})
    with pytest.raises(TypeError, match="ndarray"):
        save_checkpoint(tmp_path / "c.pt", model, {"mean": np.zeros(3)})
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_model(tmp_path / "nothing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a DRTN checkpoint"):
        load_model(tmp_path / "other.pt")
    monkeypatch.setattr(model_io, "default_weights_path", lambda: tmp_path / "weights" / "drtn_rt.pt")
    with pytest.raises(FileNotFoundError, match="default DRTN weights not found"):
        load_default_model()


def test_default_weights_path_is_package_data():
    path = model_io.default_weights_path()
    assert path.parts[-3:] == ("drtn", "weights", "drtn_rt.pt")


def test_building_is_fast_and_loads_nothing():
    start = time.perf_counter()
    model = create_model("drtn_rt")
    assert time.perf_counter() - start < 5
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_module_conversions_keep_working():
    """``.double()`` / ``.to(memory_format=...)`` go through ``nn.Module._apply``: nothing may shadow it."""
    model = create_model("drtn_rt_id_exp").eval()
    images = _images(2, 120)
    with torch.no_grad():
        reference = model(images)
        as_double = model.double()(images.double())
        model.float()
        model.to(memory_format=torch.channels_last)
        channels_last = model(images.contiguous(memory_format=torch.channels_last))
    assert as_double.dtype == torch.float64
    torch.testing.assert_close(as_double.float(), reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(channels_last, reference, atol=1e-5, rtol=1e-4)
