"""drtn.outputs: the one atomic-write helper (used by checkpoint saves, asset fetches, the mesh cache and the export
cache) and the output-path checks of folder outputs (``train --out``, ``eval --out``)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from drtn.outputs import Output, OutputPathError, atomic_write, atomic_write_bytes, atomic_write_text, check_output_paths


def test_atomic_write_replaces_whole_file_with_normal_mode(tmp_path):
    target = tmp_path / "sub" / "file.bin"  # the parent folder is created
    atomic_write_bytes(target, b"old")
    with atomic_write(target) as file:
        assert os.path.dirname(file.name) == str(target.parent)  # temporary file in the same folder
        assert os.path.basename(file.name).startswith(".file.bin.") and file.name.endswith(".tmp")
        file.write(b"new")
        assert target.read_bytes() == b"old"  # untouched until the block ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt()])
def test_atomic_write_error_keeps_old_file_and_removes_temporary(tmp_path, error):
    target = tmp_path / "file.txt"
    atomic_write_text(target, "old")
    with pytest.raises(type(error)):
        with atomic_write(target, temp_suffix=".part") as file:
            file.write(b"half")
            raise error
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_atomic_write_calls_fsync_only_when_asked(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    atomic_write_bytes(tmp_path / "a", b"x")
    assert len(calls) == 1
    atomic_write_bytes(tmp_path / "b", b"x", fsync=False)
    assert len(calls) == 1


def test_numpy_savez_through_atomic_write_keeps_the_name(tmp_path):
    """np.savez appends .npz to a path, not to a file object: the cache file keeps its exact name."""
    target = tmp_path / "mesh-abc.npz"
    with atomic_write(target, temp_suffix=".npz", fsync=False) as file:
        np.savez(file, a=np.arange(3))
    with np.load(target) as stored:
        assert stored["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["mesh-abc.npz"]


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "make,out,pattern",
    [
        ("file", "x", r"--out .*x: is a file; give a folder"),
        ("file", "x/run", r"x is a file, not a folder"),
        ("input", "ckpt.pt", r"--out .*ckpt\.pt: is the input"),
    ],
)
def test_folder_output_refusals(tmp_path, make, out, pattern):
    (tmp_path / "x").write_text("a file")
    (tmp_path / "ckpt.pt").write_bytes(b"weights")
    before = _tree(tmp_path)
    with pytest.raises(OutputPathError, match=pattern):
        check_output_paths([Output(tmp_path / out, "--out", folder=True)], [tmp_path / "ckpt.pt"])
    assert _tree(tmp_path) == before


def test_folder_output_may_exist_or_be_new(tmp_path):
    (tmp_path / "run").mkdir()
    check_output_paths(
        [Output(tmp_path / "run", "--out", folder=True), Output(tmp_path / "new" / "deep", "--work", folder=True)]
    )
    assert _tree(tmp_path) == ["run"]  # nothing created


def test_file_inside_folder_output_is_checked_against_inputs(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "report.md").write_text("not a checkpoint, but the user named it as one")
    with pytest.raises(OutputPathError, match=r"report\.md: is the input"):
        check_output_paths(
            [Output(tmp_path / "eval", "--out", folder=True), Output(tmp_path / "eval" / "report.md", "--out", (".md",))],
            [tmp_path / "eval" / "report.md"],
        )
