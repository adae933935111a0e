"""`main.py export | bench`: real runs and one-line errors."""

from __future__ import annotations

import pytest

from main import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, network):
    from drtn.model import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "drtn_rt.pt", network)


def test_export_writes_checked_onnx(tmp_path, checkpoint, assets_dir, capsys):
    output = tmp_path / "out.onnx"
    assert main(["--assets", str(assets_dir), "export", "--checkpoint", str(checkpoint), "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {output}" in printed and "ORT vs torch on real" in printed and "68-landmark px" in printed
    assert "FP16 estimate" in printed
    from export.cache import sha256_file
    from export.onnx_export import inspect_onnx

    assert inspect_onnx(output).metadata["source_checkpoint_sha256"] == sha256_file(checkpoint)


def test_export_tensorrt_without_tensorrt_fails_fast(tmp_path, checkpoint, assets_dir, capsys, no_tensorrt):
    output = tmp_path / "out.onnx"
    code = main(["--assets", str(assets_dir), "export", "--checkpoint", str(checkpoint), "-o", str(output), "--tensorrt"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert "pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12" in error and "NVIDIA GPU" in error
    assert not output.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "--checkpoint", "{tmp}/missing.pt"], "error: checkpoint not found: {tmp}/missing.pt"),
        (["export", "--tensorrt", "--max-batch", "0"], "error: batch profile: --max-batch must be >= 1, got 0"),
        (["bench", "--model", "{tmp}/missing.onnx"], "error: ONNX model not found: {tmp}/missing.onnx"),
        (["bench", "--model", "{tmp}/missing.pt"], "error: checkpoint not found: {tmp}/missing.pt"),
        (["bench", "--model", "{tmp}/x.onnx", "--untrained", "drtn_rt"], "error: --model and --untrained"),
    ],
)
def test_one_line_errors(tmp_path, assets_dir, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["--assets", str(assets_dir), *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith(message.replace("{tmp}", str(tmp_path))) and error.count("\n") == 1


def test_bench_truncated_model_is_named(tmp_path, exported, assets_dir, capsys):
    _, good = exported
    bad = tmp_path / "half.onnx"
    bad.write_bytes(good.read_bytes()[:5000])
    assert main(["--assets", str(assets_dir), "bench", "--model", str(bad)]) == 2
    assert f"error: {bad}: not a readable ONNX model (truncated or corrupt?)" in capsys.readouterr().err


def test_bench_bad_list_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--threads", "0,2"])
    assert exit_info.value.code == 2 and "expected positive integers" in capsys.readouterr().err


def test_bench_prints_and_writes_table(tmp_path, exported, assets_dir, capsys):
    _, path = exported
    table_file = tmp_path / "bench.md"
    argv = [
        "--assets",
        str(assets_dir),
        "bench",
        "--model",
        str(path),
        "--backends",
        "onnxruntime",
        "--threads",
        "1",
        "--batches",
        "2",
        "--seconds",
        "0",
        "-o",
        str(table_file),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| onnxruntime | 1 | 2 |" in printed and "| teacher | 1 | 2 |" in printed
    assert table_file.read_text().strip() == printed.strip()


def test_bench_pipeline_delegates_to_realtime_bench(monkeypatch):
    import sys
    import types

    received = []
    fake = types.ModuleType("realtime.bench")
    fake.run_pipeline_bench = lambda args: received.append(args) or 0
    monkeypatch.setitem(sys.modules, "realtime.bench", fake)
    assert main(["bench", "--pipeline", "--frames", "5", "--source", "clip.mp4", "--no-smoothing"]) == 0
    (args,) = received
    assert (args.frames, args.source, args.no_smoothing, args.backends[0], max(args.threads)) == (
        5,
        "clip.mp4",
        True,
        "onnxruntime",
        2,
    )


def test_bench_pipeline_is_handed_to_realtime(capsys):
    """export does not import realtime: main.py's parser carries realtime's handler; export alone says what is missing."""
    import argparse

    from export import cli as export_cli
    from main import build_parser
    from realtime.cli import run_pipeline_bench_command

    args = build_parser().parse_args(["bench", "--pipeline"])
    assert args.pipeline_handler is run_pipeline_bench_command
    parser = argparse.ArgumentParser()
    export_cli.register(parser.add_subparsers(dest="command"))
    alone = parser.parse_args(["bench", "--pipeline"])
    with pytest.raises(RuntimeError, match="realtime package's CLI"):
        alone.handler(alone)
