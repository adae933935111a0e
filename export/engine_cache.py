"""On-disk cache of TensorRT engines and timing caches, and the batch optimisation profile. Pure Python.

Nothing here imports TensorRT, so the key, profile, staleness and atomic-write logic is tested on any machine;
:mod:`export.backends.tensorrt_backend` plugs the real builder in.

Layout under ``<cache>/tensorrt`` (``<cache>`` = :func:`export.cache.user_cache_dir`)::

    engines/<onnx sha[:12]>-<precision>-b<opt>-<max>-trt<version>-sm<cc>-<digest>/engine.plan
                                                                                  /engine.json   (metadata)
    timing/trt<version>-sm<cc>.cache                                              (shared by all models)

An engine is only valid for the exact ONNX graph TensorRT parsed, TensorRT version, GPU compute capability, precision and batch
profile it was built for: all of them form the :class:`EngineKey`. ``engine.json`` is written after
``engine.plan`` (both atomically), records the key and the engine's SHA-256, and is checked on every load: a
missing, truncated, corrupt or mismatched entry is deleted and rebuilt, never used.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from export.cache import atomic_write_bytes, atomic_write_text, sha256_bytes, user_cache_dir

LOGGER = logging.getLogger(__name__)

ENGINE_FILE = "engine.plan"
METADATA_FILE = "engine.json"
METADATA_FORMAT = 1
PRECISIONS = ("fp16", "fp32")
MAX_PROFILE_BATCH = 4096  # the ONNX export's dynamic batch bound


# ---------------------------------------------------------------------------------------------- profile
@dataclass(frozen=True)
class BatchProfile:
    """TensorRT optimisation profile over the batch axis: kernels are tuned for ``opt_batch``, any batch in
    ``[min_batch, max_batch]`` runs, a larger one is refused.
    """

    min_batch: int
    opt_batch: int
    max_batch: int

    def __post_init__(self) -> None:
        for name in ("min_batch", "opt_batch", "max_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"batch profile: {name} must be an integer, got {value!r}")
        if self.max_batch < 1:
            raise ValueError(f"batch profile: --max-batch must be >= 1, got {self.max_batch}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"batch profile: expected 1 <= min <= opt <= max, got min={self.min_batch} opt={self.opt_batch} "
                f"max={self.max_batch} (check --max-batch / --opt-batch)"
            )
        if self.max_batch > MAX_PROFILE_BATCH:
            raise ValueError(
                f"batch profile: --max-batch {self.max_batch} exceeds the exported graph's limit {MAX_PROFILE_BATCH}"
            )

    @staticmethod
    def create(max_batch: int, opt_batch: int | None = None) -> "BatchProfile":
        """Profile 1..``max_batch``; ``opt_batch`` defaults to ``min(4, max_batch)`` (a few tracked faces)."""
        if opt_batch is None and isinstance(max_batch, int):
            opt_batch = max(1, min(4, max_batch))
        return BatchProfile(1, opt_batch, max_batch)

    def check_batch(self, batch: int) -> None:
        """Raise ``ValueError`` (naming ``--max-batch``) for a batch the engine cannot run."""
        if batch > self.max_batch:
            raise ValueError(
                f"batch of {batch} crops exceeds the TensorRT engine's profile max {self.max_batch} "
                f"(rebuild with --max-batch {batch} or more, or split the batch)"
            )
        if batch < self.min_batch:
            raise ValueError(f"batch of {batch} crops is below the TensorRT engine's profile min {self.min_batch}")

    def shapes(self, crop_size: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes for ``IOptimizationProfile.set_shape``."""
        return tuple((batch, 3, crop_size, crop_size) for batch in (self.min_batch, self.opt_batch, self.max_batch))


