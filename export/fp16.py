"""Mixed-precision (FP16) variant of an exported ONNX graph, for strongly typed TensorRT builds.

TensorRT 11 removed the builder's FP16 flag ("weak typing"): the precision of every tensor now comes from the
graph itself. This module rewrites an FP32 graph the way ``torch.autocast`` runs a model: convolutions, matrix
products and element-wise ops in FP16; normalisations, softmax and the de-normalisation in FP32; graph input and
output stay FP32, so the ONNX contract is unchanged. Casts are inserted where the two meet.

Why the de-normalisation must stay FP32: identity coefficients reach ~1e6 (FP16 tops out at 65504) and some pose
means are ~1e-7 (below FP16's normal range).
"""

from __future__ import annotations

import copy
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.contract import DENORMALIZE_NODE_PREFIX, load_onnx_model

# Ops that stay FP32, as torch.autocast keeps them: accumulations that lose accuracy or overflow in FP16.
FP32_OPS = frozenset(
    {
        "LayerNormalization",
        "Softmax",
        "LogSoftmax",
        "ReduceSum",
        "ReduceMean",
        "ReduceL2",
        "Exp",
        "Log",
        "Pow",
        "Sqrt",
        "Div",
        "Erf",
    }
)
# Inputs that must keep their declared type whatever the node's precision (op -> input indices).
_TYPE_FIXED_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}
# Ops that only read their input's shape: no cast needed.
_SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of every FLOAT tensor of the graph (after ONNX shape/type inference)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    graph = inferred.graph
    names = {
        v.name
        for v in list(graph.value_info) + list(graph.input) + list(graph.output)
        if v.type.tensor_type.elem_type == TensorProto.FLOAT
    }
    names |= {init.name for init in graph.initializer if init.data_type == TensorProto.FLOAT}
    for node in graph.node:  # Constant nodes' outputs are not always in value_info
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.t.data_type == TensorProto.FLOAT:
                    names.add(node.output[0])
    return names


