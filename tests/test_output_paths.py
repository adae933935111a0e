"""The output-path table of `train`, `eval`, `export` and `bench` (issue 12, the part left open in session 3):
every output that is an input, a path through a regular file, in an unwritable folder, of the wrong kind or
extension is refused with one line naming the path and exit 2, before anything is loaded, and nothing is created
or changed (``video`` / ``demo``: tests/realtime/test_bad_input.py).

Each command runs with ``--assets`` pointing at a folder that does not exist and with checkpoints / models that
are a few bytes of text: were the output checked after any loading, the error would be about those instead.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "drtn" / "weights"


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` (files with their hash): 'nothing touched' means this does not change."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """The user's folder: a checkpoint, a model, a clip, a finished run, an earlier report, a regular file, a folder
    with an output's name. Relative defaults (``runs/``, ``<checkpoint>.onnx``) land here too."""
    (tmp_path / "ckpt.pt").write_bytes(b"the user's checkpoint")
    (tmp_path / "m.onnx").write_bytes(b"the user's model")
    (tmp_path / "X.mp4").write_bytes(b"the user's clip")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"a finished run")
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "report.md").write_text("an earlier report")
    (tmp_path / "notes.txt").write_text("a regular file")
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "folder.md").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


CASES = [
    # (id, argv after "main.py --assets <missing>", message pattern); {w} is the user's folder
    # ---- export -o
    (
        "export-onto-bundled-checkpoint",
        ["export", "-o", str(WEIGHTS / "drtn_rt.pt")],
        r"-o .*drtn_rt\.pt: is the input .*drtn_rt\.pt",
    ),
    ("export-onto-checkpoint", ["export", "--checkpoint", "{w}/ckpt.pt", "-o", "{w}/ckpt.pt"], r"-o .*ckpt\.pt: is the input"),
    (
        "export-wrong-extension",
        ["export", "--checkpoint", "{w}/ckpt.pt", "-o", "{w}/m.txt"],
        r"-o .*m\.txt: expected a \.onnx file name",
    ),
    (
        "export-through-a-file",
        ["export", "--checkpoint", "{w}/ckpt.pt", "-o", "{w}/notes.txt/m.onnx"],
        r"notes\.txt is a file, not a folder",
    ),
    (
        "export-unwritable",
        ["export", "--checkpoint", "{w}/ckpt.pt", "-o", "/proc/drtn-no-such/m.onnx"],
        r"-o /proc/drtn-no-such/m\.onnx: cannot be written, folder /proc is not writable",
    ),
    ("export-onto-a-folder", ["export", "--checkpoint", "{w}/ckpt.pt", "-o", "{w}/folder.onnx"], r"folder\.onnx: is a folder"),
    # ---- train --package / --pack / --out / --work
    (
        "package-onto-runs-last",
        ["train", "--out", "{w}/run", "--package", "{w}/run/last.pt"],
        r"--package .*run/last\.pt: is the input .*run/last\.pt",
    ),
    (
        "package-onto-average-with",
        ["train", "--out", "{w}/run", "--package", "{w}/ckpt.pt", "--average-with", "{w}/ckpt.pt"],
        r"--package .*ckpt\.pt: is the input",
    ),
    (
        "package-wrong-extension",
        ["train", "--out", "{w}/run", "--package", "{w}/shipped.onnx"],
        r"--package .*shipped\.onnx: expected a \.pt / \.pth / \.ckpt file name",
    ),
    (
        "package-through-a-file",
        ["train", "--out", "{w}/run", "--package", "{w}/notes.txt/p.pt"],
        r"notes\.txt is a file, not a folder",
    ),
    (
        "package-unwritable",
        ["train", "--out", "{w}/run", "--package", "/proc/drtn-no-such/p.pt"],
        r"--package /proc/drtn-no-such/p\.pt: cannot be written",
    ),
    (
        "train-out-is-a-file",
        ["train", "--work", "{w}/work", "--out", "{w}/notes.txt"],
        r"--out .*notes\.txt: is a file; give a folder",
    ),
    (
        "train-out-is-the-resume-checkpoint",
        ["train", "--work", "{w}/work", "--resume-from", "{w}/ckpt.pt", "--out", "{w}/ckpt.pt"],
        r"--out .*ckpt\.pt: is the input",
    ),
    (
        "train-out-through-a-file",
        ["train", "--work", "{w}/work", "--out", "{w}/notes.txt/run"],
        r"notes\.txt is a file, not a folder",
    ),
    (
        "train-out-unwritable",
        ["train", "--work", "{w}/work", "--out", "/proc/drtn-no-such/run"],
        r"--out /proc/drtn-no-such/run: cannot be written",
    ),
    (
        "train-work-through-a-file",
        ["train", "--work", "{w}/notes.txt/w", "--out", "{w}/new"],
        r"--work .*notes\.txt/w: cannot be written",
    ),
    (
        "train-existing-run-without-resume",
        ["train", "--work", "{w}/work", "--out", "{w}/run"],
        r"run/last\.pt exists: pass --resume",
    ),
    (
        "pack-wrong-extension",
        ["train", "--work", "{w}/work", "--pack", "{w}/corpus.zip"],
        r"--pack .*corpus\.zip: expected a \.npz file name",
    ),
    # ---- eval --out / --cache
    (
        "eval-out-is-the-checkpoint",
        ["eval", "--checkpoint", "{w}/ckpt.pt", "--out", "{w}/ckpt.pt"],
        r"--out .*ckpt\.pt: is the input",
    ),
    (
        "eval-report-over-the-checkpoint",
        ["eval", "--checkpoint", "{w}/ev/report.md", "--out", "{w}/ev"],
        r"--out .*ev/report\.md: is the input",
    ),
    (
        "eval-ced-over-the-baseline",
        ["eval", "--baseline", "{w}/ev/ced_val_afw.png", "--out", "{w}/ev"],
        r"--out .*ced_val_afw\.png: is the input",
    ),
    ("eval-out-through-a-file", ["eval", "--out", "{w}/notes.txt/ev"], r"notes\.txt is a file, not a folder"),
    ("eval-out-unwritable", ["eval", "--out", "/proc/drtn-no-such/ev"], r"--out /proc/drtn-no-such/ev: cannot be written"),
    (
        "eval-cache-is-a-file",
        ["eval", "--out", "{w}/ev", "--cache", "{w}/notes.txt"],
        r"--cache .*notes\.txt: is a file; give a folder",
    ),
    # ---- bench -o (every mode)
    ("bench-onto-the-model", ["bench", "--model", "{w}/m.onnx", "-o", "{w}/m.onnx"], r"-o .*m\.onnx: is the input"),
    (
        "bench-wrong-extension",
        ["bench", "-o", "{w}/table.csv"],
        r"-o .*table\.csv: expected a \.md / \.markdown / \.txt file name",
    ),
    ("bench-through-a-file", ["bench", "-o", "{w}/notes.txt/t.md"], r"notes\.txt is a file, not a folder"),
    ("bench-onto-a-folder", ["bench", "-o", "{w}/folder.md"], r"folder\.md: is a folder"),
    ("bench-unwritable", ["bench", "-o", "/proc/drtn-no-such/t.md"], r"-o /proc/drtn-no-such/t\.md: cannot be written"),
    (
        "bench-pipeline-onto-the-clip",
        ["bench", "--pipeline", "--source", "{w}/X.mp4", "-o", "{w}/X.mp4"],
        r"-o .*X\.mp4: is the input",
    ),
    (
        "bench-tracking-through-a-file",
        ["bench", "--tracking", "--tiny", "-o", "{w}/notes.txt/t.md"],
        r"notes\.txt is a file, not a folder",
    ),
    (
        "bench-soak-wrong-extension",
        ["bench", "--soak", "10", "--source", "{w}/X.mp4", "-o", "{w}/soak.json"],
        r"-o .*soak\.json: expected a \.md",
    ),
]


