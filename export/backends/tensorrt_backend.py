"""TensorRT backend: an FP16 (or FP32) engine built from the exported ONNX, cached on disk.

This is the only module that imports ``tensorrt``, and only inside functions: importing it costs nothing on a
machine without TensorRT, and selecting the backend there raises :class:`BackendUnavailableError` naming the install
command.

Device buffers are **torch CUDA tensors** (no pycuda, no cuda-python): torch is already a dependency, its caching
allocator and streams are well tested, and ``tensor.data_ptr()`` is all TensorRT's ``set_tensor_address`` needs. So
the GPU machine needs a CUDA build of torch (the default ``pip install torch==2.13.0`` wheel on Linux x86_64 is one).

Build: the exported FP32 graph (``precision="fp32"``) or its mixed-precision variant (``precision="fp16"``,
:func:`export.fp16.convert_to_mixed_fp16`: FP16 convolutions and matrix products, FP32 normalisations and
de-normalisation) -> ``trt.OnnxParser`` into a *strongly typed* network (the only mode of TensorRT 11, which removed
the FP16 builder flag; opt-in on 10.x) -> the optimisation profile of :class:`export.engine_cache.BatchProfile` and
the persistent timing cache. Engines and timing caches live in :class:`export.engine_cache.EngineCache`, keyed by
the SHA-256 of the ONNX bytes TensorRT parsed, TensorRT version, GPU compute capability, precision and profile.
Needs TensorRT >= 10.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from export.backends.base import Backend, BackendUnavailableError
from export.engine_cache import BatchProfile, EngineCache, EngineKey
from export.fp16 import engine_onnx_bytes

LOGGER = logging.getLogger(__name__)

INSTALL_COMMAND = "pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12"
UNAVAILABLE_MESSAGE = (
    "the 'tensorrt' backend needs the TensorRT Python package and an NVIDIA GPU with its CUDA driver "
    f"(plus a CUDA build of torch); install it on a GPU machine with: {INSTALL_COMMAND}"
)
DEFAULT_WORKSPACE_MB = 1024


def import_tensorrt():
    """``import tensorrt``, or :class:`BackendUnavailableError` with the install command."""
    try:
        import tensorrt
    except ImportError as error:
        raise BackendUnavailableError(f"{UNAVAILABLE_MESSAGE} ({error})") from error
    return tensorrt


def require_cuda_torch(device_index: int = 0):
    """torch with a usable CUDA device, or :class:`BackendUnavailableError` saying why not."""
    import torch

    if not torch.cuda.is_available():
        reason = "torch is a CPU-only build" if torch.version.cuda is None else "no CUDA device is visible"
        raise BackendUnavailableError(f"the 'tensorrt' backend needs an NVIDIA GPU: {reason} (torch {torch.__version__})")
    if device_index >= torch.cuda.device_count():
        raise ValueError(f"CUDA device {device_index} requested, {torch.cuda.device_count()} visible")
    torch.cuda.init()  # create the primary CUDA context that TensorRT will share with torch
    return torch


def tensorrt_available() -> tuple[bool, str]:
    """(True, "") if the backend can run here, else (False, the reason) — for benchmarks and test skips."""
    try:
        import_tensorrt()
        require_cuda_torch()
    except BackendUnavailableError as error:
        return False, str(error)
    return True, ""


MIN_TENSORRT_MAJOR = 10  # strongly typed networks, named I/O tensors, execute_async_v3


def _major_version(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def build_engine(
    onnx_bytes: bytes,
    profile: BatchProfile,
    *,
    source: str = "<onnx>",
    timing_cache: bytes | None = None,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
) -> tuple[bytes, bytes]:
    """Parse the ONNX bytes into a strongly typed network and build a serialized engine.

    Returns:
        (engine bytes, updated timing-cache bytes).
    Raises:
        BackendUnavailableError: TensorRT older than 10.
        RuntimeError: the parser or the builder failed (parser errors are listed).
    """
    trt = import_tensorrt()
    if _major_version(trt) < MIN_TENSORRT_MAJOR:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} is too old: the backend needs TensorRT >= {MIN_TENSORRT_MAJOR} ({INSTALL_COMMAND})"
        )
    logger = _logger(trt)
    builder = trt.Builder(logger)
    # Strong typing: every tensor keeps the type the graph gives it (required by TensorRT 11, where the flag is
    # accepted and ignored; opt-in on 10.x). Explicit batch is the only mode since TensorRT 10.
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{source}: TensorRT could not parse the ONNX model: {errors}")
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise RuntimeError(
            f"{source}: expected one input and one output, TensorRT sees {network.num_inputs} / {network.num_outputs}"
        )
    image = network.get_input(0)
    crop_size = int(image.shape[2])

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    optimization = builder.create_optimization_profile()
    optimization.set_shape(image.name, *profile.shapes(crop_size))
    config.add_optimization_profile(optimization)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{source}: TensorRT engine build failed (see the TensorRT messages above)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


class TensorRTBackend(Backend):
    """Runs the exported ONNX through a TensorRT engine on a CUDA GPU.

    Args:
        onnx_path: a DRTN export (``main.py export``); its SHA-256 keys the engine cache.
        max_batch / opt_batch: the optimisation profile (1..max_batch, tuned for opt_batch; see
            :meth:`BatchProfile.create`). ``infer`` with more crops raises ``ValueError``.
        precision: ``"fp16"`` (default) or ``"fp32"``.
        cache_dir: engine cache root; default ``<user cache>/tensorrt``.
        device_index: CUDA device.
        workspace_mb: builder workspace.
    Raises:
        BackendUnavailableError: no TensorRT, or no CUDA GPU.
        FileNotFoundError / ValueError: bad ONNX file or profile.
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        *,
        max_batch: int = 32,
        opt_batch: int | None = None,
        precision: str = "fp16",
        cache_dir: str | os.PathLike | None = None,
        device_index: int = 0,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
    ):
        from export.cache import sha256_bytes
        from export.contract import inspect_onnx

        self.profile = BatchProfile.create(max_batch, opt_batch)  # validate options before touching the GPU
        self.info = inspect_onnx(onnx_path)
        if not self.info.is_drtn_export:
            raise ValueError(
                f"{onnx_path}: not a DRTN export (metadata lacks params=denormalized); re-export with `main.py export`"
            )
        if self.info.fixed_batch is not None and self.profile.max_batch > self.info.fixed_batch:
            raise ValueError(
                f"{onnx_path}: fixed batch {self.info.fixed_batch} cannot serve --max-batch {self.profile.max_batch}"
            )
        trt = import_tensorrt()
        torch = require_cuda_torch(device_index)
        self.onnx_path = Path(onnx_path)
        self.device = torch.device("cuda", device_index)
        device_name = torch.cuda.get_device_name(self.device)
        self._onnx_bytes = engine_onnx_bytes(onnx_path, precision)
        self.key = EngineKey(
            onnx_sha256=sha256_bytes(self._onnx_bytes),
            tensorrt_version=str(trt.__version__),
            compute_capability=torch.cuda.get_device_capability(self.device),
            precision=precision,
            opt_batch=self.profile.opt_batch,
            max_batch=self.profile.max_batch,
        )
        self.cache = EngineCache(cache_dir)
        with torch.cuda.device(self.device):  # TensorRT builds and runs on the current CUDA device
            self._runtime = trt.Runtime(_logger(trt))
            engine = self._deserialize(self.cache.load(self.key))
            if engine is None:
                engine = self._deserialize(self._build_and_store(device_name, workspace_mb))
                if engine is None:
                    raise RuntimeError(f"TensorRT could not deserialize the engine it just built for {self.onnx_path}")
            self._engine = engine
            self._onnx_bytes = None  # only needed to build
            self._bind(torch, trt)
        LOGGER.info(
            "TensorRT %s engine ready on %s (batch %d..%d, opt %d)",
            precision,
            device_name,
            1,
            self.profile.max_batch,
            self.profile.opt_batch,
        )

    # ---- engine
    def _deserialize(self, engine_bytes: bytes | None):
        if engine_bytes is None:
            return None
        engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:  # another TensorRT / GPU slipped through, or bytes TensorRT rejects
            self.cache.invalidate(self.key, f"TensorRT {self.key.tensorrt_version} could not deserialize it")
        return engine

    def _build_and_store(self, device_name: str, workspace_mb: int) -> bytes:
        version, capability = self.key.tensorrt_version, self.key.compute_capability
        timing = self.cache.load_timing_cache(version, capability)
        LOGGER.info(
            "building TensorRT %s engine for %s on %s (%s); this takes a minute or more",
            self.key.precision,
            self.onnx_path.name,
            device_name,
            self.key.environment,
        )
        start = time.perf_counter()
        source = f"{self.onnx_path} ({self.key.precision})"
        try:
            engine, timing = build_engine(
                self._onnx_bytes, self.profile, source=source, timing_cache=timing, workspace_mb=workspace_mb
            )
        except RuntimeError:
            if timing is None:
                raise
            # a damaged timing cache must not block the build: drop it and try once without
            self.cache.discard_timing_cache(version, capability, "engine build failed while using it")
            engine, timing = build_engine(self._onnx_bytes, self.profile, source=source, workspace_mb=workspace_mb)
        seconds = time.perf_counter() - start
        path = self.cache.store(self.key, engine, build_seconds=seconds, device_name=device_name)
        self.cache.store_timing_cache(version, capability, timing)
        LOGGER.info("built TensorRT engine in %.1f s: %s (%.1f MB)", seconds, path, len(engine) / 1e6)
        return engine

    def _bind(self, torch, trt) -> None:
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeError(
                f"TensorRT engine for {self.onnx_path}: expected one input and one output, got {inputs} / {outputs}"
            )
        self._input_name, self._output_name = inputs[0], outputs[0]
        for name in (self._input_name, self._output_name):  # the contract keeps I/O in FP32, also for FP16 engines
            if engine.get_tensor_dtype(name) != trt.float32:
                raise RuntimeError(
                    f"TensorRT engine for {self.onnx_path}: tensor {name!r} is {engine.get_tensor_dtype(name)}, expected float32"
                )
        engine_max = tuple(engine.get_tensor_profile_shape(self._input_name, 0)[2])[0]
        if engine_max != self.profile.max_batch:  # cannot happen for a valid key; guards hand-copied entries
            raise RuntimeError(
                f"TensorRT engine profile max batch {engine_max} != requested {self.profile.max_batch}; clear {self.cache.entry_dir(self.key)}"
            )
        size, batch = self.crop_size, self.profile.max_batch
        self._torch = torch
        self._stream = torch.cuda.Stream(self.device)
        self._device_input = torch.empty((batch, 3, size, size), dtype=torch.float32, device=self.device)
        self._device_output = torch.empty((batch, 62), dtype=torch.float32, device=self.device)
        # page-locked host buffers: asynchronous copies, no staging
        self._host_input = torch.empty((batch, 3, size, size), dtype=torch.float32, pin_memory=True)
        self._host_output = torch.empty((batch, 62), dtype=torch.float32, pin_memory=True)
        self._context = engine.create_execution_context()
        self._context.set_tensor_address(self._input_name, self._device_input.data_ptr())
        self._context.set_tensor_address(self._output_name, self._device_output.data_ptr())

    # ---- Backend
    @property
    def crop_size(self) -> int:
        return self.info.crop_size

    @property
    def max_batch(self) -> int:
        return self.profile.max_batch

    def _run(self, images: np.ndarray) -> np.ndarray:
        count = len(images)
        self.profile.check_batch(count)
        torch = self._torch
        if self._context is None:
            raise RuntimeError("TensorRT backend is closed")
        self._host_input.numpy()[:count] = images
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            self._device_input[:count].copy_(self._host_input[:count], non_blocking=True)
            self._context.set_input_shape(self._input_name, (count, 3, self.crop_size, self.crop_size))
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed for a batch of {count}")
            self._host_output[:count].copy_(self._device_output[:count], non_blocking=True)
        self._stream.synchronize()
        return self._host_output.numpy()[:count].copy()

    def close(self) -> None:
        self._context = None
        self._engine = None
