"""The ONNX contract of an exported DRTN model, checked without torch and without the ``onnx`` package.

This is the inference side of :mod:`export.onnx_export`: everything a consumer needs to load and validate a model
file (names, the bundled export beside the weights, :func:`inspect_session` over an ONNX Runtime session). It
imports numpy and, inside functions, ``onnxruntime``, so ``drtn video`` runs on a base install (no torch, no onnx).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from drtn.assets import file_sha256 as sha256_file  # noqa: F401 (the one implementation; export's name for it)
from drtn.params import NUM_PARAMS

LOGGER = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "params"
CONTRACT_VERSION = "1"
# Bump when the exported graph changes for the same checkpoint: cached default exports are then rebuilt.
EXPORT_FORMAT_VERSION = 1
STATS_FILE = "bfm/param_mean_std_62d_120x120.pkl"
DENORMALIZE_NODE_PREFIX = "drtn/denormalize/"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
DEFAULT_WEIGHTS_NAME = "drtn_rt.pt"
BUNDLED_ONNX_NAME = "drtn_rt.onnx"


@dataclass(frozen=True)
class OnnxModelInfo:
    """What a consumer needs to know about a model file that passed :func:`inspect_session` / ``inspect_onnx``.

    Attributes:
        source: the file path, or ``"<bytes>"``.
        input_name / output_name: graph input (N, 3, S, S) and output (N, 62).
        crop_size: S.
        fixed_batch: the input's batch dimension if it is a fixed number (e.g. 1 for the teacher), else ``None``.
        metadata: ``metadata_props`` as a dict (empty for a foreign model).
    """

    source: str
    input_name: str
    output_name: str
    crop_size: int
    fixed_batch: int | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def flip_average(self) -> bool:
        """True when the graph itself averages each crop with its mirror (``main.py export --flip-average``)."""
        return self.metadata.get("flip_average") == "linear"

    @property
    def is_drtn_export(self) -> bool:
        """True for a file written by ``export_onnx`` (de-normalised output, our metadata)."""
        return self.metadata.get("producer") == "drtn.export" and self.metadata.get("params") == "denormalized"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, element type (``"float"``, ``"double"``, ...), dims (int, symbol or None)."""

    name: str
    elem_type: str
    dims: tuple


def _shape_text(dims) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in dims) + ")"


def check_contract(label: str, inputs: list[TensorSpec], outputs: list[TensorSpec], metadata: dict[str, str]) -> OnnxModelInfo:
    """Validate that a model maps (N, 3, S, S) float32 to (N, 62) float32 and describe it.

    Raises:
        ValueError: inputs / outputs that do not fit; the message names the model and the shapes.
    """
    if len(inputs) != 1:
        raise ValueError(f"{label}: expected one input (N, 3, S, S) float32, found {len(inputs)}: {[i.name for i in inputs]}")
    if len(outputs) != 1:
        raise ValueError(
            f"{label}: expected one output (N, {NUM_PARAMS}) float32, found {len(outputs)}: {[o.name for o in outputs]}"
        )
    image, params = inputs[0], outputs[0]
    in_dims, out_dims = list(image.dims), list(params.dims)
    if (
        image.elem_type != "float"
        or len(in_dims) != 4
        or in_dims[1] != 3
        or not isinstance(in_dims[2], int)
        or in_dims[2] != in_dims[3]
    ):
        raise ValueError(
            f"{label}: input '{image.name}' is {_shape_text(in_dims)} {image.elem_type}; expected (N, 3, S, S) float32 "
            f"with a fixed square S"
        )
    if params.elem_type != "float" or len(out_dims) != 2 or out_dims[1] != NUM_PARAMS:
        raise ValueError(
            f"{label}: output '{params.name}' is {_shape_text(out_dims)} {params.elem_type}; expected (N, {NUM_PARAMS}) float32"
        )
    crop_size = in_dims[2]
    if "crop_size" in metadata and metadata["crop_size"] != str(crop_size):
        raise ValueError(
            f"{label}: metadata crop_size={metadata['crop_size']} disagrees with input shape {_shape_text(in_dims)}"
        )
    fixed_batch = in_dims[0] if isinstance(in_dims[0], int) and in_dims[0] > 0 else None
    return OnnxModelInfo(label, image.name, params.name, crop_size, fixed_batch, dict(metadata))


