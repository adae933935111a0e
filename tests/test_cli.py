"""The `drtn` command (main.py in a checkout): common options anywhere, checked choices, --model, -q, assets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from drtn_cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", ["video", "demo", "live", "train", "eval", "export", "bench", "assets"])
def test_common_options_before_or_after_the_subcommand(command):
    positional = ["x.mp4"] if command == "video" else []
    parser = build_parser()
    after = parser.parse_args([command, *positional, "--assets", "/a", "-q"])
    assert after.assets == "/a" and after.quiet and not after.verbose
    before = parser.parse_args(["--assets", "/b", "-v", command, *positional])
    assert before.assets == "/b" and before.verbose and not before.quiet
    both = parser.parse_args(["--assets", "/b", command, *positional, "--assets", "/c"])
    assert both.assets == "/c"  # the later one wins
    plain = parser.parse_args([command, *positional])
    assert plain.assets is None and not plain.verbose and not plain.quiet


def test_verbose_and_quiet_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["video", "x.mp4", "-v", "-q"])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_unknown_backend_is_refused_before_anything_opens(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["video", str(tmp_path / "missing.mp4"), "--backend", "tensorflow", "-o", str(tmp_path / "o.mp4")])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid choice: 'tensorflow'" in error
    assert not (tmp_path / "o.mp4").exists() and "video file not found" not in error


def test_backend_choices_are_the_factory_kinds():
    from export.backends import BACKEND_KINDS
    from realtime.arguments import BACKEND_CHOICES

    assert BACKEND_CHOICES == BACKEND_KINDS


@pytest.mark.parametrize("command", ["video", "demo", "live"])
@pytest.mark.parametrize("flag", ["--model", "--checkpoint"])
def test_model_option_on_pipeline_commands(command, flag):
    positional = ["x.mp4"] if command == "video" else []
    assert build_parser().parse_args([command, *positional, flag, "m.onnx"]).model == "m.onnx"
    assert build_parser().parse_args([command, *positional]).model is None


def test_video_runs_the_named_model_quietly(tmp_path, assets_dir, shared_dir, capsys):
    """--model names the ONNX to run; -q: one summary line on stdout, no progress bar or info logs on stderr."""
    from export.contract import bundled_onnx_path

    clip = shared_dir / "samples/video/obama.mp4"
    model = tmp_path / "renamed.onnx"
    model.write_bytes(bundled_onnx_path().read_bytes())
    output, records = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    code = main(["video", str(clip), "-o", str(output), "--records", str(records), "--max-frames", "3",
                 "--renderer", "cv", "--model", str(model), "--assets", str(assets_dir), "-q"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0 and len(records.read_text().splitlines()) == 3
    assert captured.out.count("\n") == 1 and captured.out.startswith("wrote 3 frames")
    assert "frame/s" not in captured.err and "INFO" not in captured.err
    missing = main(["video", str(clip), "-o", str(output), "--model", str(tmp_path / "nope.onnx"), "--assets", str(assets_dir)])
    assert missing == 2 and f"ONNX model not found: {tmp_path / 'nope.onnx'}" in capsys.readouterr().err
    import threading

    assert not any(t.name == "drtn-decode" and t.is_alive() for t in threading.enumerate())  # the decoder stopped


def test_video_pipeline_imports_no_torch_nor_onnx(tmp_path, assets_dir, shared_dir):
    """The headless inference path (drtn video on ONNX Runtime) runs on the base install: no torch, no onnx."""
    code = (
        "import sys, drtn_cli; "
        "code = drtn_cli.main(sys.argv[1:]); "
        "print(json.dumps({'code': code, 'loaded': sorted(m for m in ('torch', 'onnx', 'scipy', 'matplotlib', 'mediapipe') if m in sys.modules)}))"
    )
    argv = [
        "video",
        str(shared_dir / "samples/video/obama.mp4"),
        "-o",
        str(tmp_path / "o.mp4"),
        "--max-frames",
        "2",
        "--assets",
        str(Path(assets_dir).resolve()),
        "-q",
    ]  # fmt: skip  (default renderer: the GL overlay)
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])  # stderr: {out.stderr}
    assert result == {"code": 0, "loaded": []}


def _env():
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_assets_command_checks_a_folder(tmp_path, assets_dir, capsys):
    assert main(["assets", str(assets_dir)]) == 0
    out = capsys.readouterr().out
    assert "ok       required bfm/Model_PAF.pkl" in out and "missing" not in out
    assert main(["assets", "--assets", str(tmp_path / "empty")]) == 1
    captured = capsys.readouterr()
    assert "missing  required bfm/tri.pkl" in captured.out and "drtn assets --fetch" in captured.err


def test_assets_command_fetches_from_a_mirror(tmp_path, assets_dir, capsys):
    target = tmp_path / "fetched"
    assert main(["assets", str(target), "--fetch", "--mirror", Path(assets_dir).resolve().as_uri()]) == 0
    assert "missing" not in capsys.readouterr().out and (target / "bfm/Model_PAF.pkl").is_file()


def test_packaged_training_config_by_name():
    from training.cli import config_path

    assert config_path("shipped_rt").resolve() == (REPO / "training/configs/shipped_rt.json").resolve()
    assert config_path("shipped_rt").is_file() and config_path("shipped_rt").parent.name == "configs"
    with pytest.raises(FileNotFoundError, match="--config: no file nope .*shipped_rt"):
        config_path("nope")


def test_native_log_noise_is_filtered_from_stderr():
    """MediaPipe's LiteRT/absl lines written to descriptor 2 by native code are dropped; everything else passes."""
    code = (
        "import os, sys, time, drtn_cli; drtn_cli.filter_native_stderr(); "
        "os.write(2, b'INFO: [environment.cc:36] Creating LiteRT environment with options\\n'"
        "b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n'"
        "b'WARNING: Logging before InitGoogle() is written to STDERR\\n'"
        "b'W0000 00:00:1795989871.099822    6497 inference_runner_litert.cc:1433] Input tensor memory is not aligned\\n'"
        "b'native error: keep me\\n'); "
        "print('python stderr: keep me too', file=sys.stderr); time.sleep(0.3)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, env=_env())
    assert sorted(out.stderr.splitlines()) == ["native error: keep me", "python stderr: keep me too"]  # two streams: any order


def test_live_passes_the_model_to_the_app():
    from realtime.ui.options import LiveOptions

    options = LiveOptions.from_args(build_parser().parse_args(["live", "clip.mp4", "--model", "m.onnx", "--backend", "torch"]))
    assert options.model == "m.onnx" and options.backend == "torch"
    assert LiveOptions.from_args(build_parser().parse_args(["live"])).model is None


def test_smoothing_flag_per_command():
    """`video` smooths offline by default, `live` causally; `--no-smoothing` is `--smoothing off`."""
    from realtime.arguments import pipeline_options_from_args, smoothing_choice
    from realtime.ui.options import LiveOptions

    parse = build_parser().parse_args
    video = pipeline_options_from_args(parse(["video", "x.mp4"]), default_smoothing="offline").smoothing
    assert video.offline_enabled and video.offline.lag_frames == 8
    lag = pipeline_options_from_args(parse(["video", "x.mp4", "--smooth-lag", "4"]), default_smoothing="offline")
    assert lag.smoothing.offline.lag_frames == 4
    for flags, expected in (
        (["--smoothing", "causal"], "causal"),
        (["--no-smoothing"], "off"),
        (["--smoothing", "off"], "off"),
    ):
        assert smoothing_choice(parse(["video", "x.mp4", *flags]), "offline") == expected
    assert not pipeline_options_from_args(
        parse(["video", "x.mp4", "--no-smoothing"]), default_smoothing="offline"
    ).smoothing.enabled
    with pytest.raises(ValueError, match="contradicts"):
        smoothing_choice(parse(["video", "x.mp4", "--no-smoothing", "--smoothing", "offline"]))
    live = LiveOptions.from_args(parse(["live"]))
    assert live.smoothing and live.pipeline.smoothing.causal
    assert not LiveOptions.from_args(parse(["live", "--smoothing", "off"])).smoothing


def test_live_refuses_offline_smoothing(capsys):
    assert main(["live", "--smoothing", "offline"]) == 2
    assert "live needs causal or off" in capsys.readouterr().err


def test_causal_filter_flags_warn_when_smoothing_is_offline(caplog):
    from realtime.arguments import pipeline_options_from_args

    args = build_parser().parse_args(["video", "x.mp4", "--smooth-beta", "2"])
    with caplog.at_level("WARNING"):
        pipeline_options_from_args(args, default_smoothing="offline")
    assert "--smooth-beta set the causal filter; smoothing is offline" in caplog.text


@pytest.mark.parametrize(
    "command, flags, expected",
    [("video", [], True), ("video", ["--no-flip-average"], False), ("demo", [], True), ("demo", ["--no-flip-average"], False)],
)
def test_file_commands_default_to_mirror_averaging(tmp_path, assets_dir, shared_dir, monkeypatch, command, flags, expected):
    """`video` and `demo` process files (not latency bound) and default to mirror-averaged inference, which wins
    the tracking benchmark; `--no-flip-average` turns it off; `live` keeps one network pass per face."""
    import realtime.cli as cli
    from realtime.ui.options import LiveOptions

    seen = []
    real = cli.pipeline_options_from_args
    monkeypatch.setattr(cli, "pipeline_options_from_args", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    if command == "video":
        argv = ["video", str(shared_dir / "samples/video/obama.mp4"), "--records-only", "--records", str(tmp_path / "r.jsonl")]
        argv += ["--max-frames", "2", "-q"]
    else:
        argv = ["demo", str(shared_dir / "samples/images/emma.jpg"), "-o", str(tmp_path / "d.png"), "-q"]
    assert main(["--assets", str(assets_dir), *argv, *flags]) == 0
    assert [options.flip_average for options in seen] == [expected]
    assert LiveOptions.from_args(build_parser().parse_args(["live"])).pipeline.flip_average is False
    assert LiveOptions.from_args(build_parser().parse_args(["live", "--flip-average"])).pipeline.flip_average is True