# ---------------------------------------------------------------------------------------------- key
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Two different keys never share a cache entry."""

    onnx_sha256: str
    tensorrt_version: str
    compute_capability: tuple[int, int]
    precision: str
    opt_batch: int
    max_batch: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "compute_capability", tuple(int(v) for v in self.compute_capability))
        if not _SHA256.match(self.onnx_sha256):
            raise ValueError(f"engine key: onnx_sha256 must be 64 lowercase hex digits, got {self.onnx_sha256!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"engine key: precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.compute_capability) != 2:
            raise ValueError(f"engine key: compute_capability must be (major, minor), got {self.compute_capability}")
        if not re.match(r"^[0-9A-Za-z.+_-]+$", self.tensorrt_version):
            raise ValueError(f"engine key: unexpected TensorRT version string {self.tensorrt_version!r}")
        BatchProfile(1, self.opt_batch, self.max_batch)  # validates the batches

    @property
    def profile(self) -> BatchProfile:
        return BatchProfile(1, self.opt_batch, self.max_batch)

    @property
    def environment(self) -> str:
        """The build environment in words, for log messages."""
        major, minor = self.compute_capability
        return f"TensorRT {self.tensorrt_version} on compute capability {major}.{minor}"

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["compute_capability"] = list(self.compute_capability)
        return values

    @staticmethod
    def from_dict(values: dict) -> "EngineKey":
        known = {f.name for f in dataclasses.fields(EngineKey)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"engine key: unknown keys {sorted(unknown)}")
        return EngineKey(**values)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the key."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def entry_name(self) -> str:
        """Readable, unique folder name of the cache entry."""
        major, minor = self.compute_capability
        return (
            f"{self.onnx_sha256[:12]}-{self.precision}-b{self.opt_batch}-{self.max_batch}-"
            f"trt{self.tensorrt_version}-sm{major}{minor}-{self.digest()[:8]}"
        )

    def same_model(self, other: "EngineKey") -> bool:
        """Same ONNX file, precision and profile (possibly another TensorRT version or GPU)."""
        return (self.onnx_sha256, self.precision, self.opt_batch, self.max_batch) == (
            other.onnx_sha256,
            other.precision,
            other.opt_batch,
            other.max_batch,
        )


# ---------------------------------------------------------------------------------------------- cache
class EntryState(enum.Enum):
    VALID = "valid"
    MISSING = "missing"
    CORRUPT = "corrupt"  # unreadable metadata, missing / truncated / altered engine file
    STALE = "stale"  # metadata for another key (another TensorRT, GPU, model or profile)


@dataclass(frozen=True)
class EntryCheck:
    state: EntryState
    reason: str = ""
    engine: bytes | None = None  # the verified engine bytes when VALID


class EngineCache:
    """Engine + timing cache folder (default ``<user cache>/tensorrt``)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else user_cache_dir("tensorrt")

    def entry_dir(self, key: EngineKey) -> Path:
        return self.root / "engines" / key.entry_name()

    # ---- reading
    def check(self, key: EngineKey) -> EntryCheck:
        """Inspect the entry of ``key`` without changing anything."""
        folder = self.entry_dir(key)
        engine_path, metadata_path = folder / ENGINE_FILE, folder / METADATA_FILE
        if not metadata_path.is_file():
            if engine_path.is_file():  # metadata is written last: an engine alone is an interrupted store
                return EntryCheck(EntryState.CORRUPT, f"{metadata_path} is missing (interrupted write)")
            return EntryCheck(EntryState.MISSING, f"no engine cached at {folder}")
        try:
            metadata = json.loads(metadata_path.read_text())
            stored_key = EngineKey.from_dict(metadata["key"])
            expected_sha, expected_size = metadata["engine_sha256"], int(metadata["engine_bytes"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            return EntryCheck(EntryState.CORRUPT, f"{metadata_path} is unreadable: {error}")
        if stored_key != key:
            return EntryCheck(EntryState.STALE, f"{folder} holds an engine for {_describe_difference(stored_key, key)}")
        if not engine_path.is_file():
            return EntryCheck(EntryState.CORRUPT, f"{engine_path} is missing")
        engine = engine_path.read_bytes()
        if len(engine) != expected_size:
            return EntryCheck(
                EntryState.CORRUPT, f"{engine_path} has {len(engine)} bytes, metadata says {expected_size} (truncated?)"
            )
        if sha256_bytes(engine) != expected_sha:
            return EntryCheck(EntryState.CORRUPT, f"{engine_path} does not match its recorded SHA-256")
        return EntryCheck(EntryState.VALID, "", engine)

    def load(self, key: EngineKey) -> bytes | None:
        """The cached engine for ``key``, or ``None``; a corrupt or stale entry is deleted (and logged)."""
        result = self.check(key)
        if result.state is EntryState.VALID:
            LOGGER.info("using cached TensorRT engine %s", self.entry_dir(key))
            return result.engine
        if result.state is EntryState.MISSING:
            for other in self.entries_for_same_model(key):
                LOGGER.info(
                    "cached engine for this model was built for %s; this machine has %s: building a new one",
                    other.environment,
                    key.environment,
                )
            return None
        self.invalidate(key, result.reason)
        return None

    def entries_for_same_model(self, key: EngineKey) -> list[EngineKey]:
        """Keys of other valid-looking entries for the same model / precision / profile (another GPU or version)."""
        found = []
        for metadata_path in sorted((self.root / "engines").glob(f"{key.onnx_sha256[:12]}-*/{METADATA_FILE}")):
            try:
                other = EngineKey.from_dict(json.loads(metadata_path.read_text())["key"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if other != key and key.same_model(other):
                found.append(other)
        return found

    # ---- writing
    def store(self, key: EngineKey, engine: bytes, *, build_seconds: float = 0.0, device_name: str = "") -> Path:
        """Write the engine, then its metadata, each atomically. Returns the engine path."""
        if not engine:
            raise ValueError("refusing to cache an empty engine")
        folder = self.entry_dir(key)
        engine_path = atomic_write_bytes(folder / ENGINE_FILE, engine)
        metadata = {
            "format": METADATA_FORMAT,
            "key": key.to_dict(),
            "engine_sha256": sha256_bytes(engine),
            "engine_bytes": len(engine),
            "build_seconds": round(build_seconds, 3),
            "device_name": device_name,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_text(folder / METADATA_FILE, json.dumps(metadata, indent=2, sort_keys=True))
        return engine_path

    def invalidate(self, key: EngineKey, reason: str) -> None:
        """Delete the entry of ``key`` (logged with ``reason``); it will be rebuilt."""
        folder = self.entry_dir(key)
        LOGGER.warning("discarding cached TensorRT engine (%s); it will be rebuilt", reason)
        shutil.rmtree(folder, ignore_errors=True)

    # ---- timing cache (tactic timings; shareable between models on the same GPU + TensorRT)
    def timing_cache_path(self, tensorrt_version: str, compute_capability: tuple[int, int]) -> Path:
        major, minor = compute_capability
        return self.root / "timing" / f"trt{tensorrt_version}-sm{major}{minor}.cache"

    def load_timing_cache(self, tensorrt_version: str, compute_capability: tuple[int, int]) -> bytes | None:
        path = self.timing_cache_path(tensorrt_version, compute_capability)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return data or None

    def store_timing_cache(self, tensorrt_version: str, compute_capability: tuple[int, int], data: bytes) -> Path | None:
        if not data:
            return None
        return atomic_write_bytes(self.timing_cache_path(tensorrt_version, compute_capability), data)

    def discard_timing_cache(self, tensorrt_version: str, compute_capability: tuple[int, int], reason: str) -> None:
        LOGGER.warning("discarding TensorRT timing cache (%s)", reason)
        self.timing_cache_path(tensorrt_version, compute_capability).unlink(missing_ok=True)


def _describe_difference(stored: EngineKey, wanted: EngineKey) -> str:
    differences = []
    for name in ("onnx_sha256", "tensorrt_version", "compute_capability", "precision", "opt_batch", "max_batch"):
        a, b = getattr(stored, name), getattr(wanted, name)
        if a != b:
            differences.append(f"{name} {a} (wanted {b})")
    return ", ".join(differences) or "an identical key"
