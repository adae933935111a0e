"""Export a DRTN network to the product's ONNX contract, check the result, and cache default exports.

The ONNX contract (consumers need nothing else):

- input ``image``: (N, 3, S, S) float32, N dynamic, BGR, ``(pixel - 127.5) / 128``;
- output ``params``: (N, 62) float32 **de-normalised** parameters, 3DDFA layout (12 pose = 3x4 ``[s*R | t]``
  row-major, 40 identity, 10 expression). The network's normalised output is de-normalised inside the graph by
  two nodes named ``drtn/denormalize/Mul`` and ``drtn/denormalize/Add`` (FP16 engines keep those in FP32: identity
  coefficients reach ~1e6, beyond FP16's 65504);
- ``metadata_props``: ``crop_size``, ``channel_order``, ``pixel_mean``, ``pixel_scale``, ``input_layout``,
  ``output_layout``, ``model_config``, ``source_checkpoint_sha256``, ``contract_version``.

Every export checks itself before the file is written: ``onnx.checker`` (full, with shape inference), then
ONNX Runtime against torch on random and real crops within :data:`export.compare.FP32_TOLERANCE`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from drtn.params import NUM_PARAMS, ParamStats
from export.backends.base import CHANNEL_ORDER, PIXEL_MEAN, PIXEL_SCALE, preprocess_crops
from export.backends.onnxruntime_backend import ort_session
from export.cache import atomic_write_bytes, record_content_hash, sha256_bytes, sha256_file, user_cache_dir, verify_content_hash
from export.compare import FP32_TOLERANCE, ParamErrorReport, Tolerance, compare_params
from export.contract import (  # noqa: F401 (the contract's names, re-exported for export users)
    CHECKPOINT_SUFFIXES,
    CONTRACT_VERSION,
    DENORMALIZE_NODE_PREFIX,
    EXPORT_FORMAT_VERSION,
    INPUT_NAME,
    OUTPUT_NAME,
    STATS_FILE,
    OnnxModelInfo,
    inspect_onnx,
    load_onnx_model,
)

LOGGER = logging.getLogger(__name__)

DEFAULT_OPSET = 18  # supported by ONNX Runtime 1.17+ and TensorRT 10's parser
_MAX_DYNAMIC_BATCH = 4096  # the exporter needs an upper bound; far above any profile we build


class ExportCheckError(RuntimeError):
    """The exported graph disagrees with torch beyond tolerance; nothing was written."""


@dataclass(frozen=True)
class ExportReport:
    """Result of :func:`export_onnx`."""

    path: Path
    onnx_sha256: str
    metadata: dict[str, str]
    checks: dict[str, ParamErrorReport]
    seconds: float

    def summary(self) -> str:
        lines = [
            f"wrote {self.path} ({self.path.stat().st_size / 1e6:.2f} MB, sha256 {self.onnx_sha256[:16]}, {self.seconds:.1f} s)"
        ]
        lines += [f"  ORT vs torch on {name}: {report.summary()}" for name, report in self.checks.items()]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- graph surgery
def append_denormalization(model: onnx.ModelProto, stats: ParamStats, output_name: str = OUTPUT_NAME) -> onnx.ModelProto:
    """Make the graph output de-normalised: ``params = params_normalized * std + mean`` (in place).

    The two new nodes carry the :data:`DENORMALIZE_NODE_PREFIX` name prefix so that the FP16 variant of the graph
    (:mod:`export.fp16`, for TensorRT) keeps them in FP32.
    """
    graph = model.graph
    if len(graph.output) != 1:
        raise ValueError(f"append_denormalization: expected one graph output, got {len(graph.output)}")
    normalized = graph.output[0]
    std_name, mean_name, scaled_name = "drtn_param_std", "drtn_param_mean", "drtn_params_scaled"
    graph.initializer.extend(
        [
            numpy_helper.from_array(stats.std.astype(np.float32).reshape(1, NUM_PARAMS), std_name),
            numpy_helper.from_array(stats.mean.astype(np.float32).reshape(1, NUM_PARAMS), mean_name),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Mul", [normalized.name, std_name], [scaled_name], name=DENORMALIZE_NODE_PREFIX + "Mul"),
            helper.make_node("Add", [scaled_name, mean_name], [output_name], name=DENORMALIZE_NODE_PREFIX + "Add"),
        ]
    )
    batch = normalized.type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_value if batch.HasField("dim_value") else (batch.dim_param or "batch")
    new_output = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch_dim, NUM_PARAMS])
    graph.value_info.append(normalized)  # keep the intermediate's shape for readers of the graph
    graph.output.pop()
    graph.output.append(new_output)
    return model


def append_flip_average(
    model: onnx.ModelProto, mirror, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME
) -> onnx.ModelProto:
    """Bake mirror-averaged inference into a de-normalised graph (in place; :mod:`drtn.mirror`).

    The graph keeps its contract ((N, 3, S, S) in, (N, 62) out): inside, the network runs once on 2N images (the
    batch, then its left-right mirror: a ``Slice`` with step -1 on the width axis) and the output is
    ``(p[:N] + mirror(p[N:])) / 2`` with the mirror as one constant ``MatMul`` + ``Add`` (linear pose average,
    the measured better one). The new nodes carry the :data:`DENORMALIZE_NODE_PREFIX` prefix, so FP16 engines
    keep them in FP32 like the de-normalisation (identity coefficients reach ~1e6).

    Args:
        model: a graph after :func:`append_denormalization`.
        mirror: a :class:`drtn.mirror.MirrorMap` of the graph's crop size.
    """
    graph = model.graph
    prefix = DENORMALIZE_NODE_PREFIX + "flip/"
    both_images, both_params = "drtn_flip_images", "drtn_flip_params_both"
    for node in graph.node:
        node.input[:] = [both_images if name == input_name else name for name in node.input]
        node.output[:] = [both_params if name == output_name else name for name in node.output]
    matrix, offset = mirror.affine()
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1], np.int64), "drtn_flip_starts"),
            numpy_helper.from_array(np.array([np.iinfo(np.int64).min], np.int64), "drtn_flip_ends"),
            numpy_helper.from_array(np.array([3], np.int64), "drtn_flip_axes"),
            numpy_helper.from_array(np.array([-1], np.int64), "drtn_flip_steps"),
            numpy_helper.from_array(np.array([2, -1, NUM_PARAMS], np.int64), "drtn_flip_pair_shape"),
            numpy_helper.from_array(np.array(0, np.int64), "drtn_flip_zero"),
            numpy_helper.from_array(np.array(1, np.int64), "drtn_flip_one"),
            numpy_helper.from_array(np.array(0.5, np.float32), "drtn_flip_half"),
            numpy_helper.from_array((0.5 * matrix.T).astype(np.float32), "drtn_flip_matrix"),
            numpy_helper.from_array((0.5 * offset).astype(np.float32).reshape(1, NUM_PARAMS), "drtn_flip_offset"),
        ]
    )
    head = [
        helper.make_node(
            "Slice",
            [input_name, "drtn_flip_starts", "drtn_flip_ends", "drtn_flip_axes", "drtn_flip_steps"],
            ["drtn_flip_mirrored"],
            name=prefix + "Slice",
        ),
        helper.make_node("Concat", [input_name, "drtn_flip_mirrored"], [both_images], axis=0, name=prefix + "Concat"),
    ]
    tail = [
        helper.make_node("Reshape", [both_params, "drtn_flip_pair_shape"], ["drtn_flip_pair"], name=prefix + "Reshape"),
        helper.make_node("Gather", ["drtn_flip_pair", "drtn_flip_zero"], ["drtn_flip_plain"], axis=0, name=prefix + "Plain"),
        helper.make_node("Gather", ["drtn_flip_pair", "drtn_flip_one"], ["drtn_flip_flipped"], axis=0, name=prefix + "Flipped"),
        helper.make_node(
            "MatMul", ["drtn_flip_flipped", "drtn_flip_matrix"], ["drtn_flip_mirror_half"], name=prefix + "MatMul"
        ),
        helper.make_node("Add", ["drtn_flip_mirror_half", "drtn_flip_offset"], ["drtn_flip_mirror"], name=prefix + "AddOffset"),
        helper.make_node("Mul", ["drtn_flip_plain", "drtn_flip_half"], ["drtn_flip_plain_half"], name=prefix + "Mul"),
        helper.make_node("Add", ["drtn_flip_plain_half", "drtn_flip_mirror"], [output_name], name=prefix + "Average"),
    ]
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def contract_metadata(crop_size: int, config_name: str, source_sha256: str, flip_average: bool = False) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (``flip_average``: ``"linear"`` when the graph averages each
    crop with its mirror, :func:`append_flip_average`)."""
    extra = {"flip_average": "linear"} if flip_average else {}
    return {
        "producer": "drtn.export",
        "contract_version": CONTRACT_VERSION,
        "crop_size": str(crop_size),
        "channel_order": CHANNEL_ORDER,
        "pixel_mean": repr(PIXEL_MEAN),
        "pixel_scale": repr(PIXEL_SCALE),
        "input_layout": (
            f"{INPUT_NAME}: (N, 3, {crop_size}, {crop_size}) float32 NCHW, channels {CHANNEL_ORDER}, "
            f"x = (pixel - {PIXEL_MEAN}) * {PIXEL_SCALE} (= /128)"
        ),
        "output_layout": (
            f"{OUTPUT_NAME}: (N, {NUM_PARAMS}) float32 de-normalised, 3DDFA order: 12 pose (3x4 [s*R | t] row-major), "
            "40 identity (alpha_id), 10 expression (beta_exp)"
        ),
        "params": "denormalized",
        "model_config": config_name,
        "source_checkpoint_sha256": source_sha256,
        **extra,
    }


