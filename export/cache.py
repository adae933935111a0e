"""Per-user cache folder, content hashes and atomic file writes shared by the export package.

The cache lives in ``$DRTN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/drtn`` (``~/.cache/drtn``). Every file in
it is written to a temporary file in the same folder, fsynced and moved into place with :func:`os.replace`
(:func:`drtn.outputs.atomic_write`, re-exported here as ``atomic_write_bytes`` / ``atomic_write_text``), so a
reader sees either the old complete file or the new complete file, never a half-written one.

A cached file that is run (an exported ONNX model) also gets a hash record beside it, ``<name>.sha256``, written
after the file (:func:`record_content_hash`). :func:`verify_content_hash` compares the file's SHA-256 with that
record before use: a file altered on disk (even into another valid model), a record missing after a crash, or a
file replaced without its record all count as a mismatch, and the caller rebuilds instead of running it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from drtn.assets import user_cache_root
from drtn.outputs import atomic_write_bytes, atomic_write_text  # noqa: F401 (one implementation, in drtn; re-exported)
from export.contract import sha256_file  # noqa: F401 (one implementation; re-exported for the cache's users)

HASH_RECORD_SUFFIX = ".sha256"

LOGGER = logging.getLogger(__name__)


def user_cache_dir(subfolder: str | None = None) -> Path:
    """``$DRTN_CACHE_DIR``, else the platform's cache folder + ``drtn`` (:func:`drtn.assets.user_cache_root`),
    optionally a subfolder of it."""
    base = user_cache_root()
    return base / subfolder if subfolder else base


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_record_path(path: str | os.PathLike) -> Path:
    """Where the content hash of a cached file is recorded: ``<path>.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + HASH_RECORD_SUFFIX)


def record_content_hash(path: str | os.PathLike, digest: str | None = None) -> str:
    """Record the SHA-256 of ``path`` (or ``digest``, the hash of the bytes just written) beside it, atomically.

    Call it right after writing the file; until then the file counts as unverified.
    Returns:
        the hex digest recorded.
    """
    path = Path(path)
    digest = digest or sha256_file(path)
    atomic_write_text(hash_record_path(path), f"{digest}  {path.name}\n")  # the sha256sum format
    return digest


def verify_content_hash(path: str | os.PathLike) -> str | None:
    """``None`` when ``path`` matches its recorded hash, else why not (for a log line); never raises for a
    missing or unreadable file or record."""
    path = Path(path)
    record = hash_record_path(path)
    try:
        recorded = record.read_text(encoding="utf-8").split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError):
        return f"has no readable hash record ({record.name})"
    try:
        actual = sha256_file(path)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if actual != recorded:
        return f"does not match its recorded content hash (recorded {recorded[:12]}, file {actual[:12]}): altered on disk"
    return None


def write_verified_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write_bytes` followed by :func:`record_content_hash` (see the module docstring)."""
    path = atomic_write_bytes(path, data)
    record_content_hash(path, sha256_bytes(data))
    return path
