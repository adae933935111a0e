"""VMC streaming: the packets arrive on loopback in the protocol's shape (python-osc server)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from drtn.params import euler_to_rotation
from realtime.blendshapes import ARKIT_NAMES
from realtime.vmc import VmcSender, head_pose_unity, parse_host_port, rotation_to_quaternion

pytest.importorskip("pythonosc")


def _quaternion_to_rotation(q):
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def test_parse_host_port():
    assert parse_host_port("127.0.0.1:39539") == ("127.0.0.1", 39539)
    assert parse_host_port(":39540") == ("127.0.0.1", 39540)
    for bad in ("localhost", "host:0", "host:x", "host:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_host_port(bad)


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (0.3, -0.5, 0.2), (2.5, 0.1, -3.0), (0.0, np.pi - 0.01, 0.0)])
def test_quaternion_round_trip(angles):
    rotation = euler_to_rotation(*angles)[0]
    q = rotation_to_quaternion(rotation)
    assert np.linalg.norm(q) == pytest.approx(1.0) and q[3] >= 0
    assert np.allclose(_quaternion_to_rotation(q), rotation, atol=1e-9)


def _face(yaw_radians: float, blendshapes: dict | None):
    rotation = euler_to_rotation(0.0, yaw_radians, 0.0)[0]
    params = np.zeros(62, np.float32)
    params[:12] = np.concatenate([2e-3 * rotation, np.array([[60.0], [60.0], [0.0]])], axis=1).reshape(-1)
    return SimpleNamespace(params=params, roi_box=np.array([540.0, 260.0, 740.0, 460.0]), blendshapes=blendshapes)


def test_head_pose_is_mirrored_into_unity_frame():
    position, q = head_pose_unity(_face(0.5, None).params, np.array([540.0, 260.0, 740.0, 460.0]), (1280, 720))
    assert np.allclose(position[:2], [0.0, 0.0], atol=1e-9)  # a centred face
    unity = _quaternion_to_rotation(q)
    model = euler_to_rotation(0.0, 0.5, 0.0)[0]
    mirror = np.diag([1.0, 1.0, -1.0])
    assert np.allclose(unity, mirror @ model @ mirror, atol=1e-6)
    assert abs(q[1]) == pytest.approx(np.sin(0.25), abs=1e-6)  # a pure rotation about y keeps its angle


def test_vmc_packets_arrive_on_loopback():
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer

    received: list[tuple] = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: received.append((address, *args)))
    server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    server.timeout = 5.0
    port = server.server_address[1]
    weights = {name: 0.0 for name in ARKIT_NAMES} | {"jawOpen": 0.75, "mouthSmileLeft": 0.25}
    sender = VmcSender("127.0.0.1", port)
    thread = threading.Thread(target=server.handle_request)  # one datagram: the whole frame's bundle
    thread.start()
    try:
        assert sender.send_result(SimpleNamespace(faces=[_face(0.3, weights)], image_size=(1280, 720)))
        thread.join(10.0)
    finally:
        sender.close()
        server.server_close()
    assert not thread.is_alive()
    addresses = [message[0] for message in received]
    assert addresses[0] == "/VMC/Ext/Bone/Pos" and addresses[-1] == "/VMC/Ext/Blend/Apply"
    assert addresses.count("/VMC/Ext/Blend/Val") == 52
    bone = received[0]
    assert bone[1] == "Head" and len(bone) == 9
    quaternion = np.array(bone[5:9])
    assert np.linalg.norm(quaternion) == pytest.approx(1.0, abs=1e-5)
    values = {message[1]: message[2] for message in received if message[0] == "/VMC/Ext/Blend/Val"}
    assert set(values) == set(ARKIT_NAMES)
    assert values["jawOpen"] == pytest.approx(0.75) and values["mouthSmileLeft"] == pytest.approx(0.25)


def test_no_face_sends_nothing_and_a_dead_receiver_does_not_raise():
    sender = VmcSender("127.0.0.1", 9)  # discard port: nobody listens, UDP does not care
    try:
        assert not sender.send_result(SimpleNamespace(faces=[], image_size=(640, 480)))
        sender.send_result(SimpleNamespace(faces=[_face(0.0, None)], image_size=(640, 480)))
    finally:
        sender.close()


def test_video_forwarder_sends_each_tracked_frame(make_pipeline, clip_frames):
    """``main.py video --vmc``: the pipeline's results, blendshapes included, go out frame by frame."""
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    from realtime.vmc import forward_results

    received: list[tuple] = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: received.append((address, *args)))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sender = VmcSender("127.0.0.1", server.server_address[1])
    try:
        pipeline, written = make_pipeline(), []
        forward = forward_results(sender, then=lambda frame, result: written.append(frame))
        results = []
        for frame in clip_frames[:3]:
            results.append(pipeline.process(frame))
            forward(frame, results[-1])
        deadline = time.monotonic() + 5.0
        while sum(m[0] == "/VMC/Ext/Blend/Apply" for m in received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
        sender.close()
    assert all(result.faces for result in results)
    assert [id(f) for f in written] == [id(f) for f in clip_frames[:3]]  # the callback it wraps ran for every frame
    assert sender.frames_sent == 3
    sent = {m[1]: m[2] for m in received if m[0] == "/VMC/Ext/Blend/Val"}
    assert sent["jawOpen"] == pytest.approx(results[-1].faces[0].blendshapes["jawOpen"], abs=1e-6)
