"""ONNX export: the contract (names, shapes, metadata, de-normalisation), the self-check, and bad model files."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from export.compare import FP32_TOLERANCE, Tolerance
from export.onnx_export import (
    DENORMALIZE_NODE_PREFIX,
    ExportCheckError,
    export_onnx,
    inspect_onnx,
)
from export.samples import random_crops


def tiny_onnx(path, in_shape=("N", 3, 8, 8), out_features=62, metadata=None, extra_input=False, elem_type=TensorProto.FLOAT):
    """A small valid ONNX: image -> GlobalAveragePool -> Flatten -> MatMul (3, out_features)."""
    weight = numpy_helper.from_array(np.ones((3, out_features), dtype=np.float32), "weight")
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["params"]),
    ]
    inputs = [helper.make_tensor_value_info("image", elem_type, list(in_shape))]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info("params", TensorProto.FLOAT, [in_shape[0], out_features])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------- contract
def test_export_contract(exported, network):
    report, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    info = inspect_onnx(path)
    assert (info.input_name, info.output_name, info.crop_size, info.fixed_batch) == ("image", "params", 120, None)
    image_dims = model.graph.input[0].type.tensor_type.shape.dim
    assert image_dims[0].dim_param and [d.dim_value for d in image_dims[1:]] == [3, 120, 120]
    meta = info.metadata
    assert meta["crop_size"] == "120" and meta["channel_order"] == "BGR"
    assert float(meta["pixel_mean"]) == 127.5 and float(meta["pixel_scale"]) == 1 / 128
    assert meta["params"] == "denormalized" and meta["model_config"] == network.config.name
    assert meta["source_checkpoint_sha256"].startswith("state_dict:")
    assert "40 identity" in meta["output_layout"] and "(N, 3, 120, 120)" in meta["input_layout"]
    assert info.is_drtn_export
    names = [node.name for node in model.graph.node if node.name.startswith(DENORMALIZE_NODE_PREFIX)]
    assert names == [DENORMALIZE_NODE_PREFIX + "Mul", DENORMALIZE_NODE_PREFIX + "Add"]
    assert set(report.checks) == {"random", "real"}
    real = report.checks["real"]
    assert real.count == 8 and real.landmark_px_max is not None
    assert FP32_TOLERANCE.violations(real) == []


def test_exported_graph_is_denormalised_and_matches_torch_for_any_batch(exported, network, stats, helen_crops):
    _, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    from export.backends.base import preprocess_crops

    images = preprocess_crops(helen_crops, 120)
    batched = session.run(["params"], {"image": images})[0]
    singles = np.concatenate([session.run(["params"], {"image": images[i : i + 1]})[0] for i in range(len(images))])
    with torch.inference_mode():
        expected = stats.denormalize(network(torch.from_numpy(images)).numpy())
    # compare in units of each parameter's std (identity coefficients are ~1e5, pose ~1e-4)
    assert np.abs((batched - expected) / stats.std).max() < FP32_TOLERANCE.max_abs_normalized
    assert np.abs((singles - batched) / stats.std).max() < FP32_TOLERANCE.max_abs_normalized
    # really de-normalised: the identity coefficients are on the statistics' scale, and outputs vary by input
    normalized = (batched - stats.mean) / stats.std
    assert np.abs(batched[:, 12:52]).max() > 1e3
    assert normalized.std(axis=0).mean() > 0.05


def test_failed_self_check_writes_nothing(tmp_path, network, stats):
    path = tmp_path / "never.onnx"
    with pytest.raises(ExportCheckError, match="ONNX Runtime disagrees with torch on random crops"):
        export_onnx(network, path, stats=stats, tolerance=Tolerance(max_abs_normalized=-1.0))
    assert list(tmp_path.iterdir()) == []


def test_export_records_given_checkpoint_hash(tmp_path, stats):
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)
            self.fc = torch.nn.Linear(4, 62)

        def forward(self, images):
            return self.fc(self.conv(images).mean(dim=(2, 3)))

    path = tmp_path / "tiny.onnx"
    report = export_onnx(Tiny().eval(), path, stats=stats, crop_size=32, config_name="tiny", source_sha256="ab" * 32)
    info = inspect_onnx(path)
    assert info.crop_size == 32 and info.metadata["model_config"] == "tiny"
    assert info.metadata["source_checkpoint_sha256"] == "ab" * 32
    assert report.onnx_sha256 and path.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]  # no temporary files left behind


# ---------------------------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="ONNX model not found: .*nope.onnx"):
        inspect_onnx(tmp_path / "nope.onnx")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.onnx: empty file"):
        inspect_onnx(path)


def test_truncated_file(tmp_path, exported):
    _, good = exported
    path = tmp_path / "truncated.onnx"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated.onnx: not a readable ONNX model \(truncated or corrupt\?\)"):
        inspect_onnx(path)


def test_not_onnx_at_all(tmp_path):
    path = tmp_path / "text.onnx"
    path.write_text("this is not a protobuf" * 10)
    with pytest.raises(ValueError, match="text.onnx: not a readable ONNX model"):
        inspect_onnx(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(in_shape=("N", 3, 112, 120)), r"input 'image' is \(N, 3, 112, 120\) float; expected \(N, 3, S, S\) float32"),
        (dict(in_shape=("N", 120, 120, 3)), r"input 'image' is \(N, 120, 120, 3\)"),
        (dict(in_shape=("N", 3, "H", "W")), r"input 'image' is \(N, 3, H, W\)"),
        (dict(out_features=10), r"output 'params' is \(N, 10\) float; expected \(N, 62\) float32"),
        (dict(extra_input=True), r"expected one input .* found 2: \['image', 'other'\]"),
        (dict(elem_type=TensorProto.DOUBLE), r"input 'image' is \(N, 3, 8, 8\) double"),
    ],
)
def test_wrong_shaped_models_are_rejected_naming_file_and_shape(tmp_path, kwargs, message):
    path = tiny_onnx(tmp_path / "wrong.onnx", **kwargs)
    with pytest.raises(ValueError, match=message) as error:
        inspect_onnx(path)
    assert str(path) in str(error.value)


def test_metadata_crop_size_must_agree_with_shape(tmp_path):
    path = tiny_onnx(tmp_path / "meta.onnx", metadata={"crop_size": "120"})
    with pytest.raises(ValueError, match="metadata crop_size=120 disagrees"):
        inspect_onnx(path)


def test_fixed_batch_is_reported(tmp_path):
    info = inspect_onnx(tiny_onnx(tmp_path / "fixed.onnx", in_shape=(1, 3, 8, 8)))
    assert info.fixed_batch == 1 and info.crop_size == 8 and not info.is_drtn_export


def test_random_crops_are_reproducible():
    np.testing.assert_array_equal(random_crops(2, 8, seed=3), random_crops(2, 8, seed=3))