@pytest.mark.parametrize("argv,pattern", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_output_paths_are_refused_before_anything_loads(work, argv, pattern, capsys):
    import main

    before, weights_before = _tree(work), _tree(WEIGHTS)
    code = main.main(["--assets", str(work / "no-assets"), *[a.format(w=work) for a in argv]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err  # one line
    assert re.search(pattern, err), err
    assert _tree(work) == before  # nothing created, truncated or replaced (relative defaults would land here too)
    assert _tree(WEIGHTS) == weights_before
    assert not Path("/proc/drtn-no-such").exists()


def test_good_outputs_pass_the_checks_and_reach_the_loading(work, capsys):
    """The checks refuse only what they should: a good output name gets past them to the first load (here the
    missing asset folder or the fake checkpoint), still with one line and nothing written."""
    import main

    before = _tree(work)
    for argv, reached in [
        (["export", "--checkpoint", str(work / "ckpt.pt"), "-o", str(work / "new" / "m.onnx")], "no-assets"),
        (["train", "--out", str(work / "run"), "--package", str(work / "shipped.pt")], "run/last.pt"),
        (["eval", "--checkpoint", str(work / "ckpt.pt"), "--out", str(work / "ev")], "no-assets"),
    ]:
        code = main.main(["--assets", str(work / "no-assets"), *argv])
        err = capsys.readouterr().err
        assert code == 2 and reached in err, err
        assert "is the input" not in err and "cannot be written" not in err, err
    assert _tree(work) == before