def _ort_spec(node_arg) -> TensorSpec:
    elem = node_arg.type
    elem = elem[len("tensor(") : -1] if elem.startswith("tensor(") and elem.endswith(")") else elem
    dims = tuple(d if isinstance(d, int) else (d or None) for d in (node_arg.shape or []))
    return TensorSpec(node_arg.name, elem, dims)


def inspect_session(session, label: str) -> OnnxModelInfo:
    """:func:`check_contract` over an ``onnxruntime.InferenceSession`` (inputs, outputs, custom metadata)."""
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    return check_contract(
        label, [_ort_spec(i) for i in session.get_inputs()], [_ort_spec(o) for o in session.get_outputs()], metadata
    )


def check_model_file(path: str | os.PathLike) -> Path:
    """The path of an existing, non-empty file; FileNotFoundError / ValueError naming it otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not an ONNX model")
    return path


def load_onnx_model(path: str | os.PathLike):
    """``onnx.load`` (needs the ``onnx`` package: the ``[train]`` extra) with one clear error for a missing, empty,
    truncated or non-ONNX file."""
    import onnx

    path = check_model_file(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf DecodeError and friends
        raise ValueError(f"{path}: not a readable ONNX model (truncated or corrupt?): {error}") from None
    if not model.graph.node:
        raise ValueError(f"{path}: not a readable ONNX model (truncated or corrupt?): the graph has no nodes")
    return model


def _dims(value_info) -> list[int | str | None]:
    """Shape of a graph input/output: ints for fixed dims, the symbol or None for dynamic ones."""
    dims = []
    for dim in value_info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or None)
    return dims


def inspect_onnx(source, name: str | None = None) -> OnnxModelInfo:
    """:func:`check_contract` on an ONNX graph (needs the ``onnx`` package; inference uses :func:`inspect_session`).

    Args:
        source: a file path or a loaded ``onnx.ModelProto``.
        name: how to name the model in errors (defaults to the path).
    Raises:
        FileNotFoundError: no file.
        ValueError: unreadable file, or inputs / outputs that do not fit; the message names file and shapes.
    """
    from onnx import TensorProto

    if hasattr(source, "graph"):
        model, label = source, name or "<onnx model>"
    else:
        model, label = load_onnx_model(source), name or str(source)
    initializers = {init.name for init in model.graph.initializer}

    def spec(value) -> TensorSpec:
        return TensorSpec(value.name, TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower(), tuple(_dims(value)))

    inputs = [spec(i) for i in model.graph.input if i.name not in initializers]
    outputs = [spec(o) for o in model.graph.output]
    return check_contract(label, inputs, outputs, {prop.key: prop.value for prop in model.metadata_props})


# ---------------------------------------------------------------------------------------------- bundled weights
def weights_dir() -> Path:
    """``drtn/weights``: the trained model shipped as package data (checkpoint + its ONNX export)."""
    import drtn

    return Path(drtn.__file__).resolve().parent / "weights"


def bundled_checkpoint_path() -> Path:
    """``drtn/weights/drtn_rt.pt`` (the same file as ``drtn.model.default_weights_path()``, found without torch)."""
    return weights_dir() / DEFAULT_WEIGHTS_NAME


def bundled_onnx_path() -> Path:
    """``drtn/weights/drtn_rt.onnx``: the export of the bundled checkpoint, regenerated with
    ``main.py export -o drtn/weights/drtn_rt.onnx`` whenever ``drtn_rt.pt`` changes."""
    return weights_dir() / BUNDLED_ONNX_NAME
