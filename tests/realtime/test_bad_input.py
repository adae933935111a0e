"""The bad-input table of issue 12: every mistake a user makes and every fault a machine has is refused with one
line naming the file (exit 2) or survived, and nothing the user had is destroyed.

Sections: output paths (CLI), unreadable inputs (assets, checkpoints, models, images), the Python API (timestamps,
options, threads), writing faults (full disk, hard kill, hang-up).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its hash: 'nothing touched' means this does not change."""
    return {str(p.relative_to(folder)): _digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _decoded_frames(path: Path) -> tuple[int, int]:
    """Frames decoded by PyAV and by OpenCV."""
    import av

    with av.open(str(path)) as container:
        by_av = sum(1 for _ in container.decode(video=0))
    capture = cv2.VideoCapture(str(path))
    by_cv = 0
    while capture.read()[0]:
        by_cv += 1
    capture.release()
    return by_av, by_cv


def _records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the last records line is cut off"
    return [json.loads(line) for line in text.splitlines()]


def _run_main(argv, capsys) -> tuple[int, str]:
    import main

    code = main.main(argv)
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ output paths
@pytest.fixture()
def work(tmp_path, clip_path):
    """A folder holding the user's input video ``X.mp4`` and an earlier result ``old.mp4``."""
    (tmp_path / "X.mp4").write_bytes(clip_path.read_bytes())
    (tmp_path / "old.mp4").write_bytes(b"an earlier result the user wants to keep")
    (tmp_path / "notes.txt").write_text("a regular file")
    (tmp_path / "folder.mp4").mkdir()
    return tmp_path


OUTPUT_CASES = [
    # (id, argv after "main.py", message pattern)
    (
        "input-as-output",
        ["video", "{w}/X.mp4", "-o", "{w}/X.mp4"],
        r"-o .*X\.mp4: is the input .*X\.mp4; it would be destroyed",
    ),
    (
        "input-as-records",
        ["video", "{w}/X.mp4", "-o", "{w}/o.mp4", "--records", "{w}/X.mp4"],
        r"--records .*X\.mp4: is the input",
    ),
    (
        "one-file-two-outputs",
        ["video", "{w}/X.mp4", "-o", "{w}/a.mp4", "--records", "{w}/a.mp4"],
        r"--records .*a\.mp4 and -o .*a\.mp4 are the same file",
    ),
    ("one-jsonl-two-outputs", ["video", "{w}/X.mp4", "-o", "{w}/a.jsonl", "--records", "{w}/a.jsonl"], r"are the same file"),
    (
        "unwritable-records-after-existing-output",
        ["video", "{w}/X.mp4", "-o", "{w}/old.mp4", "--records", "/proc/drtn-no-such/r.jsonl"],
        r"--records /proc/drtn-no-such/r\.jsonl: cannot be written, folder /proc is not writable",
    ),
    (
        "through-a-regular-file",
        ["video", "{w}/X.mp4", "-o", "{w}/notes.txt/out.mp4"],
        r"-o .*notes\.txt/out\.mp4: cannot be written, .*notes\.txt is a file, not a folder",
    ),
    (
        "records-through-a-regular-file",
        ["video", "{w}/X.mp4", "-o", "{w}/old.mp4", "--records", "{w}/X.mp4/r.jsonl"],
        r"X\.mp4 is a file, not a folder",
    ),
    ("output-is-a-folder", ["video", "{w}/X.mp4", "-o", "{w}/folder.mp4"], r"folder\.mp4: is a folder"),
    (
        "video-bad-extension",
        ["video", "{w}/X.mp4", "-o", "{w}/out.avi"],
        r"-o .*out\.avi: expected a \.mp4 / \.m4v / \.mov file name",
    ),
    (
        "records-bad-extension",
        ["video", "{w}/X.mp4", "-o", "{w}/o.mp4", "--records", "{w}/r.txt"],
        r"--records .*r\.txt: expected a \.jsonl",
    ),  # .csv is a records format (realtime.records)
    ("demo-bad-extension", ["demo", "{emma}", "-o", "{w}/x.txt"], r"-o .*x\.txt: expected a \.png / \.jpg"),
    ("demo-input-as-output", ["demo", "{w}/face.jpg", "-o", "{w}/face.jpg"], r"-o .*face\.jpg: is the input"),
    ("demo-through-a-regular-file", ["demo", "{emma}", "-o", "{w}/notes.txt/x.png"], r"notes\.txt is a file, not a folder"),
]


@pytest.mark.parametrize("argv,pattern", [case[1:] for case in OUTPUT_CASES], ids=[case[0] for case in OUTPUT_CASES])
def test_bad_output_paths_are_refused_and_nothing_is_touched(work, samples_dir, argv, pattern, capsys):
    import re

    (work / "face.jpg").write_bytes((samples_dir / "images" / "emma.jpg").read_bytes())
    before = _tree(work)
    argv = [a.format(w=work, emma=samples_dir / "images" / "emma.jpg") for a in argv]
    code, err = _run_main(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err  # one line
    assert re.search(pattern, err), err
    assert _tree(work) == before  # nothing created, truncated or replaced
    assert not Path("/proc/drtn-no-such").exists()


def test_input_through_a_link_is_recognised(work, capsys):
    os.link(work / "X.mp4", work / "hard.mp4")
    os.symlink(work / "X.mp4", work / "soft.mp4")
    before = _tree(work)
    for name in ("hard.mp4", "soft.mp4"):
        code, err = _run_main(["video", str(work / "X.mp4"), "-o", str(work / name)], capsys)
        assert code == 2 and "is the input" in err, err
    assert _tree(work) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(work, capsys):
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, err = _run_main(["video", str(work / "X.mp4"), "-o", str(locked / "o.mp4")], capsys)
    finally:
        locked.chmod(0o700)
    assert code == 2 and "not writable" in err


def test_too_little_free_space_is_refused_up_front(work, capsys, monkeypatch):
    import shutil

    import drtn.outputs

    def nearly_full(path):
        return shutil._ntuple_diskusage(100 * 2**30, 100 * 2**30 - 2**20, 2**20)  # 1 MiB free

    monkeypatch.setattr(drtn.outputs.shutil, "disk_usage", nearly_full)
    before = _tree(work)
    code, err = _run_main(["video", str(work / "X.mp4"), "-o", str(work / "o.mp4")], capsys)
    assert code == 2 and "only 1.0 MiB free" in err and "need at least 64 MiB" in err, err
    assert _tree(work) == before


# ------------------------------------------------------------------------------------------------ unreadable inputs
@pytest.fixture()
def asset_copy(tmp_path, assets_dir):
    """A folder of symlinks to the real assets; a test replaces one file with a damaged copy."""
    root = tmp_path / "assets"
    for source in assets_dir.rglob("*"):
        if source.is_file():
            target = root / source.relative_to(assets_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve())
    return root


def _damage(path: Path, how: str) -> None:
    real = path.resolve().read_bytes()
    path.unlink()
    if how == "random":
        path.write_bytes(np.random.default_rng(1).bytes(3000))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(real[: len(real) // 3])
    elif how == "wrong-content":  # parses, but is not what the loader expects
        path.write_bytes(b'{"something": 1}' if path.suffix == ".json" else __import__("pickle").dumps({"something": 1}))
    else:
        raise AssertionError(how)


ASSET_CASES = [
    ("bfm/Model_PAF.pkl", "random"),
    ("bfm/Model_PAF.pkl", "truncated"),
    ("bfm/Model_PAF.pkl", "wrong-content"),
    ("bfm/tri.pkl", "empty"),
    ("bfm/param_mean_std_62d_120x120.pkl", "random"),
    ("bfm/param_mean_std_62d_120x120.pkl", "wrong-content"),
    ("bfm/landmarks68_bases_v2.json", "random"),
    ("bfm/landmarks68_bases_v2.json", "truncated"),
    ("bfm/landmarks68_bases_v2.json", "wrong-content"),
    ("bfm/u_shp.npy", "random"),
    ("bfm/u_exp.npy", "truncated"),
    ("bfm/indices.npy", "empty"),
]


@pytest.mark.parametrize("relative,how", ASSET_CASES, ids=[f"{r.split('/')[-1]}-{h}" for r, h in ASSET_CASES])
def test_unreadable_asset_is_named_in_one_line(asset_copy, relative, how):
    from drtn.assets import AssetReadError
    from drtn.morphable import MorphableModel

    _damage(asset_copy / relative, how)
    with pytest.raises(AssetReadError) as caught:
        MorphableModel.load(str(asset_copy))
    message = str(caught.value)
    assert str(asset_copy / relative) in message and "\n" not in message, message


def test_unreadable_asset_through_the_cli(asset_copy, samples_dir, tmp_path, capsys):
    _damage(asset_copy / "bfm/Model_PAF.pkl", "random")
    code, err = _run_main(
        [
            "--assets",
            str(asset_copy),
            "demo",
            str(samples_dir / "images" / "emma.jpg"),
            "-o",
            str(tmp_path / "d.png"),
            "--backend",
            "teacher",
            "--renderer",
            "cv",
        ],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1 and str(asset_copy / "bfm/Model_PAF.pkl") in err, err
    assert not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("model", ["yunet", "blazeface"])
def test_corrupt_detector_model_is_named(asset_copy, model):
    from realtime.detector import MODEL_FILES, DetectorOptions, FaceDetector

    _damage(asset_copy / MODEL_FILES[model], "random")
    with pytest.raises(ValueError) as caught:
        FaceDetector(DetectorOptions(model=model), asset_copy)
    assert str(asset_copy / MODEL_FILES[model]) in str(caught.value) and "\n" not in str(caught.value)


def test_corrupt_teacher_model_is_named(asset_copy):
    pytest.importorskip("export.backends")
    from drtn.assets import TEACHER_FILE
    from export.backends import create_backend

    _damage(asset_copy / TEACHER_FILE, "random")
    with pytest.raises((ValueError, RuntimeError)) as caught:
        create_backend("teacher", assets=str(asset_copy), threads=1)
    assert str(asset_copy / TEACHER_FILE) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("how", ["random", "empty", "truncated"])
def test_corrupt_user_onnx_model_is_named(tmp_path, assets_dir, how):
    pytest.importorskip("export.backends")
    from drtn.assets import TEACHER_FILE
    from export.backends import create_backend

    path = tmp_path / "model.onnx"
    path.symlink_to((assets_dir / TEACHER_FILE).resolve())
    _damage(path, how)
    with pytest.raises((ValueError, RuntimeError)) as caught:
        create_backend("onnxruntime", str(path), assets=str(assets_dir), threads=1)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value), caught.value


@pytest.mark.parametrize("model", ["missing", "corrupt"])
def test_bad_model_for_video_is_one_line_not_a_crash(work, assets_dir, model):
    """The model fails to load while the input is already decoding ahead in a thread: exit 2 and one line (the
    decode thread is stopped before the file is released; releasing it under the thread aborted the process)."""
    path = work / "model.onnx"
    if model == "corrupt":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    before = _tree(work)
    command = [
        sys.executable,
        str(REPO / "main.py"),
        "--assets",
        str(assets_dir),
        "video",
        str(work / "X.mp4"),
        "-o",
        str(work / "o.mp4"),
        "--model",
        str(path),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    err = [line for line in done.stderr.splitlines() if "WARN:0" not in line]  # (OpenCV's own notices)
    assert done.returncode == 2 and len(err) == 1 and str(path) in err[0], done.stderr[-2000:]
    assert _tree(work) == before


@pytest.mark.parametrize(
    "content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + bytes(200)], ids=["empty", "text", "jpeg-header-only"]
)
def test_unreadable_demo_image_is_named(tmp_path, content, capsys):
    image = tmp_path / "photo.jpg"
    image.write_bytes(content)
    code, err = _run_main(["demo", str(image), "-o", str(tmp_path / "out.png")], capsys)
    assert code == 2 and err.count("\n") == 1 and f"cannot decode image {image}" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


@pytest.mark.parametrize("content", ["empty", "random", "zip-header", "not-a-dict"])
def test_bad_checkpoint_is_named_in_one_line(tmp_path, content):
    import torch

    from drtn.model import load_model

    path = tmp_path / "model.pt"
    if content == "empty":
        path.write_bytes(b"")
    elif content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "zip-header":
        path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    else:
        torch.save([1, 2, 3], path)
    with pytest.raises(ValueError) as caught:
        load_model(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value), caught.value


def test_bad_checkpoint_through_the_cli(tmp_path, capsys):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    code, err = _run_main(["export", "--checkpoint", str(path), "-o", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and err.count("\n") == 1 and str(path) in err and "weights_only" not in err, err


def test_image_folder_skips_and_names_corrupt_files(tmp_path, samples_dir, caplog):
    from realtime.sources import ImageFolderSource, SourceError

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "000.jpg").write_bytes(np.random.default_rng(0).bytes(2000))  # a corrupt FIRST file
    (folder / "001.png").write_bytes((samples_dir / "images" / "5.png").read_bytes())
    (folder / "002.jpg").write_bytes(b"")
    (folder / "003.jpg").write_bytes(
        (samples_dir / "images" / "emma.jpg").read_bytes()[:5000]
    )  # truncated jpeg: decodes partly
    expected = cv2.imread(str(folder / "001.png"))
    with ImageFolderSource(folder) as source:
        assert source.frame_size == (expected.shape[1], expected.shape[0])  # not 0x0
        frames = list(source)
    assert len(frames) >= 1 and np.array_equal(frames[0].image_bgr, expected)
    assert "000.jpg" in caplog.text and "002.jpg" in caplog.text

    bad = tmp_path / "all_bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match=r"cannot decode any image in .*all_bad .*first a\.png"):
        ImageFolderSource(bad)
    with pytest.raises(SourceError, match=r"cannot decode image .*a\.png"):
        ImageFolderSource(bad / "a.png")


def test_image_folder_with_corrupt_first_file_through_the_cli(tmp_path, samples_dir, backend, monkeypatch, capsys):
    import realtime.cli

    monkeypatch.setattr(realtime.cli, "create_backend", lambda kind, assets_dir=None, threads=2, model=None: backend)
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "000.jpg").write_bytes(b"garbage")
    (folder / "001.png").write_bytes((samples_dir / "images" / "5.png").read_bytes())
    code, err = _run_main(["video", str(folder), "-o", str(tmp_path / "o.mp4"), "--renderer", "cv", "--no-progress"], capsys)
    assert code == 0, err
    assert _decoded_frames(tmp_path / "o.mp4") == (1, 1)


# ------------------------------------------------------------------------------------------------ Python API
@pytest.mark.parametrize(
    "timestamp",
    [float("nan"), float("inf"), -float("inf"), "40", True, None, [1.0]],
    ids=["nan", "inf", "-inf", "str", "bool", "none", "list"],
)
def test_bad_timestamps_are_refused_and_the_pipeline_keeps_working(make_pipeline, clip_frames, timestamp):
    pipeline = make_pipeline()
    image = clip_frames[0].image_bgr
    assert pipeline.process(image, 0.0).faces
    with pytest.raises(ValueError, match="timestamp"):
        pipeline.process(image, timestamp)
    from realtime.sources import Frame

    if timestamp is not None:
        with pytest.raises(ValueError, match="timestamp"):
            pipeline.process(Frame(image, timestamp, 1))
    assert pipeline.process(clip_frames[1].image_bgr, 40.0).faces  # later calls are unaffected


def test_numpy_timestamps_are_accepted(make_pipeline, clip_frames):
    pipeline = make_pipeline()
    for index, stamp in enumerate((np.float32(0.0), np.int64(40), np.float64(80.0))):
        assert pipeline.process(clip_frames[index].image_bgr, stamp).timestamp_ms == float(stamp)


@pytest.mark.parametrize("field_name", ["min_cutoff", "beta", "d_cutoff"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "1.0", None])
def test_one_euro_config_refuses_non_finite_values(field_name, value):
    from realtime.smoothing import OneEuroConfig

    with pytest.raises(ValueError, match=f"OneEuroConfig.{field_name}"):
        OneEuroConfig(**{field_name: value})


@pytest.mark.parametrize("flag", ["--smooth-beta", "--smooth-min-cutoff", "--min-detection-confidence"])
def test_non_finite_cli_options_are_refused(work, flag, capsys):
    code, err = _run_main(["video", str(work / "X.mp4"), "-o", str(work / "o.mp4"), flag, "nan"], capsys)
    assert code == 2 and f"{flag}: expected a finite number, got nan" in err and err.count("\n") == 1


def test_process_from_several_threads_is_safe(make_pipeline, clip_frames):
    """Threads racing on one VIDEO pipeline: each call returns a result or a clear ValueError (its timestamp
    lost the race), never an error from inside a stage; the pipeline keeps tracking afterwards."""
    pipeline = make_pipeline()
    counter = iter(range(10_000))
    counter_lock = threading.Lock()
    results, refused, other = [], [], []

    def worker():
        for _ in range(4):
            with counter_lock:
                index = next(counter)
            frame = clip_frames[index % len(clip_frames)].image_bgr
            try:
                results.append(pipeline.process(frame, index * 40.0))
            except ValueError as error:
                (refused if "timestamps must increase" in str(error) else other).append(error)
            except Exception as error:  # noqa: BLE001 - what the old code raised from inside the smoother
                other.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert other == [] and len(results) + len(refused) == 16 and len(results) >= 4
    stamps = [r.timestamp_ms for r in results]
    assert len(set(stamps)) == len(stamps)
    assert all(len(r.faces) == 1 for r in results)
    assert pipeline.process(clip_frames[0].image_bgr, 1e6).faces[0].track_id == results[0].faces[0].track_id


def test_image_mode_from_several_threads_matches_one_thread(make_pipeline, clip_frames):
    from realtime.pipeline import RunningMode

    pipeline = make_pipeline(running_mode=RunningMode.IMAGE)
    images = [f.image_bgr for f in clip_frames[:6]]
    expected = [pipeline.process(image).faces[0].params for image in images]
    got = [None] * len(images)

    def worker(index):
        got[index] = pipeline.process(images[index]).faces[0].params

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ writing faults
def test_records_write_failure_keeps_only_whole_lines(make_pipeline, clip_path, tmp_path, monkeypatch):
    """A write that fails half-way (ENOSPC after part of a line reached the file) is cut back to the last whole
    frame and stops the job at once with one line naming the file; an existing output is untouched."""
    import realtime.video as video
    from realtime.sources import VideoFileSource

    class FillsUp:
        def __init__(self, handle, budget):
            self._handle, self._budget = handle, budget

        def write(self, data):
            if len(data) > self._budget:
                self._handle.write(data[: self._budget // 2])  # part of the frame reaches the file
                self._handle.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            self._budget -= len(data)
            return self._handle.write(data)

        def __getattr__(self, name):
            return getattr(self._handle, name)

    class SmallDisk(video.RecordsWriter):
        def __init__(self, path):
            super().__init__(path)
            self._handle = FillsUp(self._handle, budget=25_000)  # ~5 frames of records

    monkeypatch.setattr(video, "RecordsWriter", SmallDisk)
    (tmp_path / "o.mp4").write_bytes(b"earlier result")
    with VideoFileSource(clip_path, max_frames=30) as source:
        with pytest.raises(
            video.OutputWriteError,
            match=r"cannot write records to .*o\.partial\.jsonl: no space left on the device \(disk full\); stopped after \d+ frames, kept in",
        ):
            video.process_video(source, make_pipeline(), tmp_path / "o.mp4", tmp_path / "o.jsonl", progress=False)
    assert (tmp_path / "o.mp4").read_bytes() == b"earlier result" and not (tmp_path / "o.jsonl").exists()
    lines = _records(tmp_path / "o.partial.jsonl")
    assert 1 <= len(lines) < 30 and [r["frame_index"] for r in lines] == list(range(len(lines)))


def _mount_tmpfs(mount_point: Path, size: str):
    """Mount a tmpfs of ``size`` (needs root and mount; the test is skipped elsewhere)."""
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 700 KiB tmpfs."""
    yield from _mount_tmpfs(tmp_path / "tiny", "700k")


@pytest.fixture()
def small_disk(tmp_path):
    """A 70 MiB tmpfs: passes the up-front 64 MiB check."""
    yield from _mount_tmpfs(tmp_path / "small", "70m")


def test_full_disk_stops_at_once_with_a_clear_message(make_pipeline, clip_path, tiny_disk):
    """A real ENOSPC on a tiny tmpfs: stopped at the failing frame, one line, the partial video plays and the
    records hold whole lines only."""
    from realtime.sources import VideoFileSource
    from realtime.video import OutputWriteError, process_video

    with VideoFileSource(clip_path) as source:
        with pytest.raises(OutputWriteError) as caught:
            process_video(source, make_pipeline(), tiny_disk / "o.mp4", tiny_disk / "o.jsonl", progress=False, min_free_bytes=0)
    message = str(caught.value)
    assert "no space left on the device (disk full)" in message and "\n" not in message and "o.partial" in message
    frames_done = int(message.split("stopped after ")[1].split()[0])
    assert 0 < frames_done < 78
    by_av, by_cv = _decoded_frames(tiny_disk / "o.partial.mp4")
    assert by_av == by_cv and 1 <= by_av <= frames_done
    lines = _records(tiny_disk / "o.partial.jsonl")
    assert len(lines) <= frames_done
    assert not (tiny_disk / "o.mp4").exists()


def _long_clip(clip_path: Path, folder: Path, loops: int = 3) -> Path:
    """The sample clip played ``loops`` times (long enough to be killed mid-way)."""
    from realtime.sources import VideoFileSource
    from realtime.writer import open_video_writer

    path = folder / "long.mp4"
    with VideoFileSource(clip_path) as source:
        frames = [f.image_bgr for f in source]
        fps, size = source.fps, source.frame_size
    with open_video_writer(path, fps, size) as writer:
        for _ in range(loops):
            for image in frames:
                writer.write(image)
    return path


def _start_video(assets_dir, source, output, records):
    command = [sys.executable, str(REPO / "main.py"), "--assets", str(assets_dir), "video", str(source), "-o", str(output),
               "--records", str(records), "--backend", "teacher", "--renderer", "cv", "--no-progress"]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_lines(process, path: Path, lines: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return
        time.sleep(0.05)
    output = process.communicate(timeout=30)[0].decode() if process.poll() is not None else ""
    raise AssertionError(f"the job did not reach {lines} records in time (exit {process.poll()}): {output[-2000:]}")


@pytest.mark.slow
def test_sigkill_leaves_a_playable_video_and_parseable_records(clip_path, assets_dir, tmp_path):
    """The hard kill nothing can catch: the partial outputs are what is left, and they are usable."""
    pytest.importorskip("av")
    source = _long_clip(clip_path, tmp_path)
    output, records = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    process = _start_video(assets_dir, source, output, records)
    try:
        _wait_for_lines(process, tmp_path / "o.partial.jsonl", 60)  # > 2 s of 25 fps video: 2 fragments closed
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not output.exists() and not records.exists()  # only a finished (or stopped) job is moved into place
    by_av, by_cv = _decoded_frames(tmp_path / "o.partial.mp4")
    lines = _records(tmp_path / "o.partial.jsonl")
    assert by_av == by_cv and by_av >= 50, (by_av, by_cv, len(lines))
    assert len(lines) >= by_av - 1 and [r["frame_index"] for r in lines] == list(range(len(lines)))


@pytest.mark.slow
def test_sighup_finishes_the_frame_and_keeps_the_outputs(clip_path, assets_dir, tmp_path):
    """A closed terminal (SIGHUP) is handled like Ctrl-C: outputs completed and moved into place, exit 129."""
    output, records = tmp_path / "h.mp4", tmp_path / "h.jsonl"
    # three times the clip (234 frames): on a loaded machine the 78-frame clip could end before the signal lands
    process = _start_video(assets_dir, _long_clip(clip_path, tmp_path), output, records)
    try:
        _wait_for_lines(process, tmp_path / "h.partial.jsonl", 3)
        process.send_signal(signal.SIGHUP)
        log = process.communicate(timeout=60)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGHUP, log[-2000:]
    by_av, by_cv = _decoded_frames(output)
    assert 3 <= by_av == by_cv < 3 * 78 and len(_records(records)) == by_av
    assert not (tmp_path / "h.partial.mp4").exists()


@pytest.mark.slow
def test_disk_filled_by_another_process_mid_job(clip_path, assets_dir, small_disk):
    """The disk fills while `video` runs (another process writes 80 MiB): the job stops at once with one line,
    keeps the partial files, the video decodes without errors and every records line parses."""
    import av

    output, records = small_disk / "o.mp4", small_disk / "o.jsonl"
    process = _start_video(assets_dir, _long_clip(clip_path, small_disk.parent), output, records)
    try:
        _wait_for_lines(process, small_disk / "o.partial.jsonl", 30)
        subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=1M", "count=80"], capture_output=True)
        log = process.communicate(timeout=120)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert process.returncode == 2 and len(errors) == 1 and "no space left on the device (disk full)" in errors[0], log[-2000:]
    assert "Traceback" not in log and not output.exists()
    (small_disk / "filler").unlink()
    with av.open(str(small_disk / "o.partial.mp4")) as container:  # raises on a half-written fragment
        decoded = sum(1 for _ in container.decode(video=0))
    lines = _records(small_disk / "o.partial.jsonl")
    assert decoded >= 25 and len(lines) >= 30, (decoded, len(lines))
