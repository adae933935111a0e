"""The DRTN network of the paper (section III.B-C), as one export-friendly ``nn.Module``.

Data flow (shapes for ``drtn_rt``: 120x120 input, 4x4 tokens, dim 128, full DRTN)::

    images (N, 3, 120, 120)  BGR, (pixel - 127.5) / 128
      -> conv3x3 stem, four stages                       (N, 128, 4, 4); stage 2 also kept (shallow features)
      -> encoder transformer block (MHSA)                 (N, 16, 128) tokens
      -> attribute decomposition, eqs. 5-22               (6, N, 64): one Hadamard-fused T per ordered path
      -> fusion R, eq. 23 (+ each branch's shallow feature) (N, 3, 128): one attribute token per branch
      -> decoder: conv1x1 on the tokens + transformer layer over [spatial tokens, attribute tokens], no position
         encoding; mean over tokens                     (N, 128)
      -> FC heads v_pose (12) | alpha_id (40) | beta_exp (10)  (N, 62) normalised parameters

Everything is plain Conv / BatchNorm / ReLU / Linear / MatMul / Softmax / LayerNorm so it exports to ONNX
(opset 17) and TensorRT; the BatchNorms fold into the convolutions at export.
"""

from __future__ import annotations

from itertools import permutations

import torch
from torch import Tensor, nn

from drtn.params import NUM_EXP, NUM_ID, NUM_POSE

from .config import ATTRIBUTES, DRTNConfig

__all__ = ["DRTN"]


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True) if act else nn.Identity(),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [conv1x1 expand] -> depthwise conv3x3 (stride) -> linear conv1x1 projection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden), ConvBNAct(hidden, out_channels, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck (v1.5: the stride sits on the 3x3 conv)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, reduction: int) -> None:
        super().__init__()
        mid = out_channels // reduction
        self.block = nn.Sequential(
            ConvBNAct(in_channels, mid, 1),
            ConvBNAct(mid, mid, 3, stride),
            ConvBNAct(mid, out_channels, 1, act=False),
        )
        self.shortcut = (
            ConvBNAct(in_channels, out_channels, 1, stride, act=False)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.block(x) + self.shortcut(x))


