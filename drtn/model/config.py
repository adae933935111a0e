"""Frozen configs of the DRTN network and the registry of named variants.

Two sizes, each with every row of the paper's Table III as a switch on the attribute branches:

- ``drtn_paper``: the paper's size. 224x224 input, ResNet-50-like bottleneck stages (3, 4, 6, 3) whose
  deepest features are 2048x7x7 (section III.B).
- ``drtn_rt``: the real-time size for 120x120 crops (the 3DDFA input). A MobileNetV2-style inverted-residual
  backbone at about half width (stride 32 -> 4x4 tokens), a one-layer transformer at dim 128.

Variant suffixes (Table III, top to bottom): ``_baseline`` (no attribute branches), ``_pose`` / ``_exp`` /
``_id`` (one branch kept: "w/o identity and expression branches" keeps ``pose``), ``_exp_pose`` / ``_id_pose`` /
``_id_exp`` (two kept: "w/o identity branch" keeps ``exp`` and ``pose``), ``_full`` (all three). A bare size name
(``drtn_rt``, ``drtn_paper``) is the full DRTN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from drtn.configs import check_known_keys

ATTRIBUTES = ("id", "exp", "pose")

# Table III rows, in the paper's order, as the branches each keeps.
VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "pose": ("pose",),  # DRTN w/o identity and expression branches
    "exp": ("exp",),  # DRTN w/o identity and pose branches
    "id": ("id",),  # DRTN w/o expression and pose branches
    "exp_pose": ("exp", "pose"),  # DRTN w/o identity branch
    "id_pose": ("id", "pose"),  # DRTN w/o expression branch
    "id_exp": ("id", "exp"),  # DRTN w/o pose branch
    "full": ATTRIBUTES,
}


@dataclass(frozen=True)
class DRTNConfig:
    """Every hyper-parameter of a DRTN network; building a model from it never loads weights.

    Attributes:
        backbone: ``"inverted_residual"`` (MobileNetV2-style blocks) or ``"bottleneck"`` (ResNet-50-style).
        input_size: side of the square input crop in pixels (the network is built for this size).
        stem_width: channels of the conv3x3 stride-2 stem.
        stage_widths: output channels of the four stages (each stage starts with a stride-2 block).
        stage_depths: blocks per stage.
        expand_ratio: inverted-residual expansion (``inverted_residual`` only).
        first_expand_ratio: expansion of the very first block, which runs at the highest resolution
            (1 as in MobileNetV2: a depthwise conv and a projection only).
        bottleneck_ratio: bottleneck channel reduction (``bottleneck`` only; 4 as in ResNet-50).
        stem_pool: a 3x3 stride-2 max-pool after the stem (ResNet style); total stride becomes 32 either way
            because the first stage of the inverted-residual backbone then does not downsample.
        embed_dim: token width of the encoder transformer block (a conv1x1 maps the deepest features to it).
        num_heads: attention heads in both transformers.
        encoder_depth: encoder transformer layers on the deepest features.
        mlp_ratio: hidden width of the transformer MLPs as a multiple of the token width.
        branch_dim: width of the attribute features E (the Hadamard products of eqs. 9-22 are in this space).
        decoder_dim: token width of the decoder (its conv1x1 maps ``embed_dim`` to it).
        decoder_depth: decoder transformer layers (no position encoding).
        branches: attribute branches kept, a subset of ``("id", "exp", "pose")`` in that order; empty is the
            Table III baseline.
        head_init_std: std of the final fully connected heads' weights; small so that the initial output is
            ~0, i.e. the mean parameters.
    """

    name: str = "drtn_rt"
    backbone: str = "inverted_residual"
    input_size: int = 120
    stem_width: int = 16
    stem_pool: bool = False
    stage_widths: tuple[int, ...] = (24, 32, 64, 128)
    stage_depths: tuple[int, ...] = (1, 2, 3, 2)
    expand_ratio: int = 4
    first_expand_ratio: int = 1
    bottleneck_ratio: int = 4
    embed_dim: int = 128
    num_heads: int = 4
    encoder_depth: int = 1
    mlp_ratio: float = 2.0
    branch_dim: int = 64
    decoder_dim: int = 128
    decoder_depth: int = 1
    branches: tuple[str, ...] = ATTRIBUTES
    head_init_std: float = 1e-3

    def __post_init__(self) -> None:
        # Lists (from JSON or a checkpoint) become tuples so the config stays hashable and comparable.
        for key in ("stage_widths", "stage_depths", "branches"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if self.backbone not in ("inverted_residual", "bottleneck"):
            raise ValueError(f"backbone: expected 'inverted_residual' or 'bottleneck', got {self.backbone!r}")
        if len(self.stage_widths) != 4 or len(self.stage_depths) != 4:
            raise ValueError(
                f"stage_widths / stage_depths: expected 4 stages each, got {self.stage_widths} / {self.stage_depths}"
            )
        if any(d < 1 for d in self.stage_depths):
            raise ValueError(f"stage_depths: every stage needs at least one block, got {self.stage_depths}")
        unknown = [b for b in self.branches if b not in ATTRIBUTES]
        if unknown or len(set(self.branches)) != len(self.branches):
            raise ValueError(f"branches: expected distinct names from {ATTRIBUTES}, got {self.branches}")
        # Canonical order, so ('exp', 'id') and ('id', 'exp') build the same network and state dict.
        object.__setattr__(self, "branches", tuple(a for a in ATTRIBUTES if a in self.branches))
        for key in ("embed_dim", "decoder_dim"):
            if getattr(self, key) % self.num_heads:
                raise ValueError(f"{key}={getattr(self, key)} is not divisible by num_heads={self.num_heads}")
        if self.input_size < 32:
            raise ValueError(f"input_size: expected at least 32 pixels (total stride 32), got {self.input_size}")

    @property
    def token_grid(self) -> int:
        """Side of the deepest feature map: five stride-2 steps, each ceil(n / 2) (120 -> 4, 224 -> 7)."""
        side = self.input_size
        for _ in range(5):
            side = (side + 1) // 2
        return side

    @property
    def variant(self) -> str:
        """The Table III row this config is (``baseline``, ``id``, ..., ``full``)."""
        for variant, branches in VARIANTS.items():
            if branches == self.branches:
                return variant
        raise AssertionError(self.branches)  # unreachable: every subset is a variant

    def to_dict(self) -> dict[str, Any]:
        """JSON/pickle-friendly dict (tuples become lists); :meth:`from_dict` inverts it."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @staticmethod
    def from_dict(values: Mapping[str, Any]) -> "DRTNConfig":
        """Build a config from a mapping; an unknown key raises ``ValueError: unknown key 'x'``."""
        check_known_keys(DRTNConfig, values)
        return DRTNConfig(**dict(values))

    def replace(self, **overrides: Any) -> "DRTNConfig":
        """A copy with some fields changed; unknown keys raise ``ValueError``."""
        check_known_keys(DRTNConfig, overrides)
        values = self.to_dict()
        values.update(overrides)
        return DRTNConfig.from_dict(values)


