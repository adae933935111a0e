"""PyTorch backend: the network itself, eager mode, for parity checks and for GPUs without TensorRT."""

from __future__ import annotations

import os

import numpy as np
import torch

from drtn.params import ParamStats
from export.backends.base import Backend


class TorchBackend(Backend):
    """Runs a DRTN ``nn.Module`` (normalised output) and de-normalises like the exported graph does.

    Args:
        network: ``forward(images (N, 3, S, S)) -> (N, 62)`` normalised params.
        stats: parameter statistics for the de-normalisation.
        threads: torch intra-op threads. torch's setting is process-wide, so it is re-applied before each run
            when another backend changed it.
        device: ``"cpu"`` or a CUDA device.
        crop_size: S; default ``network.config.input_size`` (120 without a config).
    """

    name = "torch"

    def __init__(
        self,
        network: torch.nn.Module,
        stats: ParamStats,
        *,
        threads: int = 2,
        device: str | torch.device = "cpu",
        crop_size: int | None = None,
    ):
        if threads < 1:
            raise ValueError(f"threads: expected >= 1, got {threads}")
        self.threads = threads
        self.device = torch.device(device)
        parameter = next(network.parameters(), None)
        if parameter is not None and parameter.device != self.device:
            network = network.to(self.device)
        self._network = network.eval()
        self._crop_size = int(crop_size or getattr(getattr(network, "config", None), "input_size", 120))
        self._std = torch.as_tensor(stats.std, dtype=torch.float32, device=self.device)
        self._mean = torch.as_tensor(stats.mean, dtype=torch.float32, device=self.device)

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | os.PathLike | None = None, *, assets=None, threads: int = 2, device: str = "cpu"
    ) -> "TorchBackend":
        """Load a checkpoint (``None``: the bundled default weights) and the statistics of the asset folder."""
        from export.onnx_export import load_network, load_stats, resolve_checkpoint

        return cls(load_network(resolve_checkpoint(checkpoint)), load_stats(assets), threads=threads, device=device)

    @property
    def crop_size(self) -> int:
        return self._crop_size

    def _run(self, images: np.ndarray) -> np.ndarray:
        if self.device.type == "cpu" and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            normalized = self._network(torch.from_numpy(images).to(self.device)).float()
            # the same two float32 operations as the exported graph's drtn/denormalize nodes
            return (normalized * self._std + self._mean).cpu().numpy()

    def close(self) -> None:
        self._network = None
