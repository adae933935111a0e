"""Per-user cache folder, content hashes and atomic file writes shared by the export package.

The cache lives in ``$DRTN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/drtn`` (``~/.cache/drtn``). Every file in
it is written to a temporary file in the same folder and moved into place with :func:`os.replace`, so a reader
sees either the old complete file or the new complete file, never a half-written one.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

CACHE_ENV_VAR = "DRTN_CACHE_DIR"


def user_cache_dir(subfolder: str | None = None) -> Path:
    """``$DRTN_CACHE_DIR`` or ``$XDG_CACHE_HOME/drtn`` (default ``~/.cache/drtn``), optionally a subfolder of it."""
    root = os.environ.get(CACHE_ENV_VAR)
    if root:
        base = Path(root).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drtn"
    return base / subfolder if subfolder else base


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, :func:`os.replace`).

    Creates the parent folder. On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
