"""Checkpoint I/O: a checkpoint carries its own config, so a model is rebuilt exactly and loaded strictly.

Layout (a ``torch.save`` dict)::

    {"config_name": str, "config": DRTNConfig.to_dict(), "state_dict": {...}, **extra}

``extra`` is for the trainer (epoch, metrics, optimizer state, parameter statistics...). It must hold only
tensors and plain Python values, so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drtn.outputs import atomic_write

from .config import DRTNConfig
from .network import DRTN

logger = logging.getLogger(__name__)

RESERVED_KEYS = ("config_name", "config", "state_dict")
DEFAULT_WEIGHTS_NAME = "drtn_rt.pt"
_PLAIN_TYPES = (type(None), bool, int, float, str, torch.Tensor, torch.Size, torch.dtype)


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` loads under ``torch.load(weights_only=True)``."""
    if isinstance(value, _PLAIN_TYPES):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_plain(key, f"{where} key")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"checkpoint extra {where}: {type(value).__name__} is not a tensor or plain Python value "
        "(convert numpy arrays with torch.as_tensor, dataclasses with asdict)"
    )


def save_checkpoint(path: str | os.PathLike, model: DRTN, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (its config and state dict) and ``extra`` to ``path`` atomically.

    The file is written to a temporary name in the same folder and renamed, so a reader never sees half a
    checkpoint and an interrupted save leaves the previous file intact.

    Returns:
        The path written.
    """
    path = Path(path)
    if not isinstance(model, DRTN):
        raise TypeError(f"model: expected a DRTN, got {type(model).__name__}")
    extra = dict(extra or {})
    clash = [key for key in RESERVED_KEYS if key in extra]
    if clash:
        raise ValueError(f"extra: keys {clash} are reserved for the model; rename them")
    _check_plain(extra, "extra")
    checkpoint = {
        "config_name": model.config.name,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    with atomic_write(path) as file:  # temp file beside it, fsync, rename; removed on error
        torch.save(checkpoint, file)
    logger.info("saved %s checkpoint to %s", model.config.name, path)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (config, state dict and the trainer's extras), validated for the model keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not a DRTN checkpoint")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises anything on foreign bytes; say which file, in one line
        lines = str(error).strip().splitlines()
        useful = lines and "weights_only" not in lines[0]  # torch's advice to unpickle untrusted bytes: not given
        reason = f"{type(error).__name__}: {lines[0][:160]}" if useful else type(error).__name__
        raise ValueError(f"{path}: cannot read the checkpoint, corrupt or not a torch.save file ({reason})") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in RESERVED_KEYS):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: not a DRTN checkpoint (expected keys {list(RESERVED_KEYS)}, found {found})")
    return checkpoint


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` whose error names ``source`` and the missing / unexpected / resized keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    resized = sorted(
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state_dict)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or resized:
        parts = [f"{source}: state dict does not match the model"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
        if resized:
            parts.append(f"shape mismatches ({len(resized)}): {resized}")
        raise RuntimeError("; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> DRTN:
    """Rebuild the model from the config stored in the checkpoint and load its weights strictly.

    Returns:
        The DRTN in eval mode.
    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a DRTN checkpoint, or its config has unknown keys.
        RuntimeError: the state dict does not match the config (message names the file and the keys).
    """
    checkpoint = read_checkpoint(path, map_location)
    if not isinstance(checkpoint["config"], Mapping) or not isinstance(checkpoint["state_dict"], Mapping):
        raise ValueError(f"{path}: not a DRTN checkpoint (its config or state_dict is not a mapping)")
    config = DRTNConfig.from_dict(checkpoint["config"])
    model = DRTN(config)
    load_state_dict_strict(model, checkpoint["state_dict"], str(path))
    return model.eval()


def default_weights_path() -> Path:
    """``drtn/weights/drtn_rt.pt``: the trained real-time model shipped as package data."""
    return Path(str(resources.files("drtn") / "weights" / DEFAULT_WEIGHTS_NAME))


def load_default_model(map_location: str | torch.device = "cpu") -> DRTN:
    """The shipped real-time model (:func:`default_weights_path`), in eval mode."""
    path = default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"default DRTN weights not found at {path}: train a model (python main.py train) and copy its "
            f"checkpoint there, or load one explicitly with drtn.model.load_model(path)"
        )
    return load_model(path, map_location)
