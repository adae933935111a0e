"""Headless video processing (annotated mp4 + JSONL), interruption safety, the CLI and the bench smoke test."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from realtime.overlay import CvOverlay, create_overlay, grid_polylines
from realtime.sources import VideoFileSource
from realtime.video import check_playable, process_video
from tests.realtime.conftest import interrupt_on_frame, send_ctrl_c


def _read_records(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _count_frames(path):
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def _check_record(record):
    # schema 1's fields with presence and blendshapes, plus schema 2's version and source (realtime.records)
    assert {
        "frame_index",
        "timestamp_ms",
        "track_id",
        "detection_score",
        "presence",
        "roi_box",
        "pose",
        "landmarks_2d",
        "landmarks_3d",
        "params",
        "blendshapes",
    } <= set(record)
    assert record["schema_version"] == 2 and {"source", "source_width", "source_height", "source_fps"} <= set(record)
    assert 0.0 <= record["presence"] <= 1.0
    assert len(record["blendshapes"]) == 52 and all(0.0 <= value <= 1.0 for value in record["blendshapes"].values())
    assert np.asarray(record["landmarks_2d"]).shape == (68, 2)
    assert np.asarray(record["landmarks_3d"]).shape == (68, 3)
    assert len(record["params"]) == 62 and len(record["roi_box"]) == 4
    assert set(record["pose"]) == {"yaw", "pitch", "roll"}


def test_writes_playable_video_and_records(make_pipeline, clip_path, tmp_path):
    pipeline = make_pipeline()
    output, records = tmp_path / "out" / "annotated.mp4", tmp_path / "out" / "faces.jsonl"
    with VideoFileSource(clip_path, max_frames=6) as source:
        overlay = create_overlay("cv", pipeline, *source.frame_size)
        summary = process_video(source, pipeline, output, records, overlay, progress=False)
    assert summary.frames == 6 and summary.playable and summary.face_records == 6
    assert _count_frames(output) == 6
    lines = _read_records(records)
    assert [r["frame_index"] for r in lines] == list(range(6))
    assert [r["timestamp_ms"] for r in lines] == [i * 40.0 for i in range(6)]
    assert {r["track_id"] for r in lines} == {0}
    for record in lines:
        _check_record(record)
    # the overlay drew on the frame: annotated pixels differ from the source around the face
    with VideoFileSource(clip_path, max_frames=1) as source:
        original = next(iter(source)).image_bgr
    capture = cv2.VideoCapture(str(output))
    annotated = capture.read()[1]
    capture.release()
    assert np.abs(annotated.astype(int) - original.astype(int)).mean() > 2.0


def test_pipelined_outputs_match_the_frames_written_in_turn(make_pipeline, clip_path, tmp_path):
    """Outputs written on the output thread (the default) hold the same records and frames as written in
    the caller's thread, and the overlay is called on that thread once per frame, in frame order."""
    import threading

    class Recording:
        name = "recording"

        def __init__(self):
            self.calls = []

        def draw(self, image, faces):
            self.calls.append(threading.current_thread() is threading.main_thread())
            return image

    got = {}
    for pipelined in (True, False):
        overlay = Recording()
        output, records = tmp_path / f"p{pipelined}.mp4", tmp_path / f"p{pipelined}.jsonl"
        with VideoFileSource(clip_path, max_frames=8) as source:
            summary = process_video(source, make_pipeline(), output, records, overlay, progress=False, pipelined=pipelined)
        assert summary.frames == 8 and _count_frames(output) == 8 and len(overlay.calls) == 8
        assert not any(overlay.calls) if pipelined else all(overlay.calls)
        got[pipelined] = [(r["frame_index"], r["params"]) for r in _read_records(records)]
    assert got[True] == got[False] and [index for index, _ in got[True]] == list(range(8))


