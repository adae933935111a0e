"""The DRTN network (paper section III.B-C), its configs and checkpoint I/O.

>>> from drtn.model import create_model
>>> model = create_model("drtn_rt")          # full DRTN, 120x120 crops, random weights
>>> params = model(images)                   # (N, 3, 120, 120) -> (N, 62) normalised params
"""

from __future__ import annotations

from typing import Any

from .config import ATTRIBUTES, CONFIGS, VARIANTS, DRTNConfig, get_config, list_configs
from .io import default_weights_path, load_default_model, load_model, save_checkpoint
from .network import DRTN

__all__ = [
    "ATTRIBUTES",
    "CONFIGS",
    "VARIANTS",
    "DRTN",
    "DRTNConfig",
    "create_model",
    "default_weights_path",
    "get_config",
    "list_configs",
    "load_default_model",
    "load_model",
    "save_checkpoint",
]


def create_model(name: str | DRTNConfig, **overrides: Any) -> DRTN:
    """Build a DRTN from a registered name (``drtn_rt``, ``drtn_rt_baseline``, ``drtn_paper_full``, ...) or a
    config, with optional field overrides. Never loads weights (see :func:`load_model`)."""
    if isinstance(name, DRTNConfig):
        config = name.replace(**overrides) if overrides else name
    else:
        config = get_config(name, **overrides)
    return DRTN(config)
