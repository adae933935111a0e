"""Output path checks and atomic writes for the real-time commands: they live in :mod:`drtn.outputs` (so that
``export`` and ``training`` check their outputs the same way); this module re-exports them under their old names."""

from __future__ import annotations

from drtn.outputs import (
    IMAGE_SUFFIXES,
    MIN_FREE_BYTES,
    RECORDS_SUFFIXES,
    VIDEO_SUFFIXES,
    Output,
    OutputPathError,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_output_paths,
    partial_path,
    replace_into_place,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "MIN_FREE_BYTES",
    "RECORDS_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Output",
    "OutputPathError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_paths",
    "partial_path",
    "replace_into_place",
]