def test_interrupted_run_leaves_playable_partial_output(make_pipeline, clip_path, tmp_path):
    pipeline = make_pipeline()
    real_process = pipeline.process
    calls = {"n": 0}

    def crash_after_four(frame):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the file
        return real_process(frame)

    pipeline.process = crash_after_four
    output, records = tmp_path / "partial.mp4", tmp_path / "partial.jsonl"
    with VideoFileSource(clip_path, max_frames=20) as source:
        with pytest.raises(KeyboardInterrupt):
            process_video(source, pipeline, output, records, CvOverlay(pipeline.morphable.dense_on_face), progress=False)
    assert check_playable(output) and _count_frames(output) == 4
    lines = _read_records(records)
    assert [r["frame_index"] for r in lines] == [0, 1, 2, 3]
    for record in lines:
        _check_record(record)


def test_crash_in_the_overlay_also_leaves_valid_output(make_pipeline, clip_path, tmp_path):
    pipeline = make_pipeline()

    class Failing:
        name = "failing"
        frames = 0

        def draw(self, image, faces):
            self.frames += 1
            if self.frames == 3:
                raise RuntimeError("renderer died")
            return image

    (tmp_path / "x.mp4").write_bytes(b"an earlier result")  # an existing output stays intact on a failure
    with VideoFileSource(clip_path, max_frames=10) as source:
        with pytest.raises(RuntimeError, match="renderer died"):
            process_video(source, pipeline, tmp_path / "x.mp4", tmp_path / "x.jsonl", Failing(), progress=False)
    assert (tmp_path / "x.mp4").read_bytes() == b"an earlier result" and not (tmp_path / "x.jsonl").exists()
    assert _count_frames(tmp_path / "x.partial.mp4") == 2  # the frames done are kept under the temporary name
    assert len(_read_records(tmp_path / "x.partial.jsonl")) == 2


def test_grid_polylines_cover_the_face(morphable):
    runs = grid_polylines(morphable.dense_on_face)
    assert len(runs) > 40
    used = np.unique(np.concatenate(runs))
    assert morphable.dense_on_face[used].all()


def test_gl_overlay_falls_back_to_cv_without_a_context(make_pipeline, monkeypatch):
    import realtime.overlay as overlay_module

    def no_gl(*args, **kwargs):
        raise RuntimeError("no GL here")

    monkeypatch.setattr(overlay_module, "GlOverlay", no_gl)
    pipeline = make_pipeline()
    assert create_overlay("gl", pipeline, 64, 48).name == "cv"
    with pytest.raises(RuntimeError, match="no GL"):
        create_overlay("gl", pipeline, 64, 48, fallback=False)
    with pytest.raises(ValueError, match="unknown renderer"):
        create_overlay("vulkan", pipeline, 64, 48)


def test_video_command_end_to_end(clip_path, tmp_path, backend, assets_dir, monkeypatch, capsys):
    import main
    import realtime.cli

    monkeypatch.setattr(realtime.cli, "create_backend", lambda kind, assets_dir=None, threads=2, model=None: backend)
    output, records = tmp_path / "cli.mp4", tmp_path / "cli.jsonl"
    code = main.main(["--assets", str(assets_dir), "video", str(clip_path), "-o", str(output), "--records", str(records),
                      "--renderer", "cv", "--max-frames", "3", "--no-progress", "--detect-every", "2"])  # fmt: skip
    assert code == 0
    assert _count_frames(output) == 3 and len(_read_records(records)) == 3
    assert "wrote 3 frames" in capsys.readouterr().out


def test_video_command_reports_missing_input(tmp_path, capsys):
    import main

    code = main.main(["video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")])
    assert code == 2
    assert "video file not found" in capsys.readouterr().err


def test_pipeline_bench_smoke(backend, morphable, clip_path, assets_dir):
    from realtime.bench import TABLE_STAGES, bench_pipeline, fit_frame
    from realtime.pipeline import PipelineOptions

    assert fit_frame(np.zeros((512, 512, 3), np.uint8)).shape == (480, 640, 3)
    report = bench_pipeline(
        backend,
        clip_path,
        frames=4,
        warmup=2,
        renderer="cv",
        options=PipelineOptions(assets_dir=str(assets_dir)),
        morphable=morphable,
    )
    assert report.frames == 4 and report.faces_per_frame == 1.0 and report.end_to_end_fps > 0
    table = report.markdown()
    for stage in TABLE_STAGES:
        assert f"| {stage}" in table
    assert "**end to end**" in table


