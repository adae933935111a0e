"""Reduced-scale Table III: train each branch variant with the same recipe and budget, compare held-out NME.

Every Table III row is a model config (``drtn_rt_baseline``, ``drtn_rt_id``, ..., ``drtn_rt_full``); each is
trained from scratch on the same corpus, seed and schedule, then scored on the validation split with the
inference crop (NME2D, Table I layout over the fitted yaw).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from drtn.model import VARIANTS
from training.trainer import TrainConfig, Trainer

LOGGER = logging.getLogger(__name__)


def run_ablation(base: TrainConfig, corpus, morphable, out_dir: str | Path, size: str = "drtn_rt", variants=None) -> str:
    """Train every variant for ``base.epochs`` and return a markdown table of validation NME2D."""
    out_dir = Path(out_dir)
    rows = []
    for variant in variants or VARIANTS:
        name = f"{size}_{variant}"
        config = replace(base, model=name)
        trainer = Trainer(config, corpus, morphable, out_dir / name)
        if trainer.checkpoint_path().is_file():
            trainer.resume(trainer.checkpoint_path())
        trainer.train()
        nme = trainer.validate()
        parameters = sum(p.numel() for p in trainer.model.parameters())
        rows.append((variant, parameters, nme))
        LOGGER.info("%s: val NME2D %.3f%%", name, 100 * nme)
    lines = [f"| variant ({size}) | parameters | val NME2D ({base.val_split}, %) |", "|---|---:|---:|"]
    lines += [f"| {variant} | {parameters / 1e6:.3f} M | {100 * nme:.2f} |" for variant, parameters, nme in rows]
    table = "\n".join(lines)
    (out_dir / "ablation.md").write_text(table + "\n")
    return table
