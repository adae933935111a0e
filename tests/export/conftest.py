"""Fixtures for the export tests: a real DRTN network with non-trivial outputs, its ONNX export, real crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

HELEN = "data/300w/helen_testset"


def randomized_drtn(calibration_crops: np.ndarray, name: str = "drtn_rt", seed: int = 0) -> torch.nn.Module:
    """An untrained DRTN whose outputs vary by ~0.1-1 std across real faces.

    A freshly built DRTN predicts ~0 (the mean face) for every input by design, so parity checks on it would be
    trivially tight: the heads are scaled up and the BatchNorm statistics calibrated on ``calibration_crops``
    ((K, S, S, 3) uint8) so that the features depend on the image.
    """
    from drtn.model import create_model
    from export.backends.base import preprocess_crops

    torch.manual_seed(seed)
    network = create_model(name)
    for head in (network.head_pose, network.head_id, network.head_exp):
        torch.nn.init.normal_(head.weight, std=0.05)
        torch.nn.init.normal_(head.bias, std=0.1)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        network.train()
        network(torch.from_numpy(preprocess_crops(calibration_crops, network.config.input_size)))
    return network.eval()


@pytest.fixture(scope="session")
def stats(assets_dir):
    from export.onnx_export import load_stats

    return load_stats(assets_dir)


@pytest.fixture(scope="session")
def network(helen_crops):
    return randomized_drtn(helen_crops)


@pytest.fixture(scope="session")
def helen_crops(shared_dir) -> np.ndarray:
    """(8, 120, 120, 3) uint8 real face crops cut around their 300W landmarks."""
    from export.samples import load_face_crops

    folder = shared_dir / HELEN
    if not folder.is_dir():
        pytest.skip(f"300W HELEN test faces not found at {folder}")
    crops = load_face_crops(folder, limit=8)
    assert crops.shape == (8, 120, 120, 3)
    return crops


@pytest.fixture(scope="session")
def exported(tmp_path_factory, network, stats, helen_crops, morphable):
    """The network exported once for the session: (ExportReport, path)."""
    from export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "drtn_rt.onnx"
    report = export_onnx(network, path, stats=stats, check_crops=helen_crops, morphable=morphable)
    return report, path


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail even on a machine that has it."""
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
