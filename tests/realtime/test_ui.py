"""The live app, for real: ``main.py live`` on the bundled clip under an X server (Xvfb), in a subprocess.

Marker ``gui``. The app runs in its own process because Qt wants the main thread and an X display, and
PyOpenGL's platform is chosen once per process. With ``DISPLAY`` set (CI runs ``xvfb-run -a pytest``) the
app uses it; without, the test starts the app under ``xvfb-run -a`` itself, and skips with the reason when
neither is possible. Any Qt warning fails the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from realtime.ui.options import LiveOptions

REPO = Path(__file__).resolve().parents[2]
CLIP = Path("samples/video/liveportrait/d0.mp4")
FRAMES = 12


def _display_prefix() -> list[str]:
    if importlib.util.find_spec("PyQt6") is None:
        pytest.skip("PyQt6 is not installed")
    if os.environ.get("DISPLAY"):
        return []
    if shutil.which("xvfb-run"):
        return ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"]
    pytest.skip("no X server: DISPLAY is unset and xvfb-run is missing (Debian: apt-get install xvfb xauth)")


def _app_environment(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DRTN_GL_BACKEND", "QT_QPA_PLATFORM_PLUGIN_PATH")
    }
    runtime = tmp_path / "xdg-runtime"  # Qt warns when XDG_RUNTIME_DIR is missing or not private
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(XDG_RUNTIME_DIR=str(runtime), QT_QPA_PLATFORM="xcb", PYTHONUNBUFFERED="1")
    return env


def _run_app(arguments: list[str], tmp_path: Path, assets_dir: Path, timeout_s: float = 400) -> subprocess.CompletedProcess:
    command = [*_display_prefix(), sys.executable, "main.py", "--assets", str(assets_dir), "live", *arguments]
    return subprocess.run(command, cwd=REPO, env=_app_environment(tmp_path), capture_output=True, text=True, timeout=timeout_s)


def _qt_warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "realtime.ui.qt" in line or line.startswith("Qt: ")]


def _read_frame(path: Path, index: int) -> np.ndarray:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        for _ in range(index + 1):
            ok, frame = capture.read()
            assert ok, f"cannot decode frame {index} of {path}"
    finally:
        capture.release()
    return frame


@pytest.mark.gui
@pytest.mark.slow
def test_app_tracks_the_bundled_clip_and_draws_the_mesh_on_the_face(tmp_path, shared_dir, assets_dir):
    import cv2

    clip = shared_dir / CLIP
    screenshot = tmp_path / "live.png"
    done = _run_app(
        [str(clip), "--backend", "teacher", "--screenshot", str(screenshot), "--frames", str(FRAMES)], tmp_path, assets_dir
    )
    assert done.returncode == 0, f"app failed ({done.returncode}):\n{done.stderr[-4000:]}"
    assert not _qt_warning_lines(done.stderr), "Qt warnings:\n" + "\n".join(_qt_warning_lines(done.stderr))
    view = json.loads(screenshot.with_suffix(".json").read_text())
    assert view["qt_warnings"] == []
    assert view["frames_processed"] == FRAMES and view["sequence"] == FRAMES
    assert len(view["faces"]) == 1, f"expected one tracked face, got {view['faces']}"

    image = cv2.imread(str(screenshot))
    assert image is not None and image.shape[1::-1] == tuple(view["screenshot_size"])
    # The frame the screenshot shows, scaled into the video's place in the window: what the app added is the overlay.
    x, y, width, height = (int(round(v)) for v in view["video_rect_window"])
    frame = cv2.resize(_read_frame(clip, view["frame_index"]), (width, height), interpolation=cv2.INTER_LINEAR)
    shown = image[y : y + height, x : x + width].astype(int)
    changed = np.abs(shown - frame.astype(int)).max(axis=2) > 40
    bluish = shown[..., 0] - shown[..., 2] > 20  # the light-blue mesh over skin (B < R without it)
    mesh = changed & bluish

    face = view["faces"][0]
    bx0, by0, bx1, by1 = (int(round(v)) for v in face["landmarks_box_window"])
    inside = mesh[by0 - y : by1 - y, bx0 - x : bx1 - x]
    assert inside.mean() > 0.5, f"mesh covers only {inside.mean():.0%} of the tracked face box"
    rx0, ry0, rx1, ry1 = face["roi_box_window"]
    margin = 0.15 * (rx1 - rx0)  # the forehead mesh reaches a little above the landmark-framed crop
    outside = changed.copy()
    outside[max(0, int(ry0 - margin) - y) : int(ry1 + margin) - y, max(0, int(rx0 - margin) - x) : int(rx1 + margin) - x] = (
        False
    )
    assert outside.mean() < 0.01, f"{outside.mean():.1%} of the video outside the face changed: the overlay is misplaced"


@pytest.mark.gui
def test_app_reports_a_missing_video_clearly(tmp_path, assets_dir):
    missing = tmp_path / "no-such-clip.mp4"
    done = _run_app(
        [str(missing), "--backend", "teacher", "--screenshot", str(tmp_path / "x.png"), "--frames", "2"],
        tmp_path,
        assets_dir,
        timeout_s=200,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and str(missing) in last_line, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, "a user error deserves one line, not a traceback"


@pytest.mark.gui
def test_app_refuses_an_old_opengl_clearly(tmp_path, shared_dir, assets_dir, monkeypatch):
    monkeypatch.setenv("MESA_GL_VERSION_OVERRIDE", "3.0")  # Mesa then offers at most OpenGL 3.0
    done = _run_app(
        [str(shared_dir / CLIP), "--backend", "teacher", "--screenshot", str(tmp_path / "x.png"), "--frames", "2"],
        tmp_path,
        assets_dir,
        timeout_s=200,
    )
    if done.returncode == 0:
        pytest.skip("this OpenGL driver is not Mesa (it ignores MESA_GL_VERSION_OVERRIDE)")
    assert done.returncode == 2, done.stderr[-3000:]
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: OpenGL 3.3 core profile is required") and "'3.0" in last_line, done.stderr[-3000:]


def test_app_without_a_display_says_how_to_run_headless(tmp_path, assets_dir):
    if importlib.util.find_spec("PyQt6") is None:
        pytest.skip("PyQt6 is not installed")
    env = _app_environment(tmp_path)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(name, None)
    command = [sys.executable, "main.py", "--assets", str(assets_dir), "live", "--backend", "teacher"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=200)
    assert done.returncode == 2 and "no display" in done.stderr and "xvfb-run -a" in done.stderr, done.stderr[-2000:]


def test_live_options_check_their_arguments():
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        LiveOptions(backend="onnx")
    with pytest.raises(ValueError, match="--frames must be at least 1"):
        LiveOptions(screenshot=Path("a.png"), frames=0)
    with pytest.raises(ValueError, match="give --screenshot PATH too"):
        LiveOptions(frames=5)
    with pytest.raises(ValueError, match=r"must name a \.png file"):
        LiveOptions(screenshot=Path("a.jpg"))
    assert LiveOptions().should_loop and not LiveOptions(screenshot=Path("a.png")).should_loop


def _benchmark_view(
    arguments: list[str], tmp_path: Path, assets_dir: Path, seconds: float = 3.0
) -> tuple[dict, subprocess.CompletedProcess]:
    """Run the app in its real-time benchmark mode (``--seconds``) and return the screenshot's sidecar."""
    screenshot = tmp_path / "bench.png"
    done = _run_app(
        [*arguments, "--backend", "teacher", "--screenshot", str(screenshot), "--seconds", str(seconds)], tmp_path, assets_dir
    )
    assert done.returncode == 0, f"app failed ({done.returncode}):\n{done.stderr[-4000:]}"
    assert not _qt_warning_lines(done.stderr), "Qt warnings:\n" + "\n".join(_qt_warning_lines(done.stderr))
    return json.loads(screenshot.with_suffix(".json").read_text()), done