class Backbone(nn.Module):
    """Conv3x3 stride-2 stem and four stages, total stride 32 (section III.B, "four layer layers")."""

    def __init__(self, config: DRTNConfig) -> None:
        super().__init__()
        stem: list[nn.Module] = [ConvBNAct(3, config.stem_width, 3, 2)]
        if config.stem_pool:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        stages = []
        in_channels = config.stem_width
        for index, (width, depth) in enumerate(zip(config.stage_widths, config.stage_depths)):
            blocks: list[nn.Module] = []
            for block_index in range(depth):
                stride = 2 if block_index == 0 and not (index == 0 and config.stem_pool) else 1
                if config.backbone == "bottleneck":
                    blocks.append(Bottleneck(in_channels, width, stride, config.bottleneck_ratio))
                else:
                    first = index == 0 and block_index == 0
                    expand = config.first_expand_ratio if first else config.expand_ratio
                    blocks.append(InvertedResidual(in_channels, width, stride, expand))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, S, S) -> (stage-2 features (N, C2, S/8, S/8), deepest features (N, C4, S/32, S/32))."""
        x = self.stem(images)
        shallow = x
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == 1:
                shallow = x
        return shallow, x


class MultiHeadSelfAttention(nn.Module):
    """Plain multi-head self-attention over (N, L, D) tokens (explicit MatMul/Softmax: exports everywhere).

    ``num_tokens`` (L) is fixed at construction so every reshape has a constant shape in ONNX.
    """

    def __init__(self, dim: int, num_heads: int, num_tokens: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_tokens = num_tokens
        self.dim = dim
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        length, dim = self.num_tokens, self.dim
        # Static sizes and -1 for the batch: one Reshape with a constant shape in ONNX, no Shape/Gather chains.
        qkv = self.qkv(x).reshape(-1, length, 3 * self.num_heads, self.head_dim).transpose(1, 2)
        query, key, value = torch.split(qkv, self.num_heads, dim=1)  # (N, H, L, head_dim) each
        attention = torch.softmax((query * self.scale) @ key.transpose(-2, -1), dim=-1)
        out = (attention @ value).transpose(1, 2).reshape(-1, length, dim)
        return self.proj(out)


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer: x + MHSA(LN(x)), then x + MLP(LN(x)) (ReLU MLP)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, num_tokens: int) -> None:
        super().__init__()
        hidden = int(round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attention = MultiHeadSelfAttention(dim, num_heads, num_tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EncoderTransformer(nn.Module):
    """The transformer block on the deepest features: conv1x1 to ``embed_dim``, learned positions, MHSA layers.

    (N, C4, g, g) -> (N, g*g, embed_dim) tokens, layer-normalised.
    """

    def __init__(self, config: DRTNConfig) -> None:
        super().__init__()
        self.proj = ConvBNAct(config.stage_widths[-1], config.embed_dim, 1, act=False)
        self.position = nn.Parameter(torch.zeros(1, config.token_grid**2, config.embed_dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.layers = nn.Sequential(
            *(
                TransformerLayer(config.embed_dim, config.num_heads, config.mlp_ratio, config.token_grid**2)
                for _ in range(config.encoder_depth)
            )
        )
        self.norm = nn.LayerNorm(config.embed_dim)

    def forward(self, features: Tensor) -> Tensor:
        embed_dim, num_tokens = self.position.shape[2], self.position.shape[1]
        tokens = self.proj(features).reshape(-1, embed_dim, num_tokens).transpose(1, 2) + self.position
        return self.norm(self.layers(tokens))


class AttributeEncoder(nn.Module):
    """One attribute encoder E_a (a in id / exp / pose), shared by every path that applies it.

    E_a(I | root, previous) = W_out ReLU(W_image u_a(I) + U_root root + U_previous previous) + b_out, where
    u_a(I) is an attention pooling of the image tokens with a learned per-attribute query, and the conditions
    missing at the first steps of a path are left out (eqs. 5-6: E_id(I); E_exp(I | E_id);
    E_pose(I | E_id, E_id,exp)).
    """

    def __init__(self, embed_dim: int, branch_dim: int, conditioned: bool) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(embed_dim))  # zero: starts as mean pooling
        self.image = nn.Linear(embed_dim, branch_dim)
        # Only built where some path applies this encoder after another (not for the root of a single-branch
        # variant), so that every parameter of every variant is trained.
        if conditioned:
            self.condition_root = nn.Linear(branch_dim, branch_dim, bias=False)
            self.condition_previous = nn.Linear(branch_dim, branch_dim, bias=False)
        self.out = nn.Linear(branch_dim, branch_dim)
        # Output ~1 at start: the Hadamard products of eqs. 9-22 then begin near 1 + the sum of their factors'
        # deviations instead of a vanishing product of three small numbers.
        nn.init.ones_(self.out.bias)


class AttributeDecomposition(nn.Module):
    """Identity, expression and pose branches: eqs. 5-8, 11-14, 17-20 and their Hadamard fusions 9-10, 15-16, 21-22.

    For a kept branch b and the two other attributes in both orders (o1, o2), the path is
    ``E_b = E_b(I)``, ``E_b,o1 = E_o1(I | E_b)``, ``E_b,o1,o2 = E_o2(I | E_b, E_b,o1)`` and its fused feature
    ``T_(b,o1,o2) = E_b * E_b,o1 * E_b,o1,o2``. The applications of one step of every path are evaluated together
    (one batched MatMul chain per step), so the latency hardly depends on the number of paths.
    """

    def __init__(self, config: DRTNConfig) -> None:
        super().__init__()
        self.branches = config.branches
        # Ordered paths (b, o1, o2), in the paper's order: (id,exp,pose), (id,pose,exp), (exp,id,pose), ...
        self.paths = [(b,) + order for b in self.branches for order in permutations([a for a in ATTRIBUTES if a != b])]
        conditioned = {a for path in self.paths for a in path[1:]}
        self.encoders = nn.ModuleDict(
            {a: AttributeEncoder(config.embed_dim, config.branch_dim, a in conditioned) for a in ATTRIBUTES}
        )
        self._root_of_path = [self.branches.index(path[0]) for path in self.paths]
        self._pool_scale = config.embed_dim**-0.5

    def path_names(self) -> list[str]:
        """``"id>exp>pose"``-style names of the paths, in output order."""
        return [">".join(path) for path in self.paths]

    def _stacked(self, attributes: list[str], *names: str) -> tuple[Tensor, Tensor | None]:
        """Weights (P, D_in, D_out) of layer(s) ``names`` of encoders ``attributes`` (inputs concatenated if
        several names), and their stacked biases (P, 1, D_out) or None. ONNX Runtime constant-folds this."""
        weight = torch.stack([torch.cat([getattr(self.encoders[a], n).weight.t() for n in names], dim=0) for a in attributes])
        first = getattr(self.encoders[attributes[0]], names[0])
        if first.bias is None:
            return weight, None
        return weight, torch.stack([getattr(self.encoders[a], names[0]).bias for a in attributes]).unsqueeze(1)

    def _encode(self, x: Tensor, attributes: list[str], *names: str) -> Tensor:
        weight, bias = self._stacked(attributes, *names)
        return x @ weight if bias is None else x @ weight + bias

    def forward(self, tokens: Tensor) -> Tensor:
        """(N, L, D) image tokens -> (P, N, branch_dim) fused path features T, P = 2 * len(branches)."""
        # u_a: attention pooling of the tokens per attribute, (N, L, 3) weights over the L tokens.
        queries = torch.stack([self.encoders[a].query for a in ATTRIBUTES], dim=1)
        weights = torch.softmax((tokens @ queries) * self._pool_scale, dim=1)
        pooled = (weights.transpose(1, 2) @ tokens).transpose(0, 1)  # (3, N, D)
        image_code = self._encode(pooled, list(ATTRIBUTES), "image")  # (3, N, Dk): W_image u_a + b for every a

        def code(attributes: list[str]) -> Tensor:
            return image_code[[ATTRIBUTES.index(a) for a in attributes]]

        branches = list(self.branches)
        second = [path[1] for path in self.paths]
        third = [path[2] for path in self.paths]
        # Step 1: E_b(I) for each branch b, then repeated for its two paths.
        root = self._encode(torch.relu(code(branches)), branches, "out")[self._root_of_path]  # (P, N, Dk)
        # Step 2: E_o1(I | E_b)  (eqs. 5, 7, 11, 13, 17, 19).
        step2 = self._encode(torch.relu(code(second) + self._encode(root, second, "condition_root")), second, "out")
        # Step 3: E_o2(I | E_b, E_b,o1)  (eqs. 6, 8, 12, 14, 18, 20).
        conditions = self._encode(torch.cat([root, step2], dim=2), third, "condition_root", "condition_previous")
        step3 = self._encode(torch.relu(code(third) + conditions), third, "out")
        return root * step2 * step3  # Hadamard products, eqs. 9, 10, 15, 16, 21, 22


class Fusion(nn.Module):
    """Eq. 23's R: one attribute token per branch from its two fused paths and its shallow feature.

    A branch's shallow feature is the global average of the stage-2 features through that branch's projection
    (rows ``b * branch_dim : (b + 1) * branch_dim`` of ``shallow``). The branch's [T_1, T_2, shallow] are
    concatenated, layer-normalised and mapped to ``decoder_dim``; a learned embedding marks the branch.
    """

    def __init__(self, config: DRTNConfig) -> None:
        super().__init__()
        self.num_branches = len(config.branches)
        self.branch_dim = config.branch_dim
        self.shallow = nn.Linear(config.stage_widths[1], self.num_branches * config.branch_dim)
        self.norm = nn.LayerNorm(3 * config.branch_dim)
        self.proj = nn.Linear(3 * config.branch_dim, config.decoder_dim)
        self.branch_embedding = nn.Parameter(torch.zeros(1, self.num_branches, config.decoder_dim))
        nn.init.trunc_normal_(self.branch_embedding, std=0.02)

    def forward(self, path_features: Tensor, shallow_features: Tensor) -> Tensor:
        """(P, N, Dk) paths (branch-major), (N, C2, h, w) stage-2 features -> (N, B, decoder_dim) tokens."""
        paths = path_features.transpose(0, 1).reshape(-1, self.num_branches, 2 * self.branch_dim)
        shallow = self.shallow(shallow_features.mean(dim=(2, 3))).reshape(-1, self.num_branches, self.branch_dim)
        tokens = self.norm(torch.cat([paths, shallow], dim=2))
        return self.proj(tokens) + self.branch_embedding


class Decoder(nn.Module):
    """Conv1x1 on the image tokens, then transformer layers over [image tokens, attribute tokens], no positions."""

    def __init__(self, config: DRTNConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(config.embed_dim, config.decoder_dim)  # a conv1x1 over the token grid
        self.layers = nn.Sequential(
            *(
                TransformerLayer(
                    config.decoder_dim, config.num_heads, config.mlp_ratio, config.token_grid**2 + len(config.branches)
                )
                for _ in range(config.decoder_depth)
            )
        )
        self.norm = nn.LayerNorm(config.decoder_dim)

    def forward(self, tokens: Tensor, attribute_tokens: Tensor | None) -> Tensor:
        x = self.proj(tokens)
        if attribute_tokens is not None:
            x = torch.cat([x, attribute_tokens], dim=1)
        return self.norm(self.layers(x))


class DRTN(nn.Module):
    """Disentangled representation transformer network: crops -> normalised 62 3DMM parameters.

    Input: (N, 3, S, S) float32 BGR crops normalised as ``(pixel - 127.5) / 128`` (the 3DDFA_V2 convention),
    S = ``config.input_size``. Output: (N, 62) *normalised* parameters ordered pose (12) | identity (40) |
    expression (10); de-normalise with :class:`drtn.params.ParamStats`.
    """

    def __init__(self, config: DRTNConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.encoder = EncoderTransformer(config)
        if config.branches:
            self.decomposition: AttributeDecomposition | None = AttributeDecomposition(config)
            self.fusion: Fusion | None = Fusion(config)
        else:  # Table III baseline: backbone + transformer + decoder + heads
            self.decomposition = None
            self.fusion = None
        self.decoder = Decoder(config)
        # 62 = 12 pose + 40 shape + 10 expression, in the 3DDFA order.
        self.head_pose = nn.Linear(config.decoder_dim, NUM_POSE)
        self.head_id = nn.Linear(config.decoder_dim, NUM_ID)
        self.head_exp = nn.Linear(config.decoder_dim, NUM_EXP)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for head in (self.head_pose, self.head_id, self.head_exp):
            # Output ~0 = the mean parameters at start.
            nn.init.normal_(head.weight, std=self.config.head_init_std)
            nn.init.zeros_(head.bias)

    def _check_images(self, images: Tensor) -> None:
        size = self.config.input_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != size or images.shape[3] != size:
            raise ValueError(f"images: expected (N, 3, {size}, {size}), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images: expected a float tensor normalised as (pixel - 127.5) / 128, got {images.dtype}")

    def forward_features(self, images: Tensor) -> Tensor:
        """(N, 3, S, S) normalised crops -> (N, T, decoder_dim) decoder tokens (T = g*g + number of branches)."""
        if not torch.jit.is_tracing():  # the legacy ONNX exporter traces; its shapes are fixed by the example
            self._check_images(images)
        shallow, deep = self.backbone(images)
        tokens = self.encoder(deep)
        attribute_tokens = None
        if self.decomposition is not None and self.fusion is not None:
            attribute_tokens = self.fusion(self.decomposition(tokens), shallow)
        return self.decoder(tokens, attribute_tokens)

    def forward_head(self, features: Tensor) -> Tensor:
        """(N, T, decoder_dim) decoder tokens -> (N, 62) normalised params, pose | id | exp."""
        pooled = features.mean(dim=1)
        # The three heads as one Gemm (the concatenated weights constant-fold at export).
        heads = (self.head_pose, self.head_id, self.head_exp)
        weight = torch.cat([head.weight for head in heads])
        bias = torch.cat([head.bias for head in heads])
        return nn.functional.linear(pooled, weight, bias)

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, S, S) normalised BGR crops -> (N, 62) normalised params (pose 12 | id 40 | exp 10)."""
        return self.forward_head(self.forward_features(images))
