"""Size, FLOPs and CPU latency of every DRTN variant, as a markdown table.

    python -m drtn.model.profile                  # all drtn_rt rows + drtn_paper baseline and full
    python -m drtn.model.profile --paper all      # every paper-size row too
    python -m drtn.model.profile --teacher PATH   # add a row for an ONNX peer (e.g. the 3DDFA_V2 teacher)

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for one face (a multiply-add is 2 FLOPs;
convolutions, matmuls and linears only; for an ONNX peer, its Conv / Gemm / MatMul nodes the same way).
Latency is per face at batch 1, the best of several timed rounds after a warm-up (the least disturbed by other
work on a shared machine), for eager torch (``inference_mode``, ``--threads`` threads) and for ONNX Runtime on
CPU (opset 17 export, BatchNorm folded by ORT; 1 and ``--threads`` intra-op threads). The ONNX Runtime columns
need ``onnx`` and ``onnxruntime``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import VARIANTS, create_model
from .network import DRTN

logger = logging.getLogger(__name__)

PAPER_DEFAULT = ("baseline", "full")


@dataclass(frozen=True)
class ProfileRow:
    """One variant's cost. Latencies are milliseconds per face (None: not measured)."""

    name: str
    input_size: int
    params: int
    flops: int | None
    torch_ms: float | None
    onnxruntime_1_thread_ms: float | None
    onnxruntime_ms: float | None


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: DRTN) -> int:
    """FLOPs of one forward pass on a single face (eval mode)."""
    size = model.config.input_size
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, size, size))
    return int(counter.get_total_flops())


def _median_ms(run: Callable[[], object], rounds: int, repeats: int, warmup: int, round_s: float = 0.3) -> float:
    """Best over ``rounds`` of the mean time of one call in ms; slow models get fewer calls per round."""
    start = time.perf_counter()
    run()  # first call: allocations, kernel selection
    once = time.perf_counter() - start
    repeats = max(1, min(repeats, int(round_s / max(once, 1e-6))))
    for _ in range(min(warmup, repeats)):
        run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        times.append((time.perf_counter() - start) / repeats * 1e3)
    return min(times)


def torch_latency_ms(model: DRTN, threads: int = 2, batch: int = 1, rounds: int = 5, repeats: int = 20) -> float:
    """Eager torch CPU latency per face in ms."""
    size = model.config.input_size
    images = torch.randn(batch, 3, size, size)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model.eval()
        with torch.inference_mode():
            return _median_ms(lambda: model(images), rounds, repeats, warmup=5) / batch
    finally:
        torch.set_num_threads(saved)


def export_onnx_for_profile(model: DRTN, path: Path) -> Path:
    """Minimal opset-17 export with a dynamic batch axis (the product's exporter lives in ``export``)."""
    size = model.config.input_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 3, size, size),),
            str(path),
            input_names=["input"],
            output_names=["params"],
            opset_version=17,
            dynamic_axes={"input": {0: "batch"}, "params": {0: "batch"}},
            dynamo=False,
        )
    return path


def onnxruntime_latency_ms(
    onnx_path: Path, input_size: int, threads: int = 2, batch: int = 1, rounds: int = 5, repeats: int = 50
) -> float:
    """ONNX Runtime CPU latency per face in ms (``intra_op_num_threads=threads``, sequential execution)."""
    try:
        import onnxruntime as ort
    except ImportError as error:  # optional here: drtn itself needs only torch + numpy
        raise ImportError("the ONNX Runtime column needs onnxruntime: pip install onnxruntime") from error
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images = np.random.default_rng(0).standard_normal((batch, 3, input_size, input_size)).astype(np.float32)
    return _median_ms(lambda: session.run(None, {name: images}), rounds, repeats, warmup=20) / batch


def profile_variant(name: str, threads: int = 2, onnxruntime: bool = True, latency: bool = True) -> ProfileRow:
    """Build ``name`` (random weights) and measure it."""
    model = create_model(name).eval()
    size = model.config.input_size
    torch_ms = onnx_1_ms = onnx_ms = None
    if latency:
        torch_ms = torch_latency_ms(model, threads)
        if onnxruntime:
            with tempfile.TemporaryDirectory() as folder:
                path = export_onnx_for_profile(model, Path(folder) / f"{name}.onnx")
                onnx_1_ms = onnxruntime_latency_ms(path, size, 1)
                onnx_ms = onnxruntime_latency_ms(path, size, threads)
    return ProfileRow(name, size, count_parameters(model), count_flops(model), torch_ms, onnx_1_ms, onnx_ms)


def onnx_flops(proto) -> int:
    """FLOPs of the Conv, Gemm and MatMul nodes of a static-shape ONNX model (2 per multiply-add)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        # A symbolic (batch) dimension reads as 0: count one face.
        shapes[value.name] = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    flops = 0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            weight, out = shapes[node.input[1]], shapes[node.output[0]]
            flops += 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            transposed = any(att.name == "transA" and att.i for att in node.attribute)
            inner = a[-2] if transposed else a[-1]
            flops += 2 * int(np.prod(out)) * inner
    return flops


def profile_onnx_peer(label: str, path: Path, input_size: int, threads: int = 2) -> ProfileRow:
    """A row for an ONNX model we do not build (parameters counted from its initializers)."""
    import onnx

    proto = onnx.load(str(path))
    params = sum(int(np.prod(init.dims)) for init in proto.graph.initializer)
    return ProfileRow(
        label,
        input_size,
        params,
        onnx_flops(proto),
        None,
        onnxruntime_latency_ms(path, input_size, 1),
        onnxruntime_latency_ms(path, input_size, threads),
    )


def format_table(rows: list[ProfileRow], threads: int) -> str:
    """Markdown table: parameters (M), MFLOPs, ms/face for torch and ONNX Runtime (batch 1)."""

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"| model | input | params (M) | MFLOPs | torch ms/face ({threads} thr) | ORT ms/face (1 thr) | "
        f"ORT ms/face ({threads} thr) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        flops = None if row.flops is None else row.flops / 1e6
        lines.append(
            f"| {row.name} | {row.input_size} | {row.params / 1e6:.3f} | {number(flops, 1)} | "
            f"{number(row.torch_ms, 2)} | {number(row.onnxruntime_1_thread_ms, 2)} | "
            f"{number(row.onnxruntime_ms, 2)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for torch and ONNX Runtime")
    parser.add_argument(
        "--paper",
        choices=("default", "all", "none"),
        default="default",
        help="paper-size rows: baseline and full (default), all eight, or none",
    )
    parser.add_argument("--no-latency", action="store_true", help="parameters and FLOPs only")
    parser.add_argument("--no-onnxruntime", action="store_true", help="skip the ONNX Runtime column")
    parser.add_argument("--teacher", type=Path, default=None, help="an ONNX peer (120x120 input) to add as a row")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    names = [f"drtn_rt_{variant}" for variant in VARIANTS]
    paper = {"default": PAPER_DEFAULT, "all": tuple(VARIANTS), "none": ()}[args.paper]
    names += [f"drtn_paper_{variant}" for variant in paper]
    rows = []
    for name in names:
        logger.info("profiling %s", name)
        rows.append(profile_variant(name, args.threads, not args.no_onnxruntime, not args.no_latency))
    if args.teacher is not None:
        rows.append(profile_onnx_peer(f"peer: {args.teacher.name}", args.teacher, 120, args.threads))
    print(format_table(rows, args.threads))


if __name__ == "__main__":
    main()
