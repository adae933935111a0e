"""The mixed-precision graph TensorRT builds FP16 engines from, checked on ONNX Runtime (no GPU needed)."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from export.backends.base import preprocess_crops
from export.backends.onnxruntime_backend import OnnxRuntimeBackend
from export.backends.tensorrt_backend import engine_onnx_bytes
from export.compare import FP16_TOLERANCE, compare_params
from export.fp16 import convert_to_mixed_fp16
from export.onnx_export import DENORMALIZE_NODE_PREFIX

from .test_onnx_export import tiny_onnx


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name: v.type.tensor_type.elem_type for v in values}


def test_mixed_graph_keeps_contract_and_fp32_where_needed(exported):
    _, path = exported
    mixed = onnx.load_from_string(engine_onnx_bytes(path, "fp16"))
    onnx.checker.check_model(mixed, full_check=True)
    graph = mixed.graph
    assert graph.input[0].name == "image" and graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert graph.output[0].name == "params" and graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # batch still dynamic
    types = _types(mixed)
    nodes = {n.name: n for n in graph.node}
    # de-normalisation in FP32 (identity coefficients ~1e6 overflow FP16)
    for name in (DENORMALIZE_NODE_PREFIX + "Mul", DENORMALIZE_NODE_PREFIX + "Add"):
        assert all(types.get(i, TensorProto.FLOAT) == TensorProto.FLOAT for i in nodes[name].input)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.output[0]] == TensorProto.FLOAT16 for n in convs)
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    assert all(types[n.output[0]] == TensorProto.FLOAT for n in norms)
    initializers = {i.name: i.data_type for i in graph.initializer}
    assert initializers["drtn_param_std"] == TensorProto.FLOAT
    assert TensorProto.FLOAT16 in initializers.values()


def test_mixed_graph_bytes_are_deterministic(exported):
    _, path = exported
    first, second = engine_onnx_bytes(path, "fp16"), engine_onnx_bytes(path, "fp16")
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()  # a stable engine-cache key
    assert engine_onnx_bytes(path, "fp32") == onnx.load(str(path)).SerializeToString(deterministic=True)
    with pytest.raises(ValueError, match="precision: expected 'fp16' or 'fp32', got 'int8'"):
        engine_onnx_bytes(path, "int8")


def test_mixed_graph_error_estimate_on_onnxruntime(exported, helen_crops, stats, morphable):
    """ONNX Runtime rounds weights and activations to FP16 at the same places TensorRT will."""
    _, path = exported
    reference = OnnxRuntimeBackend(path).infer(helen_crops).params
    session = ort.InferenceSession(engine_onnx_bytes(path, "fp16"), providers=["CPUExecutionProvider"])
    mixed = session.run(["params"], {"image": preprocess_crops(helen_crops, 120)})[0]
    report = compare_params(reference, mixed, stats, morphable)
    assert np.isfinite(mixed).all()
    assert FP16_TOLERANCE.violations(report) == [], report.summary()
    assert report.max_abs_normalized > 1e-5  # it really ran in reduced precision


def test_converter_on_a_small_graph(tmp_path):
    model = onnx.load(str(tiny_onnx(tmp_path / "tiny.onnx")))
    mixed = convert_to_mixed_fp16(model)
    types = _types(mixed)
    assert types["image"] == types["params"] == TensorProto.FLOAT
    assert types["flat"] == TensorProto.FLOAT16
    images = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"image": images})[0]
    result = ort.InferenceSession(mixed.SerializeToString()).run(None, {"image": images})[0]
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=2e-3, atol=2e-3)
