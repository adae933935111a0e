"""ONNX Runtime backends: our exported model (the product's CPU default) and the 3DDFA_V2 teacher."""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np

from drtn.params import ParamStats
from export.backends.base import CHANNEL_ORDER, PIXEL_MEAN, PIXEL_SCALE, Backend
from export.contract import check_model_file, inspect_session

LOGGER = logging.getLogger(__name__)


def _is_model_proto(model) -> bool:
    """An in-memory ``onnx.ModelProto`` (checked without importing onnx: file paths need no onnx package)."""
    return hasattr(model, "SerializeToString") and hasattr(model, "graph")


def ort_session(model, threads: int, providers: list[str] | None = None):
    """The project's one ONNX Runtime session factory (backends, the export's self-check, the trainer's teacher):
    a CPU session over a ``ModelProto``, serialized bytes or a file path."""
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"threads: expected >= 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one graph branch at a time: the CNN is a chain
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; warnings about unused initializers are noise
    # No spin-waiting between runs: the idle intra-op thread otherwise burns a core the decoder, encoder and
    # overlay threads need (whole `video` command on the 2-core machine: 2.4 -> 2.0 s CPU, wall -0.5 s).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if _is_model_proto(model):
        source = model.SerializeToString()
    elif isinstance(model, bytes):
        source = model
    else:
        source = str(check_model_file(model))
    try:
        return ort.InferenceSession(source, options, providers=providers or ["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's InvalidProtobuf / Fail / InvalidGraph
        if isinstance(source, str):
            raise ValueError(f"{source}: not a readable ONNX model (truncated or corrupt?): {error}") from None
        raise


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime over a model that fits the ONNX contract (see :mod:`export.onnx_export`).

    Args:
        model: ``.onnx`` path (or a loaded ``onnx.ModelProto``) mapping (N, 3, S, S) float32 to (N, 62).
        threads: ONNX Runtime intra-op threads.
        providers: execution providers; default ``["CPUExecutionProvider"]``.
        denormalize: statistics for a model whose output is *normalised* (the teacher); ``None`` requires a
            DRTN export whose metadata says ``params=denormalized``.
        name: backend name in results and benchmarks.
        source_name: how errors name an in-memory model (e.g. the file it was read from).
    Raises:
        FileNotFoundError / ValueError: missing, unreadable or wrong-shaped model, or metadata that asks for a
            different pixel normalisation than :func:`export.backends.base.preprocess_crops` applies.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model,
        *,
        threads: int = 2,
        providers: list[str] | None = None,
        denormalize: ParamStats | None = None,
        name: str | None = None,
        source_name: str | None = None,
    ):
        in_memory = _is_model_proto(model)
        label = source_name or ("<onnx model>" if in_memory else str(model))
        session = ort_session(model, threads, providers)
        self.info = inspect_session(session, label)
        self._check_metadata(self.info, denormalize is not None)
        self.name = name or self.name
        self.threads = threads
        self._stats = denormalize
        self._session = session
        self.model_path = None if in_memory else Path(model)

    @staticmethod
    def _check_metadata(info, output_normalized: bool) -> None:
        meta = info.metadata
        if not output_normalized and not info.is_drtn_export:
            raise ValueError(
                f"{info.source}: not a DRTN export (metadata lacks params=denormalized); re-export it with "
                "`main.py export`, or use the 'teacher' backend for a 3DDFA_V2 model with normalised output"
            )
        expected = {"channel_order": CHANNEL_ORDER, "pixel_mean": repr(PIXEL_MEAN), "pixel_scale": repr(PIXEL_SCALE)}
        for key, value in expected.items():
            if key in meta and meta[key] != value:
                raise ValueError(f"{info.source}: metadata {key}={meta[key]!r}, but this product feeds {key}={value!r}")

    @property
    def crop_size(self) -> int:
        return self.info.crop_size

    @property
    def max_batch(self) -> int | None:
        return None  # a fixed-batch model is run in chunks

    def _run(self, images: np.ndarray) -> np.ndarray:
        fixed = self.info.fixed_batch
        if fixed is None:
            params = self._session.run([self.info.output_name], {self.info.input_name: images})[0]
        else:
            params = np.concatenate([self._run_fixed(images[i : i + fixed], fixed) for i in range(0, len(images), fixed)])
        if self._stats is not None:
            params = self._stats.denormalize(params)
        return params

    def _run_fixed(self, chunk: np.ndarray, fixed: int) -> np.ndarray:
        count = len(chunk)
        if count < fixed:  # pad the last chunk to the model's fixed batch
            chunk = np.concatenate([chunk, np.zeros((fixed - count, *chunk.shape[1:]), dtype=chunk.dtype)])
        return self._session.run([self.info.output_name], {self.info.input_name: chunk})[0][:count]

    def close(self) -> None:
        self._session = None


# ---------------------------------------------------------------------------------------------- teacher
def make_batch_dynamic(model):
    """Copy of a fixed-batch model with a dynamic batch axis, or ``None`` if the graph does not allow it.

    The 3DDFA_V2 teacher is exported for batch 1: its input and output say 1, and its one Reshape flattens to the
    constant shape ``[1, -1]``. Setting the I/O batch to a symbol and that leading 1 to 0 (ONNX: copy the input's
    dimension) makes it batch-agnostic. Callers must verify the result numerically (:class:`TeacherBackend` does).
    """
    import onnx
    from onnx import numpy_helper

    edited = copy.deepcopy(model)
    graph = edited.graph
    initializers = {init.name: init for init in graph.initializer}
    for value in list(graph.input) + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value") or dim.dim_value != 1:
            return None
        dim.Clear()
        dim.dim_param = "batch"
    for node in graph.node:
        if node.op_type == "Reshape":
            shape_init = initializers.get(node.input[1])
            if shape_init is None:
                return None  # a computed shape: cannot tell whether it pins the batch
            shape = numpy_helper.to_array(shape_init).copy()
            if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
                return None
            if len(shape) and shape[0] == 1:
                shape[0] = 0
                shape_init.CopyFrom(numpy_helper.from_array(shape, shape_init.name))
    del graph.value_info[:]  # stale intermediate shapes that still say batch 1
    try:
        onnx.checker.check_model(edited)
    except onnx.checker.ValidationError:
        return None
    return edited


class TeacherBackend(OnnxRuntimeBackend):
    """The 3DDFA_V2 MobileNet-0.5 peer (``teacher/3ddfa_v2_mb05_120x120.onnx``), run side by side with ours.

    Its output is normalised; this backend de-normalises it with the shared statistics, so its results are
    comparable with every other backend. The file's batch is fixed at 1: the graph is made batch-dynamic in memory
    (:func:`make_batch_dynamic`) and checked against single-crop runs; if that fails, batches are run one by one.

    Args:
        model_path: teacher ONNX; default ``Assets.teacher_onnx`` of ``assets``.
        assets: asset folder (``--assets`` / ``DRTN_ASSETS``), for the teacher and the statistics.
        threads: ONNX Runtime intra-op threads.
    """

    name = "teacher"

    def __init__(
        self, model_path: str | os.PathLike | None = None, *, assets=None, threads: int = 2, providers: list[str] | None = None
    ):
        from drtn.assets import TEACHER_FILE, Assets, find_assets
        from export.contract import STATS_FILE, inspect_onnx, load_onnx_model

        if not isinstance(assets, Assets):
            assets = find_assets(assets, required=(STATS_FILE,) + (() if model_path else (TEACHER_FILE,)))
        stats = ParamStats.load(assets.path(STATS_FILE))
        path = Path(model_path) if model_path else assets.teacher_onnx
        original = load_onnx_model(path)
        model = original
        if inspect_onnx(original, name=str(path)).fixed_batch is not None:
            dynamic = make_batch_dynamic(original)
            if dynamic is not None and self._same_as_single(dynamic, original, threads):
                model = dynamic
            else:
                LOGGER.warning("teacher %s: could not make its batch dynamic; running crops one at a time", path)
        super().__init__(model, threads=threads, providers=providers, denormalize=stats, name=self.name, source_name=str(path))
        self.model_path = path

    @staticmethod
    def _same_as_single(dynamic, original, threads: int) -> bool:
        """Run a batch of 3 through the edited graph and each item through the original: same numbers?"""
        size = original.graph.input[0].type.tensor_type.shape.dim[2].dim_value
        images = np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32)
        try:
            batched_session, single_session = ort_session(dynamic, threads), ort_session(original, threads)
            batched = batched_session.run(None, {dynamic.graph.input[0].name: images})[0]
            single = np.concatenate(
                [single_session.run(None, {original.graph.input[0].name: images[i : i + 1]})[0] for i in range(3)]
            )
        except Exception as error:  # an ORT shape error means the edit was wrong
            LOGGER.debug("dynamic-batch teacher failed: %s", error)
            return False
        return batched.shape == single.shape and bool(np.allclose(batched, single, rtol=1e-4, atol=1e-5))