# The two sizes; variants differ only in `branches` (and `name`).
_SIZES: dict[str, DRTNConfig] = {
    # Real time, 120x120: ~56 MFLOPs, sized to run at or under the 3DDFA_V2 MobileNet-0.5 teacher's latency.
    "drtn_rt": DRTNConfig(name="drtn_rt"),
    # A wider real-time size for a GPU session (0.90 M parameters): last two stages x1.25 / x1.125, token width 144.
    # ORT batch 1 (quiet machine): 1.16x faster than the peer at 1 thread, 1.07x slower at 2 (x1.5 everywhere was
    # 2.1x slower): at the limit; rerun `main.py bench --untrained drtn_rt_wide` before shipping a model of it.
    "drtn_rt_wide": DRTNConfig(
        name="drtn_rt_wide",
        stage_widths=(24, 32, 80, 144),
        embed_dim=144,
        branch_dim=72,
        decoder_dim=144,
    ),
    # The paper's size: ResNet-50 stages (3, 4, 6, 3) -> 2048x7x7 at 224 input; the transformer runs at 512
    # after a conv1x1 reduction of the 2048 channels (a TRT-ViT / BoTNet-style bottleneck transformer block).
    "drtn_paper": DRTNConfig(
        name="drtn_paper",
        backbone="bottleneck",
        input_size=224,
        stem_width=64,
        stem_pool=True,
        stage_widths=(256, 512, 1024, 2048),
        stage_depths=(3, 4, 6, 3),
        embed_dim=512,
        num_heads=8,
        encoder_depth=1,
        mlp_ratio=4.0,
        branch_dim=512,
        decoder_dim=512,
        decoder_depth=1,
    ),
}


def _build_registry() -> dict[str, DRTNConfig]:
    registry: dict[str, DRTNConfig] = {}
    for size, base in _SIZES.items():
        for variant, branches in VARIANTS.items():
            name = f"{size}_{variant}"
            registry[name] = dataclasses.replace(base, name=name, branches=branches)
        registry[size] = dataclasses.replace(base, name=size, branches=VARIANTS["full"])
    return registry


CONFIGS: dict[str, DRTNConfig] = _build_registry()


def list_configs() -> list[str]:
    """Names accepted by :func:`get_config` / ``create_model``."""
    return sorted(CONFIGS)


def get_config(name: str, **overrides: Any) -> DRTNConfig:
    """The named config with optional field overrides (unknown names or keys raise ``ValueError``)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model {name!r}; expected one of: {', '.join(list_configs())}")
    config = CONFIGS[name]
    return config.replace(**overrides) if overrides else config