def convert_to_mixed_fp16(
    model: onnx.ModelProto, fp32_node_prefixes: tuple[str, ...] = (), fp32_ops: frozenset[str] = FP32_OPS
) -> onnx.ModelProto:
    """A copy of ``model`` whose float computation runs in FP16 except ``fp32_ops`` and nodes named with a prefix
    in ``fp32_node_prefixes``. Graph inputs and outputs keep their FP32 type.

    Raises:
        ValueError: the result fails ``onnx.checker`` (an op this converter does not know how to handle).
    """
    model = copy.deepcopy(model)
    graph = model.graph
    floats = _float_tensors(model)
    producer_precision: dict[str, int] = {}  # float tensor -> TensorProto.FLOAT / FLOAT16 as produced
    for value in graph.input:
        if value.name in floats:
            producer_precision[value.name] = TensorProto.FLOAT

    def node_precision(node: onnx.NodeProto) -> int:
        if node.op_type in fp32_ops or any(node.name.startswith(p) for p in fp32_node_prefixes):
            return TensorProto.FLOAT
        return TensorProto.FLOAT16

    initializers = {init.name: init for init in graph.initializer}
    initializer_users: dict[str, set[int]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if (
                name in initializers
                and initializers[name].data_type == TensorProto.FLOAT
                and index not in _TYPE_FIXED_INPUTS.get(node.op_type, ())
            ):
                initializer_users.setdefault(name, set()).add(node_precision(node))
    # An initializer used only by FP16 nodes is stored in FP16; one used by both gets an FP16 twin.
    fp16_twin: dict[str, str] = {}
    for name, users in initializer_users.items():
        if users == {TensorProto.FLOAT16}:
            initializers[name].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(initializers[name]).astype(np.float16), name)
            )
            producer_precision[name] = TensorProto.FLOAT16
        else:
            producer_precision[name] = TensorProto.FLOAT
            if TensorProto.FLOAT16 in users:
                twin = f"{name}__fp16"
                graph.initializer.append(
                    numpy_helper.from_array(numpy_helper.to_array(initializers[name]).astype(np.float16), twin)
                )
                fp16_twin[name] = twin

    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            suffix = "fp16" if to == TensorProto.FLOAT16 else "fp32"
            casts[key] = f"{name}__as_{suffix}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=f"cast/{name}/{suffix}"))
        return casts[key]

    for node in graph.node:
        precision = node_precision(node)
        for index, name in enumerate(node.input):
            if (
                not name
                or name not in floats
                or index in _TYPE_FIXED_INPUTS.get(node.op_type, ())
                or node.op_type in _SHAPE_ONLY_OPS
            ):
                continue
            have = producer_precision.get(name, TensorProto.FLOAT)
            if have == precision:
                continue
            if precision == TensorProto.FLOAT16 and name in fp16_twin:
                node.input[index] = fp16_twin[name]
            else:
                node.input[index] = cast(name, precision)
        if precision == TensorProto.FLOAT16:
            if node.op_type == "Constant" and node.attribute[0].name in ("value_float", "value_floats"):
                values = np.asarray(
                    node.attribute[0].f if node.attribute[0].name == "value_float" else list(node.attribute[0].floats)
                )
                del node.attribute[:]
                node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(values.astype(np.float16))))
                floats.add(node.output[0])
            for attribute in node.attribute:
                if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                    attribute.i = TensorProto.FLOAT16
                if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT:
                    attribute.t.CopyFrom(
                        numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float16), attribute.t.name)
                    )
        for name in node.output:
            if name in floats:
                producer_precision[name] = precision
        new_nodes.append(node)

    # Graph outputs keep FP32: cast an FP16-produced output back under its public name.
    for output in graph.output:
        if producer_precision.get(output.name) == TensorProto.FLOAT16:
            internal = f"{output.name}__fp16"
            for node in new_nodes:
                node.output[:] = [internal if o == output.name else o for o in node.output]
                node.input[:] = [internal if i == output.name else i for i in node.input]
            new_nodes.append(
                helper.make_node("Cast", [internal], [output.name], to=TensorProto.FLOAT, name=f"cast/{output.name}/fp32")
            )

    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]  # old types are stale; inference below fills them again
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ValueError(f"mixed-precision conversion produced an invalid graph: {error}") from None
    return model


def engine_onnx_bytes(onnx_path: str | os.PathLike, precision: str) -> bytes:
    """The exact ONNX bytes TensorRT builds from: the FP32 export itself, or its mixed-precision FP16 variant.

    Precision lives in the graph (strong typing, the only mode of TensorRT 11): see :mod:`export.fp16`.
    Serialization is deterministic, so the SHA-256 of these bytes is a stable cache key.
    """
    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision: expected 'fp16' or 'fp32', got {precision!r}")
    model = load_onnx_model(onnx_path)
    if precision == "fp16":
        model = convert_to_mixed_fp16(model, fp32_node_prefixes=(DENORMALIZE_NODE_PREFIX,))
    return model.SerializeToString(deterministic=True)


def estimate_fp16_error(onnx_path, crops_bgr: np.ndarray, stats, morphable=None):
    """Run the mixed-precision variant of an export on ONNX Runtime (CPU) against the FP32 export.

    ONNX Runtime rounds weights and activations to FP16 where TensorRT's FP16 engine will, so this estimates the
    FP16 error on machines without a GPU; the TensorRT report (``main.py export --tensorrt``) is the real one.

    Returns:
        :class:`export.compare.ParamErrorReport` of FP16-graph vs FP32-graph parameters.
    """
    import onnxruntime as ort

    from export.backends.base import preprocess_crops
    from export.backends.onnxruntime_backend import OnnxRuntimeBackend
    from export.compare import compare_params

    reference = OnnxRuntimeBackend(onnx_path)
    session = ort.InferenceSession(engine_onnx_bytes(onnx_path, "fp16"), providers=["CPUExecutionProvider"])
    images = preprocess_crops(crops_bgr, reference.crop_size)
    mixed = session.run([reference.info.output_name], {reference.info.input_name: images})[0]
    return compare_params(reference.infer(crops_bgr).params, mixed, stats, morphable)
