"""The TensorRT backend's build / cache / run plumbing against a fake ``tensorrt`` module and fake CUDA.

The fake builder records what it is asked for; its "engine" runs the parsed ONNX bytes in ONNX Runtime and reads
and writes the buffers through the raw addresses given to ``set_tensor_address``, exactly as TensorRT would. The
real library is exercised by the ``gpu`` / ``tensorrt`` tests in test_tensorrt_backend.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import types

import numpy as np
import onnxruntime as ort
import pytest
import torch

import export.backends.tensorrt_backend as trt_backend
from export.backends.onnxruntime_backend import OnnxRuntimeBackend
from export.backends.tensorrt_backend import TensorRTBackend, build_engine
from export.compare import FP16_TOLERANCE, compare_backends
from export.engine_cache import BatchProfile

PARSED: dict[str, bytes] = {}  # engine id -> ONNX bytes it was "built" from


def make_fake_tensorrt(version: str = "10.9.0", parse_ok: bool = True):
    calls: dict = {"network_flags": [], "profiles": [], "timing_in": [], "builds": 0}

    class Network:
        num_inputs = num_outputs = 1

        def get_input(self, index):
            return types.SimpleNamespace(name="image", shape=(-1, 3, 120, 120))

    class Parser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            self.network = network

        def parse(self, data):
            assert isinstance(data, bytes)
            self.network.onnx = data
            return parse_ok

        def get_error(self, index):
            return "In node 3 (Conv): unsupported"

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"timings:" + str(calls["builds"]).encode()

    class Config:
        def set_memory_pool_limit(self, pool, size):
            assert size == 1024 << 20

        def create_timing_cache(self, data):
            calls["timing_in"].append(data)
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            assert ignore_mismatch is False
            self.timing = cache

        def add_optimization_profile(self, profile):
            self.profile = profile

        def get_timing_cache(self):
            return self.timing

    class Profile:
        def set_shape(self, name, low, opt, high):
            self.shapes = (name, low, opt, high)
            calls["profiles"].append(self.shapes)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"].append(flags)
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls["builds"] += 1
            engine_id = f"e{len(PARSED)}"
            PARSED[engine_id] = network.onnx
            return b"ENGINE" + json.dumps({"id": engine_id, "shapes": config.profile.shapes[1:]}).encode()

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses, self.shape = engine, {}, None

        def set_tensor_address(self, name, address):
            self.addresses[name] = address

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)

        def execute_async_v3(self, stream_handle):
            count = self.shape[0]
            size = int(np.prod(self.shape))
            images = np.ctypeslib.as_array((ctypes.c_float * size).from_address(self.addresses["image"])).reshape(self.shape)
            params = self.engine.session.run(["params"], {"image": images.copy()})[0].astype(np.float32)
            ctypes.memmove(self.addresses["params"], params.ctypes.data, params.nbytes)
            assert params.shape == (count, 62)
            return True

    class Engine:
        num_io_tensors = 2

        def __init__(self, meta):
            self.shapes = meta["shapes"]
            self.session = ort.InferenceSession(PARSED[meta["id"]], providers=["CPUExecutionProvider"])

        def get_tensor_name(self, index):
            return ["image", "params"][index]

        def get_tensor_mode(self, name):
            return fake.TensorIOMode.INPUT if name == "image" else fake.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return fake.float32

        def get_tensor_profile_shape(self, name, index):
            return self.shapes

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            if not data.startswith(b"ENGINE"):
                return None
            return Engine(json.loads(data[len(b"ENGINE") :]))

    fake = types.SimpleNamespace(
        __version__=version,
        float32="float32",
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=3),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
        TensorIOMode=types.SimpleNamespace(INPUT=1, OUTPUT=2),
        Builder=Builder,
        OnnxParser=Parser,
        Runtime=Runtime,
        calls=calls,
    )
    return fake


def make_fake_cuda_torch():
    """torch with a fake ``cuda`` namespace: 'device' tensors are host tensors (shared address space)."""

    class Stream:
        cuda_stream = 0

        def __init__(self, device=None):
            pass

        def synchronize(self):
            pass

    cuda = types.SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: 1,
        init=lambda: None,
        get_device_name=lambda device: "Fake GPU",
        get_device_capability=lambda device: (8, 6),
        device=lambda device: contextlib.nullcontext(),
        stream=lambda stream: contextlib.nullcontext(),
        Stream=Stream,
    )

    def empty(shape, dtype, device=None, pin_memory=False):
        return torch.empty(shape, dtype=dtype)

    return types.SimpleNamespace(cuda=cuda, empty=empty, float32=torch.float32, device=torch.device)


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = make_fake_tensorrt()
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(trt_backend, "require_cuda_torch", lambda device_index=0: make_fake_cuda_torch())
    return fake


def test_build_engine_uses_strong_typing_profile_and_timing_cache(fake_gpu):
    engine, timing = build_engine(b"onnx", BatchProfile.create(16, 2), timing_cache=b"old")
    calls = fake_gpu.calls
    assert calls["network_flags"] == [1 << 3]  # STRONGLY_TYPED
    assert calls["profiles"] == [("image", (1, 3, 120, 120), (2, 3, 120, 120), (16, 3, 120, 120))]
    assert calls["timing_in"] == [b"old"] and timing == b"timings:1" and engine.startswith(b"ENGINE")


def test_build_engine_reports_parser_errors(monkeypatch):
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: make_fake_tensorrt(parse_ok=False))
    with pytest.raises(
        RuntimeError, match=r"model.onnx: TensorRT could not parse the ONNX model: In node 3 \(Conv\): unsupported"
    ):
        build_engine(b"onnx", BatchProfile.create(4), source="model.onnx")


def test_tensorrt_older_than_10_is_refused(monkeypatch):
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: make_fake_tensorrt(version="8.6.1"))
    with pytest.raises(
        trt_backend.BackendUnavailableError, match="TensorRT 8.6.1 is too old: the backend needs TensorRT >= 10"
    ):
        build_engine(b"onnx", BatchProfile.create(4))


def test_backend_builds_caches_runs_and_rebuilds(fake_gpu, exported, tmp_path, helen_crops, stats, morphable, caplog):
    _, onnx_path = exported
    with caplog.at_level(logging.INFO):
        backend = TensorRTBackend(onnx_path, max_batch=8, cache_dir=tmp_path)
    assert fake_gpu.calls["builds"] == 1 and "building TensorRT fp16 engine" in caplog.text
    assert backend.key.compute_capability == (8, 6) and backend.key.tensorrt_version == "10.9.0"
    assert (tmp_path / "timing" / "trt10.9.0-sm86.cache").read_bytes() == b"timings:1"

    # the engine ran the mixed-precision graph: FP16-level agreement with ONNX Runtime FP32, any batch up to 8
    report = compare_backends(OnnxRuntimeBackend(onnx_path), backend, helen_crops, stats, morphable)
    assert FP16_TOLERANCE.violations(report) == [] and report.max_abs_normalized > 1e-5, report.summary()
    first_two = backend.infer(helen_crops[:2]).params
    np.testing.assert_array_equal(first_two, backend.infer(helen_crops[:8]).params[:2])
    with pytest.raises(ValueError, match=r"batch of 9 crops exceeds .*--max-batch"):
        backend.infer(np.concatenate([helen_crops, helen_crops[:1]]))

    # second start: from the cache, with the timing cache fed back
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = TensorRTBackend(onnx_path, max_batch=8, cache_dir=tmp_path)
    assert fake_gpu.calls["builds"] == 1 and "using cached TensorRT engine" in caplog.text
    np.testing.assert_array_equal(again.infer(helen_crops[:2]).params, first_two)

    # an engine TensorRT cannot deserialize (other GPU / version, or damage with a matching hash) is rebuilt
    entry = again.cache.entry_dir(again.key)
    bad = b"NOT-AN-ENGINE"
    (entry / "engine.plan").write_bytes(bad)
    metadata = json.loads((entry / "engine.json").read_text())
    metadata.update(engine_sha256=hashlib.sha256(bad).hexdigest(), engine_bytes=len(bad))
    (entry / "engine.json").write_text(json.dumps(metadata))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        rebuilt = TensorRTBackend(onnx_path, max_batch=8, cache_dir=tmp_path)
    assert fake_gpu.calls["builds"] == 2 and fake_gpu.calls["timing_in"][-1] == b"timings:1"
    assert "could not deserialize it" in caplog.text
    np.testing.assert_array_equal(rebuilt.infer(helen_crops[:2]).params, first_two)

    # fp32 is another cache entry, built from the FP32 graph itself: tight agreement
    fp32 = TensorRTBackend(onnx_path, max_batch=8, precision="fp32", cache_dir=tmp_path)
    assert fake_gpu.calls["builds"] == 3 and fp32.key != rebuilt.key
    assert compare_backends(OnnxRuntimeBackend(onnx_path), fp32, helen_crops, stats).max_abs_normalized < 1e-6
    fp32.close()
    with pytest.raises(RuntimeError, match="closed"):
        fp32.infer(helen_crops[:1])