def state_dict_sha256(network: torch.nn.Module) -> str:
    """A content hash of a network's weights, for models that do not come from a checkpoint file."""
    digest = hashlib.sha256()
    for key, tensor in sorted(network.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_torch_exporter():
    """The dynamo exporter logs a warning per missing torchvision op and progress lines; keep them at debug."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir")
    saved = {name: logging.getLogger(name).level for name in names}
    try:
        for name in names:
            if not LOGGER.isEnabledFor(logging.DEBUG):
                logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # torch-internal
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _torch_to_onnx(network: torch.nn.Module, crop_size: int, opset: int) -> onnx.ModelProto:
    """Trace the network (normalised output) with a dynamic batch axis via the dynamo exporter."""
    example = torch.zeros(2, 3, crop_size, crop_size)  # batch 2: a batch of 1 could be specialised away
    batch = torch.export.Dim("batch", min=1, max=_MAX_DYNAMIC_BATCH)
    with _quiet_torch_exporter(), torch.no_grad():
        program = torch.onnx.export(
            network,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=["params_normalized"],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            optimize=True,
            external_data=False,
            verbose=False,
        )
    return program.model_proto


def check_against_torch(
    model_bytes: bytes,
    network: torch.nn.Module,
    stats: ParamStats,
    crops: dict[str, np.ndarray],
    *,
    morphable=None,
    tolerance: Tolerance = FP32_TOLERANCE,
    label: str = "export",
    mirror=None,
) -> dict[str, ParamErrorReport]:
    """Run the ONNX bytes in ONNX Runtime and the network in torch on each named set of uint8 crops (``mirror``: the
    graph is flip-averaged; torch's reference is then ``mirror.average`` of the crops and their mirrors).

    Raises:
        ExportCheckError: any set beyond ``tolerance`` (the message gives the numbers).
    """
    session = ort_session(model_bytes, threads=2)
    crop_size = session.get_inputs()[0].shape[2]
    reports = {}
    for name, batch in crops.items():
        if len(batch) == 0:
            continue
        images = preprocess_crops(batch, crop_size)
        onnx_params = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
        with torch.inference_mode():
            torch_params = stats.denormalize(network(torch.from_numpy(images)).float().numpy())
            if mirror is not None:
                flipped = np.ascontiguousarray(images[:, :, :, ::-1])
                flipped_params = stats.denormalize(network(torch.from_numpy(flipped)).float().numpy())
                torch_params = mirror.average(torch_params, flipped_params).astype(np.float32)
        report = compare_params(torch_params, onnx_params, stats, morphable)
        problems = tolerance.violations(report)
        if problems:
            raise ExportCheckError(
                f"{label}: ONNX Runtime disagrees with torch on {name} crops: {'; '.join(problems)} ({report.summary()})"
            )
        reports[name] = report
    return reports


def export_onnx(
    network: torch.nn.Module,
    output_path: str | os.PathLike,
    *,
    stats: ParamStats,
    crop_size: int | None = None,
    config_name: str | None = None,
    source_sha256: str | None = None,
    opset: int = DEFAULT_OPSET,
    check_crops: np.ndarray | None = None,
    morphable=None,
    tolerance: Tolerance = FP32_TOLERANCE,
    flip_average=None,
) -> ExportReport:
    """Export ``network`` (normalised output) + de-normalisation to ``output_path`` under the ONNX contract.

    Args:
        network: ``forward(images (N, 3, S, S)) -> (N, 62)`` normalised params (a :class:`drtn.model.DRTN`).
        output_path: the ``.onnx`` file; written atomically, only after every check passed.
        stats: normalisation statistics baked into the graph.
        crop_size: S; default ``network.config.input_size`` (120 if the network has no config).
        config_name: recorded in metadata; default ``network.config.name``.
        source_sha256: SHA-256 of the checkpoint file; default a hash of the state dict (``state_dict:<hex>``).
        opset: ONNX opset.
        check_crops: (K, S, S, 3) uint8 real face crops for the ORT-vs-torch check (random crops are always used).
        morphable: optional morphable model: adds the 68-landmark pixel error to the check.
        tolerance: acceptance limits of the check.
        flip_average: a :class:`drtn.mirror.MirrorMap`: bake mirror-averaged inference into the graph
            (:func:`append_flip_average`; metadata ``flip_average``); ``None``: the plain graph.
    Raises:
        ExportCheckError: the checker or the numeric check failed (no file written).
    """
    start = time.perf_counter()
    output_path = Path(output_path)
    network = network.eval()
    config = getattr(network, "config", None)
    crop_size = int(crop_size or getattr(config, "input_size", 120))
    config_name = config_name or getattr(config, "name", type(network).__name__)
    source_sha256 = source_sha256 or f"state_dict:{state_dict_sha256(network)}"

    LOGGER.info("exporting %s (crop %d, opset %d) to %s", config_name, crop_size, opset, output_path)
    model = _torch_to_onnx(network, crop_size, opset)
    append_denormalization(model, stats)
    if flip_average is not None:
        append_flip_average(model, flip_average)
    model.producer_name, model.producer_version = "drtn.export", str(EXPORT_FORMAT_VERSION)
    model.doc_string = "DRTN 3D face model: BGR face crop -> 62 de-normalised 3DDFA parameters (see metadata_props)"
    metadata = contract_metadata(crop_size, config_name, source_sha256, flip_average is not None)
    onnx.helper.set_model_props(model, metadata)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportCheckError(f"exported graph of {config_name} fails onnx.checker: {error}") from None
    info = inspect_onnx(model, name=str(output_path))
    if info.fixed_batch is not None:
        raise ExportCheckError(f"exported graph of {config_name} has a fixed batch {info.fixed_batch}; expected a dynamic axis")
    model_bytes = model.SerializeToString()

    crops = {"random": _random_crops(3, crop_size)}
    if check_crops is not None and len(check_crops):
        crops["real"] = check_crops
    checks = check_against_torch(
        model_bytes,
        network,
        stats,
        crops,
        morphable=morphable,
        tolerance=tolerance,
        label=str(output_path),
        mirror=flip_average,
    )
    atomic_write_bytes(output_path, model_bytes)
    report = ExportReport(
        output_path,
        sha256_bytes(model_bytes),
        metadata,
        checks,
        time.perf_counter() - start,
    )
    LOGGER.debug("%s", report.summary())
    return report


def _random_crops(count: int, crop_size: int) -> np.ndarray:
    from export.samples import random_crops

    return random_crops(count, crop_size, seed=0)


# ---------------------------------------------------------------------------------------------- checkpoints + cache
def load_stats(assets=None) -> ParamStats:
    """The 62-parameter statistics from the asset folder (``--assets`` / ``DRTN_ASSETS``)."""
    from drtn.assets import Assets, find_assets

    if not isinstance(assets, Assets):
        assets = find_assets(assets, required=(STATS_FILE,))
    return ParamStats.load(assets.path(STATS_FILE))


def _model_api():
    try:
        import drtn.model as model_api
    except ImportError as error:  # the network package is part of drtn; say so if a partial checkout lacks it
        raise ImportError(f"drtn.model is not available ({error}); it provides the DRTN network to export") from error
    return model_api


def resolve_checkpoint(checkpoint: str | os.PathLike | None) -> Path:
    """The checkpoint to use: the given path, or the bundled default weights (``drtn/weights/drtn_rt.pt``)."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return path
    path = Path(_model_api().default_weights_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained default weights at {path}; pass a checkpoint (.pt from `main.py train`) or an ONNX export "
            "explicitly (export: --checkpoint PATH, bench: --model PATH)"
        )
    return path


def load_network(checkpoint: str | os.PathLike) -> torch.nn.Module:
    """Rebuild a DRTN from a checkpoint (strict load, eval mode)."""
    return _model_api().load_model(checkpoint)


def export_checkpoint(
    checkpoint: str | os.PathLike | None,
    output_path: str | os.PathLike,
    *,
    assets=None,
    opset: int = DEFAULT_OPSET,
    check_crops: np.ndarray | None = None,
    morphable=None,
) -> ExportReport:
    """Export a checkpoint file (``None``: the bundled default weights) to ``output_path``; see :func:`export_onnx`."""
    checkpoint = resolve_checkpoint(checkpoint)
    network = load_network(checkpoint)
    return export_onnx(
        network,
        output_path,
        stats=load_stats(assets),
        source_sha256=sha256_file(checkpoint),
        opset=opset,
        check_crops=check_crops,
        morphable=morphable,
    )


def cached_onnx_path(
    checkpoint_sha256: str, stem: str, opset: int = DEFAULT_OPSET, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Where the export of a checkpoint lives in the user cache (key = checkpoint hash, format, opset)."""
    root = Path(cache_dir) if cache_dir is not None else user_cache_dir("onnx")
    return root / f"{stem}-{checkpoint_sha256[:16]}-f{EXPORT_FORMAT_VERSION}-op{opset}.onnx"


def ensure_onnx(
    checkpoint: str | os.PathLike | None = None,
    *,
    assets=None,
    cache_dir: str | os.PathLike | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """The ONNX export of a checkpoint (``None``: the bundled default weights), exported once into the cache.

    A cached file is reused only if its bytes match the content hash recorded when it was written
    (:func:`export.cache.verify_content_hash`), it passes :func:`inspect_onnx` and it records the same checkpoint
    hash; otherwise it is re-exported (atomically) with a log message, never run.
    """
    checkpoint = resolve_checkpoint(checkpoint)
    checkpoint_sha = sha256_file(checkpoint)
    path = cached_onnx_path(checkpoint_sha, checkpoint.stem, opset, cache_dir)
    problem = verify_content_hash(path) if path.is_file() else None
    if problem is not None:
        LOGGER.warning("cached ONNX %s %s; re-exporting", path, problem)
    elif path.is_file():
        try:
            info = inspect_onnx(path)
            if info.metadata.get("source_checkpoint_sha256") == checkpoint_sha and info.is_drtn_export:
                LOGGER.debug("using cached ONNX export %s", path)
                return path
            LOGGER.warning("cached ONNX %s does not belong to %s; re-exporting", path, checkpoint)
        except ValueError as error:
            LOGGER.warning("cached ONNX export is unusable (%s); re-exporting", error)
    LOGGER.info("exporting %s to the ONNX cache (once per checkpoint)", checkpoint)
    export_checkpoint(checkpoint, path, assets=assets, opset=opset)
    record_content_hash(path)
    return path
