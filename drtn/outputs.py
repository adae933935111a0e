"""Output paths checked before anything is opened, and files written under a temporary name.

Every command that writes files (``video``, ``demo``, ``train``, ``eval``, ``export``, ``bench``) calls
:func:`check_output_paths` first, with all its outputs and inputs, so a mistake is refused with one line naming
the path before any long work starts and before any file is created or truncated:

- an output that is one of the inputs (``video X.mp4 -o X.mp4``, ``--records X.mp4``,
  ``export -o drtn/weights/drtn_rt.pt``), including through a symlink or hard link;
- one file given for two outputs (``-o a.mp4 --records a.mp4``);
- a name whose extension the output cannot have (``demo -o x.txt``), or an existing folder where a file goes
  (an existing file where a folder goes);
- a path through a regular file (``-o notes.txt/out.mp4``), or a folder that cannot be written
  (checked by creating and removing a probe file there, so read-only mounts and permissions are caught
  alike, also for root);
- less than ``min_free_bytes`` free on the output's file system.

Files are then written whole and moved into place: :func:`atomic_write` (a temporary file in the same folder,
fsync, :func:`os.replace`; removed on any error) for files written in one go (checkpoints, reports, tables,
caches, downloads), and :func:`partial_path` (``out.mp4`` -> ``out.partial.mp4``) for long streamed outputs that
should survive a killed job (see ``realtime.video``). Either way an existing file of that name stays intact until
the new one is whole.

Standard library only (``drtn`` is the bottom layer; ``export``, ``training`` and ``realtime`` all use it).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MIN_FREE_BYTES = 64 * 1024 * 1024  # refuse to start a job with less free space than this on an output's disk

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
RECORDS_SUFFIXES = (".jsonl", ".ndjson", ".json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
ONNX_SUFFIXES = (".onnx",)
TABLE_SUFFIXES = (".md", ".markdown", ".txt")
NPZ_SUFFIXES = (".npz",)


class OutputPathError(ValueError):
    """An output path that would destroy a file or cannot be written; the message names the path."""


@dataclass(frozen=True)
class Output:
    """One file a command will write.

    Attributes:
        path: where it goes.
        role: how the user named it, for messages (``"-o"``, ``"--records"``).
        suffixes: allowed extensions (lower case, with the dot); empty = any. Not used for a folder.
        folder: the output is a folder the command creates (if needed) and writes files into (``train --out``,
            ``eval --out``); it may exist already, as a folder.
    """

    path: Path
    role: str
    suffixes: tuple[str, ...] = ()
    folder: bool = False


def partial_path(path: str | os.PathLike) -> Path:
    """The temporary name an output is written under: ``out.mp4`` -> ``out.partial.mp4`` (same folder)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (resolved path, or the same inode when both exist)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _existing_ancestor(path: Path, role: str) -> Path:
    """The nearest existing parent of ``path``; raises if a component is a regular file."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{role} {path}: cannot be written, {parent} is a file, not a folder")
            return parent
    raise OutputPathError(f"{role} {path}: no existing folder above it")


def _probe_writable(folder: Path, path: Path, role: str) -> None:
    try:
        handle, probe = tempfile.mkstemp(prefix=".drtn-write-probe-", dir=folder)
    except OSError as error:
        reason = "no space left on the device" if error.errno == errno.ENOSPC else (error.strerror or str(error))
        raise OutputPathError(f"{role} {path}: cannot be written, folder {folder} is not writable ({reason})") from None
    os.close(handle)
    os.unlink(probe)


def check_output_paths(
    outputs: list[Output], inputs: list[str | os.PathLike | None] = (), min_free_bytes: int = MIN_FREE_BYTES
) -> None:
    """Refuse outputs that would destroy a file or cannot be written; touches no file (a probe file is created
    and removed in each output's nearest existing folder).

    Args:
        outputs: every file (and folder) the command will write, including derived ones (the demo's JSON,
            ``eval``'s ``report.md`` inside ``--out``).
        inputs: files and folders the command reads (``None`` and ``""`` are skipped).
        min_free_bytes: least free space wanted on each output's file system.
    Raises:
        OutputPathError: one line naming the path and the problem.
    """
    inputs = [Path(p) for p in inputs if p is not None and str(p) != ""]
    seen: list[Output] = []
    for output in outputs:
        path = Path(output.path)
        if str(output.path) == "" or (not output.folder and path.name in ("", ".", "..")):
            raise OutputPathError(f"{output.role}: {str(output.path)!r} is not a file name")
        for candidate in (path,) if output.folder else (path, partial_path(path)):
            for source in inputs:
                if not source.is_dir() and _same_file(candidate, source):
                    raise OutputPathError(
                        f"{output.role} {path}: is the input {source}; it would be destroyed (choose another name)"
                    )
        for other in seen:
            if (
                _same_file(path, other.path)
                or (not output.folder and _same_file(partial_path(path), other.path))
                or (not other.folder and _same_file(path, partial_path(other.path)))
            ):
                raise OutputPathError(
                    f"{output.role} {path} and {other.role} {other.path} are the same file; give each output its own name"
                )
        seen.append(Output(path, output.role, output.suffixes, output.folder))
    for output in seen:  # then each on its own (collisions first: they are the mistakes that destroy files)
        path = output.path
        if output.folder:
            if path.exists() and not path.is_dir():
                raise OutputPathError(f"{output.role} {path}: is a file; give a folder")
            folder = path if path.is_dir() else _existing_ancestor(path, output.role)
        else:
            if output.suffixes and path.suffix.lower() not in output.suffixes:
                raise OutputPathError(
                    f"{output.role} {path}: expected a {' / '.join(output.suffixes)} file name, got {path.suffix or 'no extension'!r}"
                )
            if path.is_dir():
                raise OutputPathError(f"{output.role} {path}: is a folder; give a file name")
            folder = _existing_ancestor(path, output.role)
            if path.exists() and not os.access(path, os.W_OK):
                raise OutputPathError(f"{output.role} {path}: exists and is read-only")
        _probe_writable(folder, path, output.role)
        free = shutil.disk_usage(folder).free
        if free < min_free_bytes:
            raise OutputPathError(
                f"{output.role} {path}: only {free / 2**20:.1f} MiB free on its disk ({folder}); need at least {min_free_bytes / 2**20:.0f} MiB"
            )


def replace_into_place(partial: Path, final: Path) -> Path:
    """Move the finished ``partial`` file to ``final`` atomically (creating nothing else); returns ``final``."""
    os.replace(partial, final)
    return final


def _default_file_mode() -> int:
    """``0o666`` less the process umask: the mode :func:`open` would give a new file (temporary files are 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()  # read once at import (os.umask is process-wide; reading it twice is not thread-safe)


@contextmanager
def atomic_write(path: str | os.PathLike, *, temp_suffix: str = ".tmp", fsync: bool = True) -> Iterator[BinaryIO]:
    """Write ``path`` whole or not at all: yields a binary file open on a temporary file in the same folder
    (``.<name>.<random><temp_suffix>``); when the block ends normally the file is flushed, fsynced (``fsync``) and
    moved onto ``path`` with :func:`os.replace`, with the mode a new file would get (umask); when it raises
    (anything, also ``KeyboardInterrupt``) the temporary file is removed, ``path`` is untouched and the error
    propagates unchanged. Creates the parent folders.

    The temporary file's path is the yielded file's ``name`` (e.g. to verify a download before it is installed).

    Example::

        with atomic_write(out / "report.md") as file:
            file.write(text.encode())
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=temp_suffix, dir=path.parent)
    os.close(handle)  # reopened by name, so that ``file.name`` is the temporary path
    try:
        with open(temporary, "wb") as file:
            yield file
            file.flush()
            if fsync:
                os.fsync(file.fileno())
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` with :func:`atomic_write`; returns ``path``."""
    with atomic_write(path, fsync=fsync) as file:
        file.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)
