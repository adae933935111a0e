"""VMC protocol sender: head pose and ARKit blendshapes to avatar apps (VSeeFace, VNyan, Warudo, ...) over OSC/UDP.

Per frame, for the first tracked face (``--vmc HOST:PORT`` on ``main.py video`` / ``live``, or the app's toggle)::

    /VMC/Ext/Bone/Pos  "Head"  px py pz  qx qy qz qw     (one message)
    /VMC/Ext/Blend/Val "<ARKit name>" weight            (52 messages)
    /VMC/Ext/Blend/Apply                                 (one message)

sent together as one OSC bundle (one UDP datagram). VMC uses Unity's frame: left-handed, x right, y up, z forward
(away from the viewer), metres; the head rotation is a unit quaternion ``(x, y, z, w)``. The tracker's head pose
(``FaceResult.params``, model frame: x right, y up, z towards the camera) is converted by mirroring z: the
rotation ``R`` becomes ``M R M`` with ``M = diag(1, 1, -1)``. The position is the face centre relative to the
image centre in units of the face size times a nominal 0.15 m face width (weak perspective gives no absolute
depth), with y up and z from the face scale (nearer = larger face = smaller z); receivers that only read the
rotation (most VRM apps) ignore it.

The sender never raises on a network error mid-stream (a receiver that is not running yet is normal with UDP);
it logs the first error once.
"""

from __future__ import annotations

import logging

import numpy as np

from drtn.params import NUM_POSE, decompose_pose
from drtn.params import rotation_to_quaternion as quaternion_wxyz

LOGGER = logging.getLogger(__name__)

NOMINAL_FACE_WIDTH_M = 0.15
_MIRROR_Z = np.diag([1.0, 1.0, -1.0])


def parse_host_port(text: str) -> tuple[str, int]:
    """``'127.0.0.1:39539'`` -> ``('127.0.0.1', 39539)``; ``':39539'`` means localhost.

    Raises:
        ValueError: not ``HOST:PORT`` with a port in 1..65535.
    """
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--vmc: expected HOST:PORT (e.g. 127.0.0.1:39539), got {text!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion in VMC's ``(x, y, z, w)`` order, ``w >= 0``."""
    return np.roll(quaternion_wxyz(rotation), -1)


def head_pose_unity(params: np.ndarray, roi_box: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The head's VMC pose from one face.

    Args:
        params: (62,) de-normalised parameters (pose ``[s*R | t]`` first).
        roi_box: (4,) the face's crop box, image pixels.
        image_size: ``(width, height)`` of the frame.
    Returns:
        ``(position (3,) metres, quaternion (4,) x, y, z, w)`` in Unity's left-handed frame.
    """
    pose = np.asarray(params, dtype=np.float64).reshape(-1)[:NUM_POSE].reshape(3, 4)
    rotation = decompose_pose(pose)[1][0]
    quaternion = rotation_to_quaternion(_MIRROR_Z @ rotation @ _MIRROR_Z)
    x0, y0, x1, y1 = np.asarray(roi_box, dtype=np.float64)
    width, height = image_size
    face_px = max(x1 - x0, 1.0)
    metres_per_px = NOMINAL_FACE_WIDTH_M / face_px
    position = np.array(
        [
            ((x0 + x1) / 2 - width / 2) * metres_per_px,
            -((y0 + y1) / 2 - height / 2) * metres_per_px,
            NOMINAL_FACE_WIDTH_M * (width / face_px) * 0.5,  # nominal distance: the face spans face_px of width px
        ]
    )
    return position, quaternion


class VmcSender:
    """Sends each frame's first face to a VMC receiver (see the module docstring).

    Args:
        host, port: the receiver (VSeeFace / VNyan / Warudo listen on 39539 by default).
    Raises:
        ImportError: python-osc is missing (the message names the install command).
    """

    def __init__(self, host: str, port: int):
        try:
            from pythonosc.udp_client import SimpleUDPClient
        except ImportError as error:
            raise ImportError(f"VMC streaming needs python-osc ({error}): pip install python-osc") from error
        self.host, self.port = host, int(port)
        self._client = SimpleUDPClient(self.host, self.port)
        self._failed = False
        self.frames_sent = 0
        LOGGER.info("VMC: sending to %s:%d", self.host, self.port)

    @classmethod
    def from_address(cls, address: str) -> "VmcSender":
        """From ``'HOST:PORT'``."""
        return cls(*parse_host_port(address))

    def send_face(self, face, image_size: tuple[int, int]) -> bool:
        """Send one face (``params``, ``roi_box``, ``blendshapes``) as one bundle; False on a network error."""
        from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
        from pythonosc.osc_message_builder import OscMessageBuilder

        from realtime.blendshapes import ARKIT_NAMES

        position, quaternion = head_pose_unity(face.params, face.roi_box, image_size)
        bundle = OscBundleBuilder(IMMEDIATELY)
        bone = OscMessageBuilder("/VMC/Ext/Bone/Pos")
        bone.add_arg("Head")
        for value in (*position, *quaternion):
            bone.add_arg(float(value), OscMessageBuilder.ARG_TYPE_FLOAT)
        bundle.add_content(bone.build())
        weights = face.blendshapes or {}
        for name in ARKIT_NAMES:
            message = OscMessageBuilder("/VMC/Ext/Blend/Val")
            message.add_arg(name)
            message.add_arg(float(weights.get(name, 0.0)), OscMessageBuilder.ARG_TYPE_FLOAT)
            bundle.add_content(message.build())
        bundle.add_content(OscMessageBuilder("/VMC/Ext/Blend/Apply").build())
        try:
            self._client.send(bundle.build())
        except OSError as error:
            if not self._failed:
                LOGGER.warning("VMC: cannot send to %s:%d (%s); will keep trying quietly", self.host, self.port, error)
                self._failed = True
            return False
        self.frames_sent += 1
        return True

    def send_result(self, result) -> bool:
        """Send a :class:`realtime.pipeline.FrameResult`'s first face (nothing when there is none)."""
        if not result.faces:
            return False
        return self.send_face(result.faces[0], result.image_size)

    def close(self) -> None:
        self._client._sock.close()  # SimpleUDPClient has no public close


def forward_results(sender: VmcSender, then=None):
    """The ``on_result`` callback of ``main.py video --vmc``: each written frame's result (``process_video`` calls it
    after the frame's outputs, with the offline smoother's results when it smooths) is sent, after ``then(frame,
    result)`` when given (e.g. the mesh writer)."""

    def send(frame, result) -> None:
        if then is not None:
            then(frame, result)
        sender.send_result(result)

    return send
