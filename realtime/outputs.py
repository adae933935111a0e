"""Output paths checked before anything is opened, and files written under a temporary name.

Every command that writes files calls :func:`check_output_paths` first, with all its outputs and inputs, so
a mistake is refused with one line naming the path before any file is created or truncated:

- an output that is one of the inputs (``video X.mp4 -o X.mp4``, ``--records X.mp4``), including through a
  symlink or hard link;
- one file given for two outputs (``-o a.mp4 --records a.mp4``);
- a name whose extension the output cannot have (``demo -o x.txt``), or an existing folder;
- a path through a regular file (``-o notes.txt/out.mp4``), or a folder that cannot be written
  (checked by creating and removing a probe file there, so read-only mounts and permissions are caught
  alike, also for root);
- less than ``min_free_bytes`` free on the output's file system.

Outputs are then written to :func:`partial_path` (``out.mp4`` -> ``out.partial.mp4``) and moved into place
with :func:`os.replace` when complete, so an existing file of that name stays intact until the new one is
whole, and a killed job leaves ``*.partial.*`` beside it (see ``realtime.video``).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

MIN_FREE_BYTES = 64 * 1024 * 1024  # refuse to start a job with less free space than this on an output's disk

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
RECORDS_SUFFIXES = (".jsonl", ".ndjson", ".json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class OutputPathError(ValueError):
    """An output path that would destroy a file or cannot be written; the message names the path."""


@dataclass(frozen=True)
class Output:
    """One file a command will write.

    Attributes:
        path: where it goes.
        role: how the user named it, for messages (``"-o"``, ``"--records"``).
        suffixes: allowed extensions (lower case, with the dot); empty = any.
    """

    path: Path
    role: str
    suffixes: tuple[str, ...] = ()


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
    outputs: list[Output], inputs: list[str | os.PathLike] = (), min_free_bytes: int = MIN_FREE_BYTES
) -> None:
    """Refuse outputs that would destroy a file or cannot be written; touches no file (a probe file is created
    and removed in each output's nearest existing folder).

    Args:
        outputs: every file the command will write (including derived ones, e.g. the demo's JSON).
        inputs: files and folders the command reads.
        min_free_bytes: least free space wanted on each output's file system.
    Raises:
        OutputPathError: one line naming the path and the problem.
    """
    inputs = [Path(p) for p in inputs if p is not None and str(p) != ""]
    seen: list[Output] = []
    for output in outputs:
        path = Path(output.path)
        if str(output.path) == "" or path.name in ("", ".", ".."):
            raise OutputPathError(f"{output.role}: {str(output.path)!r} is not a file name")
        for candidate in (path, partial_path(path)):
            for source in inputs:
                if not source.is_dir() and _same_file(candidate, source):
                    raise OutputPathError(
                        f"{output.role} {path}: is the input {source}; it would be destroyed (choose another name)"
                    )
        for other in seen:
            if (
                _same_file(path, other.path)
                or _same_file(partial_path(path), other.path)
                or _same_file(path, partial_path(other.path))
            ):
                raise OutputPathError(
                    f"{output.role} {path} and {other.role} {other.path} are the same file; give each output its own name"
                )
        seen.append(Output(path, output.role, output.suffixes))
    for output in seen:  # then each on its own (collisions first: they are the mistakes that destroy files)
        path = output.path
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
