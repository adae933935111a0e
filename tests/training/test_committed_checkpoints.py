"""Every committed training checkpoint (training/checkpoints/*.pt) can be resumed with its config as committed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drtn.model.io import read_checkpoint
from training.trainer import TrainConfig, _config_dict, config_differences

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = sorted((ROOT / "training" / "checkpoints").glob("*.pt"))


def test_config_differences_ignores_machine_keys_only():
    saved = _config_dict(TrainConfig(threads=1, max_steps=10))
    assert config_differences(saved, _config_dict(TrainConfig(threads=4, max_steps=0, device="cuda"))) == []
    assert config_differences(saved, _config_dict(TrainConfig(learning_rate=0.1))) == ["learning_rate"]


@pytest.mark.parametrize("path", CHECKPOINTS, ids=[p.name for p in CHECKPOINTS])
def test_committed_checkpoint_matches_its_config(path):
    config_path = ROOT / "training" / "configs" / f"{path.stem}.json"
    assert config_path.is_file(), f"{path.name}: no config {config_path.name} to resume it with"
    state = read_checkpoint(path)
    assert {"optimizer", "step", "train_config", "corpus_fingerprint"} <= set(state), f"{path.name}: not resumable"
    config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    assert config_differences(json.loads(state["train_config"]), _config_dict(config)) == []
    assert 0 < int(state["step"]) and path.stat().st_size < 12 * 2**20