def test_sigterm_mid_file_leaves_playable_video_and_valid_records(clip_path, assets_dir, tmp_path):
    """A real process stopped by SIGTERM after a few frames (the KeyboardInterrupt path, end to end)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    pytest.importorskip("export.backends")
    repo = Path(__file__).resolve().parents[2]
    output, records = tmp_path / "term.mp4", tmp_path / "term.jsonl"
    command = [sys.executable, str(repo / "main.py"), "--assets", str(assets_dir), "video", str(clip_path), "-o", str(output),
               "--records", str(records), "--backend", "teacher", "--renderer", "cv", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            partial = tmp_path / "term.partial.jsonl"  # written under this name until the job ends
            if partial.exists() and partial.read_text().count("\n") >= 3:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()[0].decode()[-2000:]
        os.kill(process.pid, signal.SIGTERM)
        log = process.communicate(timeout=60)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, log[-2000:]  # 128 + SIGTERM, like a shell reports it
    assert not (tmp_path / "term.partial.mp4").exists() and not (tmp_path / "term.partial.jsonl").exists()
    frames = _count_frames(output)
    lines = _read_records(records)
    assert 3 <= frames < 78 and len(lines) == frames
    for record in lines:
        _check_record(record)


def test_ctrl_c_finishes_the_current_frame_then_stops(make_pipeline, clip_path, tmp_path):
    import signal

    pipeline = make_pipeline()
    interrupt_on_frame(pipeline, 3, send_ctrl_c)
    previous = signal.getsignal(signal.SIGINT)
    with VideoFileSource(clip_path, max_frames=20) as source:
        with pytest.raises(KeyboardInterrupt):
            process_video(source, pipeline, tmp_path / "c.mp4", tmp_path / "c.jsonl", progress=False)
    assert signal.getsignal(signal.SIGINT) is previous  # handler restored
    assert _count_frames(tmp_path / "c.mp4") == 4  # frames 0-3: the interrupted frame was completed
    assert [r["frame_index"] for r in _read_records(tmp_path / "c.jsonl")] == [0, 1, 2, 3]


def test_limit_blas_threads():
    from realtime.threads import limit_blas_threads

    with pytest.raises(ValueError):
        limit_blas_threads(0)
    assert isinstance(limit_blas_threads(2), bool)  # numpy's OpenBLAS here; may be unknown elsewhere


def test_gl_overlay_draws_the_mesh_on_the_face(make_pipeline, clip_frames):
    pipeline = make_pipeline()
    frame = clip_frames[0].image_bgr
    faces = pipeline.process(frame, 0.0).faces
    try:
        overlay = create_overlay("gl", pipeline, frame.shape[1], frame.shape[0], fallback=False)
    except RuntimeError as error:
        pytest.skip(f"no headless OpenGL here: {error}")
    try:
        out = overlay.draw(frame, faces)
        second = overlay.draw(cv2.resize(frame, (320, 240)), [])  # another size: the renderer is rebuilt
    finally:
        overlay.close()
    assert out.shape == frame.shape and second.shape == (240, 320, 3)
    changed = np.abs(out.astype(int) - frame.astype(int)).sum(axis=2) > 30
    x0, y0, x1, y1 = faces[0].roi_box.astype(int)
    inside = changed[max(y0, 0) : y1, max(x0, 0) : x1].mean()
    assert inside > 0.3  # the mesh covers much of the face box
    assert changed.mean() < 0.5 * inside + 0.05  # and not the whole frame


def test_soak_smoke(backend, morphable, clip_path, assets_dir):
    """`bench --soak N` on a few frames: the clip loops, memory is sampled, the table prints (the real soak is a
    benchmark, not a test: docs/realtime.md)."""
    from realtime.pipeline import PipelineOptions
    from realtime.soak import run_soak

    report = run_soak(backend, clip_path, frames=90, options=PipelineOptions(assets_dir=str(assets_dir)), samples=3)
    assert report.frames == 90  # > 78: the clip looped
    assert [frame for frame, _ in report.samples] == [0, 30, 60, 90] and all(rss > 50 for _, rss in report.samples)
    assert "| frame | RSS (MiB) |" in report.markdown() and "growth after warm-up" in report.markdown()