@pytest.mark.gui
def test_a_missing_file_is_reported_in_the_window(tmp_path, assets_dir):
    missing = tmp_path / "no-such-clip.mp4"
    view, _ = _benchmark_view([str(missing)], tmp_path, assets_dir, seconds=2.0)
    assert "not found" in view["message"] and str(missing) in view["message"], view["message"]
    assert view["frames_processed"] == 0


@pytest.mark.gui
def test_no_camera_is_reported_in_the_window_not_replaced_by_a_clip(tmp_path, assets_dir):
    view, done = _benchmark_view(["7"], tmp_path, assets_dir, seconds=2.0)  # no camera 7 on any test machine
    assert view["message"].startswith("No camera") and "Ctrl+O" in view["message"], view["message"]
    assert view["frames_processed"] == 0, "a clip played instead of saying that there is no camera"
    assert done.stderr.count("no camera at index 7") <= 1, "the camera is retried (log spam)"


@pytest.mark.gui
@pytest.mark.slow
def test_app_plays_in_real_time_drives_the_avatar_and_streams_vmc(tmp_path, shared_dir, assets_dir):
    pytest.importorskip("pythonosc")
    import threading

    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    received: list[tuple] = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: received.append((address, *args)))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        view, _ = _benchmark_view(
            [str(shared_dir / CLIP), "--vmc", f"127.0.0.1:{server.server_address[1]}"], tmp_path, assets_dir, seconds=8.0
        )
    finally:
        server.shutdown()
        server.server_close()
    assert view["frames_processed"] >= 3 and view["message"] == ""
    # Real time: frames processed + dropped follow the clip's own rate (25 fps) over the time played: never
    # faster (pacing), and not slow motion (late frames are dropped instead; the lower bound is loose because
    # on a starved machine even decoding can fall behind).
    played = view["frames_processed"] + view["frames_dropped"]
    expected = 25.0 * view["played_seconds"]
    assert 0.3 * expected <= played <= expected + 3, (played, expected)
    assert view["avatar"] == {"kind": "ict", "vertices": 9409}
    blendshapes = view["faces"][0]["blendshapes"]
    assert len(blendshapes) == 52 and all(0.0 <= v <= 1.0 for v in blendshapes.values())

    heads = [m for m in received if m[0] == "/VMC/Ext/Bone/Pos"]
    assert heads and all(m[1] == "Head" and len(m) == 9 for m in heads)
    assert sum(m[0] == "/VMC/Ext/Blend/Apply" for m in received) == len(heads)
    assert sum(m[0] == "/VMC/Ext/Blend/Val" for m in received) == 52 * len(heads)


