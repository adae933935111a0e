"""Backend benchmark: table layout, the teacher as reference, skipped backends with their reason."""

from __future__ import annotations

import pytest

from export.bench import BenchCell, BenchReport, ModelSource, run_backend_bench


def test_bench_runs_backends_with_teacher_reference(exported, assets_dir, no_tensorrt):
    _, path = exported
    report = run_backend_bench(
        ["onnxruntime", "tensorrt"],
        [1],
        [1, 3],
        source=ModelSource(onnx_path=path, assets=assets_dir),
        min_seconds=0.0,
        min_samples=2,
        warmup=1,
    )
    assert {(c.backend, c.batch) for c in report.cells} == {
        ("teacher", 1),
        ("teacher", 3),
        ("onnxruntime", 1),
        ("onnxruntime", 3),
    }
    assert report.cells[0].backend == "teacher"  # the reference row first
    assert "pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12" in report.skipped["tensorrt"]
    for cell in report.cells:
        assert cell.samples >= 2 and 0 < cell.per_face_median_ms <= cell.per_face_p90_ms
        assert cell.faces_per_second == pytest.approx(cell.batch / (cell.per_face_median_ms * cell.batch / 1e3), rel=1e-6)
    table = report.markdown()
    assert "| backend | threads | batch | per-face median (ms) | per-face p90 (ms) | faces/s | vs teacher |" in table
    assert "| teacher | 1 | 3 |" in table and "reference" in table
    assert f"ONNX `{path}`" in table and "Skipped tensorrt:" in table


def test_torch_needs_a_checkpoint_not_an_onnx_file(exported, assets_dir):
    _, path = exported
    report = run_backend_bench(
        ["torch"], [1], [1], source=ModelSource(onnx_path=path, assets=assets_dir), min_seconds=0.0, min_samples=1, warmup=0
    )
    assert "the torch backend needs a checkpoint" in report.skipped["torch"]
    assert {c.backend for c in report.cells} == {"teacher"}


@pytest.mark.parametrize(
    "kinds, threads, batches, message",
    [
        (["onnx"], [1], [1], "--backends: unknown backend 'onnx'"),
        (["onnxruntime"], [0], [1], "--threads: expected positive integers"),
        (["onnxruntime"], [1], [], "--batches: expected positive integers"),
    ],
)
def test_bench_rejects_bad_options(kinds, threads, batches, message):
    with pytest.raises(ValueError, match=message):
        run_backend_bench(kinds, threads, batches)


def test_ratio_column():
    cells = [
        BenchCell("teacher", 2, 8, 2.0, 2.5, 500, 10),
        BenchCell("onnxruntime", 2, 8, 1.0, 1.2, 1000, 10),
        BenchCell("torch", 2, 8, 4.0, 5.0, 250, 10),
    ]
    table = BenchReport(cells, {}, "m", "x", 1.0).markdown()
    assert "| onnxruntime | 2 | 8 | 1.000 | 1.200 | 1000 | 2.00x faster |" in table
    assert "| torch | 2 | 8 | 4.000 | 5.000 | 250 | 2.00x slower |" in table
