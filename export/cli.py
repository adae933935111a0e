"""`main.py export | bench` argument definitions and handlers (the work lives in export.* modules).

Nothing heavy is imported here: ``main.py --help`` must stay fast and work without torch / onnx loaded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOGGER = logging.getLogger(__name__)

DEFAULT_BENCH_BACKENDS = "onnxruntime,torch,teacher,tensorrt"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="export the model to ONNX (and build a TensorRT engine)",
        description="Export a DRTN checkpoint to ONNX (input `image` (N,3,S,S) float32 BGR (x-127.5)/128, output "
        "`params` (N,62) de-normalised), check it against torch, optionally build a TensorRT engine and report "
        "its FP16-vs-FP32 error.",
    )
    export.add_argument(
        "--checkpoint", type=Path, default=None, help="DRTN checkpoint (.pt); default the bundled drtn/weights/drtn_rt.pt"
    )
    export.add_argument(
        "-o", "--output", type=Path, default=None, help="ONNX file to write (default: <checkpoint name>.onnx here)"
    )
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    export.add_argument(
        "--check-images",
        type=Path,
        default=None,
        help="folder of face images (+ 300W .pts) for the real-crop check; default <assets>/../data/300w/helen_testset if present",
    )
    export.add_argument(
        "--flip-average",
        action="store_true",
        help="bake mirror-averaged inference into the graph (each crop and its mirror, ~2x the network time; "
        "metadata flip_average=linear); do not use for the bundled drtn_rt.onnx",
    )
    export.add_argument(
        "--tensorrt", action="store_true", help="also build (or reuse) the TensorRT engine and report FP16 vs FP32 error"
    )
    export.add_argument("--max-batch", type=int, default=32, help="TensorRT profile: largest batch (default 32)")
    export.add_argument(
        "--opt-batch", type=int, default=None, help="TensorRT profile: batch to tune for (default min(4, max batch))"
    )
    export.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="TensorRT precision (default fp16)")
    export.add_argument(
        "--cache-dir", type=Path, default=None, help="engine cache root (default $DRTN_CACHE_DIR or ~/.cache/drtn)"
    )
    export.set_defaults(handler=run_export)

    bench = commands.add_parser(
        "bench",
        help="latency benchmark of backends (or --pipeline: the real-time pipeline)",
        description="Per-face latency (median, p90) and throughput of each backend x threads x batch, with the "
        "3DDFA_V2 teacher measured in the same run as the reference. Prints a markdown table.",
    )
    bench.add_argument(
        "--backends",
        type=_name_list,
        default=_name_list(DEFAULT_BENCH_BACKENDS),
        help=f"comma-separated (default {DEFAULT_BENCH_BACKENDS})",
    )
    bench.add_argument("--threads", type=_int_list, default=[1, 2], help="CPU thread counts (default 1,2)")
    bench.add_argument("--batches", type=_int_list, default=[1, 8, 32], help="faces per inference call (default 1,8,32)")
    bench.add_argument(
        "--model", type=Path, default=None, help="DRTN .onnx export or .pt checkpoint (default: the bundled weights)"
    )
    bench.add_argument(
        "--untrained",
        metavar="CONFIG",
        default=None,
        help="measure a randomly initialised network of this config instead (e.g. drtn_rt)",
    )
    bench.add_argument("--seconds", type=float, default=1.0, help="minimum measuring time per batch size (default 1)")
    bench.add_argument("--max-seconds", type=float, default=20.0, help="cap on measuring time per batch size (default 20)")
    bench.add_argument(
        "--cache-dir", type=Path, default=None, help="ONNX / engine cache root (default $DRTN_CACHE_DIR or ~/.cache/drtn)"
    )
    bench.add_argument("-o", "--output", type=Path, default=None, help="also write the markdown table to this file")
    bench.add_argument(
        "--flip-average",
        action="store_true",
        help="also measure mirror-averaged inference (<backend>+flip rows; with --tracking: 'ours + flip' rows)",
    )
    bench.add_argument("--pipeline", action="store_true", help="benchmark the real-time pipeline instead (realtime.bench)")
    bench.add_argument("--source", default=None, help="--pipeline: video file / camera index (default the bundled clip)")
    bench.add_argument("--frames", type=int, default=None, help="--pipeline: frames to process")
    bench.add_argument("--renderer", choices=("gl", "cv"), default=None, help="--pipeline: mesh overlay renderer (default gl)")
    bench.add_argument("--no-smoothing", action="store_true", help="--pipeline: turn the One-Euro smoothing off")
    bench.set_defaults(handler=run_bench)


# ---------------------------------------------------------------------------------------------- export
def _check_crops(args: argparse.Namespace, assets, crop_size: int):
    from export.samples import load_face_crops

    folder = args.check_images
    if folder is None:
        candidate = assets.root.parent / "data" / "300w" / "helen_testset"  # the shared/ folder layout
        if not candidate.is_dir():
            LOGGER.warning("no real face crops for the export check (pass --check-images DIR); checking random crops only")
            return None
        folder = candidate
    crops = load_face_crops(folder, limit=16, crop_size=crop_size)
    if len(crops) == 0:
        raise FileNotFoundError(f"--check-images {folder}: no readable images")
    return crops


def run_export(args: argparse.Namespace) -> int:
    from drtn.assets import find_assets
    from drtn.mirror import MirrorMap
    from drtn.morphable import MorphableModel
    from drtn.outputs import ONNX_SUFFIXES, Output, check_output_paths
    from export.cache import sha256_file
    from export.onnx_export import export_onnx, load_network, resolve_checkpoint

    if args.tensorrt:
        from export.backends.tensorrt_backend import BatchProfile, tensorrt_available

        BatchProfile.create(args.max_batch, args.opt_batch)  # a bad profile fails before the export, not after
        available, reason = tensorrt_available()
        if not available:
            from export.backends.base import BackendUnavailableError

            raise BackendUnavailableError(reason)
    checkpoint = resolve_checkpoint(args.checkpoint)
    output = args.output or Path(f"{checkpoint.stem}.onnx")
    # before anything loads: not the checkpoint (nor its check images), an .onnx name, a writable folder
    check_output_paths([Output(output, "-o", ONNX_SUFFIXES)], [checkpoint, args.check_images])
    assets = find_assets(args.assets)
    morphable = MorphableModel.load(assets)
    network = load_network(checkpoint)
    crop_size = network.config.input_size
    real_crops = _check_crops(args, assets, crop_size)
    report = export_onnx(
        network,
        output,
        stats=morphable.stats,
        source_sha256=sha256_file(checkpoint),
        opset=args.opset,
        check_crops=real_crops,
        morphable=morphable,
        flip_average=MirrorMap.from_morphable(morphable, crop_size) if args.flip_average else None,
    )
    print(report.summary())
    from export.fp16 import estimate_fp16_error
    from export.samples import random_crops

    estimate = estimate_fp16_error(
        output, real_crops if real_crops is not None else random_crops(8, crop_size), morphable.stats, morphable
    )
    print(f"  FP16 estimate (mixed-precision graph on ONNX Runtime vs FP32): {estimate.summary()}")
    if args.tensorrt:
        _report_tensorrt(args, output, morphable, real_crops, crop_size)
    return 0


def _report_tensorrt(args, onnx_path: Path, morphable, real_crops, crop_size: int) -> None:
    import numpy as np

    from export.backends.onnxruntime_backend import OnnxRuntimeBackend
    from export.backends.tensorrt_backend import TensorRTBackend
    from export.compare import FP16_TOLERANCE, compare_backends
    from export.samples import random_crops

    engine = TensorRTBackend(
        onnx_path,
        max_batch=args.max_batch,
        opt_batch=args.opt_batch,
        precision=args.precision,
        cache_dir=args.cache_dir / "tensorrt" if args.cache_dir else None,
    )
    reference = OnnxRuntimeBackend(onnx_path, threads=2)
    print(f"TensorRT engine: {engine.cache.entry_dir(engine.key)}")
    sets = {"random": random_crops(8, crop_size)}
    if real_crops is not None:
        sets["real"] = real_crops
    for name, crops in sets.items():
        report = compare_backends(reference, engine, np.asarray(crops), morphable.stats, morphable)
        print(f"TensorRT {args.precision} vs ONNX Runtime FP32 on {name} crops: {report.summary()}")
        problems = FP16_TOLERANCE.violations(report) if args.precision == "fp16" else []
        if problems:
            LOGGER.warning(
                "TensorRT %s error above the expected bound on %s crops: %s", args.precision, name, "; ".join(problems)
            )


# ---------------------------------------------------------------------------------------------- bench
def bench_inputs(args: argparse.Namespace) -> list:
    """The files and folders a ``bench`` run reads (whichever mode): ``--model``, ``--source``, ``--data``."""
    source = getattr(args, "source", None)
    return [
        getattr(args, "model", None),
        None if source is None or str(source).strip().isdigit() else source,  # a camera index is not a file
        getattr(args, "data", None),
    ]


def check_bench_output(args: argparse.Namespace) -> None:
    """``bench -o TABLE``: a .md / .markdown / .txt file that is none of the inputs, in a writable folder; checked
    before the benchmark runs (every mode: backends, ``--pipeline``, ``--tracking``, ``--soak``)."""
    from drtn.outputs import TABLE_SUFFIXES, Output, check_output_paths

    if getattr(args, "output", None) is not None:
        check_output_paths([Output(Path(args.output), "-o", TABLE_SUFFIXES)], bench_inputs(args))


def run_bench(args: argparse.Namespace) -> int:
    check_bench_output(args)
    if args.pipeline:
        # the pipeline benchmark lives in realtime (which depends on export, not the reverse); its CLI registers
        # the handler on this parser (realtime.cli.register)
        handler = getattr(args, "pipeline_handler", None)
        if handler is None:
            raise RuntimeError("`bench --pipeline` needs the realtime package's CLI registered (main.py does this)")
        return int(handler(args) or 0)

    from export.bench import ModelSource, run_backend_bench

    if args.model is not None and args.untrained is not None:
        raise ValueError("--model and --untrained: give one or the other")
    source = ModelSource(assets=args.assets, untrained=args.untrained, cache_dir=args.cache_dir)
    if args.model is not None:  # a model the user named must be valid: fail here rather than skip its rows
        from export.onnx_export import CHECKPOINT_SUFFIXES, inspect_onnx, resolve_checkpoint

        if args.model.suffix.lower() in CHECKPOINT_SUFFIXES:
            source.checkpoint = resolve_checkpoint(args.model)
        else:
            inspect_onnx(args.model)
            source.onnx_path = args.model
    report = run_backend_bench(
        args.backends,
        args.threads,
        args.batches,
        source=source,
        min_seconds=args.seconds,
        max_seconds=args.max_seconds,
        flip_average=args.flip_average,
    )
    table = report.markdown()
    print(table)
    if args.output is not None:
        from drtn.outputs import atomic_write_text

        atomic_write_text(args.output, table + "\n")
    return 0