_KEYS_SCRIPT = r"""
import json, sys
from realtime.ui.app import MainWindow, _clean_qt_environment
from realtime.ui.options import LiveOptions
_clean_qt_environment()
from PyQt6 import QtCore, QtGui, QtWidgets
from PyQt6.QtTest import QTest
from realtime.ui.gl_widgets import default_surface_format
QtGui.QSurfaceFormat.setDefaultFormat(default_surface_format())
app = QtWidgets.QApplication([])
window = MainWindow(LiveOptions(source=sys.argv[1], backend="teacher", assets=sys.argv[2], record_dir=sys.argv[4]))
window.show()
result = {}
def when(condition, then):  # poll: the pipeline may take seconds to start on a loaded machine
    QtCore.QTimer.singleShot(100, lambda: then() if condition() else when(condition, then))
def record_start():
    window.windowHandle().requestActivate()  # no window manager under Xvfb: ask for the focus
    result["active"] = QTest.qWaitForWindowActive(window, 5000)
    QTest.keyClick(window, QtCore.Qt.Key.Key_R, QtCore.Qt.KeyboardModifier.ControlModifier)
    started = window.worker.frames_processed
    when(lambda: window.worker.frames_processed >= started + 5, record_stop)
def record_stop():
    QTest.keyClick(window, QtCore.Qt.Key.Key_R, QtCore.Qt.KeyboardModifier.ControlModifier)
    done = window.worker.frames_processed
    when(lambda: window.worker.frames_processed >= done + 2, keys)
def keys():
    result["record_label"] = window.record_button.text()
    result["initial"] = window.pause_button.text()
    QTest.keyClick(window, QtCore.Qt.Key.Key_Space)
    result["after_space"] = window.pause_button.text()
    QTest.keyClick(window, QtCore.Qt.Key.Key_Space)
    result["after_second_space"] = window.pause_button.text()
    if sys.argv[3] == "ctrl+q":
        QTest.keyClick(window, QtCore.Qt.Key.Key_Q, QtCore.Qt.KeyboardModifier.ControlModifier)
    else:
        QTest.keyClick(window, QtCore.Qt.Key.Key_Escape)
when(lambda: window.worker.frames_processed >= 3, record_start)
QtCore.QTimer.singleShot(60000, lambda: (result.setdefault("timed_out", True), app.quit()))
app.exec()
print("RESULT " + json.dumps(result))
"""


@pytest.mark.gui
@pytest.mark.parametrize("quit_key", ["escape", "ctrl+q"])
def test_keys_record_pause_resume_and_quit(tmp_path, shared_dir, assets_dir, quit_key):
    recordings = tmp_path / "chosen folder"
    command = [
        *_display_prefix(),
        sys.executable,
        "-c",
        _KEYS_SCRIPT,
        str(shared_dir / CLIP),
        str(assets_dir),
        quit_key,
        str(recordings),
    ]
    done = subprocess.run(command, cwd=REPO, env=_app_environment(tmp_path), capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    if not result.get("active"):
        pytest.skip("the window could not get the keyboard focus on this X server")
    assert (result["initial"], result["after_space"], result["after_second_space"]) == ("Pause", "Resume", "Pause")
    assert "timed_out" not in result, f"{quit_key} did not close the window"
    # Ctrl+R started and stopped a recording in the chosen folder while the clip played.
    assert result["record_label"] == "Record"
    videos = list(recordings.glob("drtn-*.mp4"))
    assert len(videos) == 1, list(recordings.iterdir()) if recordings.exists() else "no folder"
    import cv2

    from realtime.writer import pyav_h264_available

    capture = cv2.VideoCapture(str(videos[0]))
    assert capture.isOpened() and capture.read()[0], "the recording has no frame"
    codec = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace").lower()
    capture.release()
    if pyav_h264_available():  # the shared writer of main.py video: H.264, playable in browsers
        assert codec in ("avc1", "h264"), codec
