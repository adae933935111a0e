"""realtime.render: camera and mesh math (always), offscreen OpenGL rendering (marker ``gui``: skips without GL).

The GL tests render headless (EGL surfaceless, else OSMesa); no X server is needed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from realtime.render import FaceDrawOptions, ImageCamera, LinesDraw, MeshDraw, OrbitCamera, PointsDraw, avatar_mesh, face_draws
from realtime.render.faces import pose_axes_segments
from realtime.render.scene import vertex_normals

RED = (1.0, 0.0, 0.0, 1.0)
BLUE = (0.0, 0.0, 1.0, 1.0)
D0_DETECTION_BOX = np.array([125.0, 172.0, 390.0, 437.0])  # MediaPipe's box on the first frame of d0.mp4


def _rectangle(x0: float, y0: float, x1: float, y1: float, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Two triangles covering [x0, x1] x [y0, y1] (pixel-edge coordinates) at depth z."""
    vertices = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=np.float32)
    return vertices, np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32)


# ------------------------------------------------------------------------------------------------ no GL
def test_image_camera_maps_pixel_centres_and_depth():
    camera = ImageCamera(64, 48)
    matrix = camera.view_projection((0.0, 10.0))
    corners = np.array([[0, 0, 10, 1], [63, 47, 0, 1]], dtype=np.float64) @ matrix.T.astype(np.float64)
    # pixel (0, 0) is the top-left pixel: its centre is half a pixel inside the top-left corner of clip space
    np.testing.assert_allclose(corners[0, :2], [-1 + 1 / 64, 1 - 1 / 48], atol=1e-6)
    np.testing.assert_allclose(corners[1, :2], [1 - 1 / 64, -1 + 1 / 48], atol=1e-6)
    assert corners[0, 2] < corners[1, 2], "larger z (closer to the camera) must get the smaller GL depth"
    assert -1 < corners[0, 2] < 1 and -1 < corners[1, 2] < 1


def test_orbit_camera_front_view_and_orbit():
    camera = OrbitCamera(distance=4.0)
    np.testing.assert_allclose(camera.eye_position(), [0, 0, 4], atol=1e-6)
    clip = camera.view_projection() @ np.array([0, 0, 0, 1], dtype=np.float32)
    np.testing.assert_allclose(clip[:2] / clip[3], [0, 0], atol=1e-6)  # the target is in the middle
    right = camera.view_projection() @ np.array([0.5, 0, 0, 1], dtype=np.float32)
    assert right[0] / right[3] > 0  # +x appears on the right from the front
    camera.orbit(90.0, 0.0)
    np.testing.assert_allclose(camera.eye_position(), [4, 0, 0], atol=1e-5)
    camera.orbit(0.0, 200.0)
    assert camera.pitch_deg == 89.0  # clamped: never flips over the pole


def test_vertex_normals_of_a_plane_and_a_tent():
    vertices, triangles = _rectangle(0, 0, 4, 4, 2.0)
    normals = vertex_normals(vertices, triangles)
    np.testing.assert_allclose(np.abs(normals[:, 2]), 1.0, atol=1e-6)
    tent = np.array([[0, 0, 0], [1, 0, 1], [2, 0, 0], [0, 1, 0], [1, 1, 1], [2, 1, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 3], [1, 4, 3], [1, 2, 5], [1, 5, 4]])  # vertex 1 in two triangles of each slope
    ridge = vertex_normals(tent, faces)[1]
    np.testing.assert_allclose(np.abs(ridge), [0, 0, 1], atol=1e-6)  # the two slopes average to straight up


def test_draws_validate_their_inputs():
    with pytest.raises(ValueError, match=r"vertices_image must be \(K, 3\)"):
        MeshDraw(np.zeros((4, 2)), np.zeros((1, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="triangle indices"):
        MeshDraw(np.zeros((3, 3)), np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match="integers"):
        MeshDraw(np.zeros((3, 3)), np.array([[0.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match="color"):
        MeshDraw(np.zeros((3, 3)), np.array([[0, 1, 2]]), (2.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"\(M, 2, 2\)"):
        LinesDraw(np.zeros((3, 2)))


def test_lines_become_quads_of_the_requested_width():
    quads = LinesDraw(np.array([[[0.0, 10.0], [20.0, 10.0]]]), width_px=4.0).quads()
    assert quads.shape == (6, 2)
    np.testing.assert_allclose(sorted(set(quads[:, 1].tolist())), [8.0, 12.0])


def test_pose_axes_follow_the_rotation():
    params = np.zeros(62, dtype=np.float32)
    params[:12] = (2.0 * np.eye(3, 4)).reshape(-1)  # s = 2, R = I: facing the camera
    segments = pose_axes_segments(params, np.array([100.0, 50.0]), 10.0)
    np.testing.assert_allclose(segments[:, 0], [[100, 50]] * 3)
    np.testing.assert_allclose(segments[0, 1], [110, 50], atol=1e-5)  # model x: image right
    np.testing.assert_allclose(segments[1, 1], [100, 40], atol=1e-5)  # model y (up): image up = -y
    np.testing.assert_allclose(segments[2, 1], [100, 50], atol=1e-5)  # z points at the viewer: a point


def test_face_draws_follow_the_options():
    face = SimpleNamespace(
        vertices_image=np.zeros((3, 3)),
        landmarks_2d=np.random.rand(68, 2) * 50,
        params=np.eye(3, 4).reshape(-1).tolist() + [0.0] * 50,
    )
    triangles = np.array([[0, 1, 2]])
    meshes, overlays = face_draws([face], triangles, FaceDrawOptions())
    assert len(meshes) == 1 and overlays == []
    meshes, overlays = face_draws(
        [face, face], triangles, FaceDrawOptions(show_mesh=False, show_landmarks=True, show_axes=True)
    )
    assert meshes == [] and len(overlays) == 2 * (1 + 3)


# ------------------------------------------------------------------------------------------------ GL
@pytest.mark.gui
def test_triangle_lands_on_the_right_pixels(renderer_factory):
    renderer = renderer_factory(64, 48)
    vertices, triangles = _rectangle(9.5, 4.5, 19.5, 14.5, 0.0)  # pixel edges around pixels x 10..19, y 5..14
    out = renderer.render(np.zeros((48, 64, 3), np.uint8), [MeshDraw(vertices, triangles, RED)])
    covered = out.sum(axis=2) > 0
    expected = np.zeros((48, 64), bool)
    expected[5:15, 10:20] = True
    np.testing.assert_array_equal(covered, expected)
    assert (out[covered][:, 2] > 200).all() and (out[covered][:, 0] < 120).all()  # red, lit: BGR order kept

    triangle = MeshDraw(np.array([[10, 10, 0], [50, 10, 0], [10, 40, 0]], np.float32), np.array([[0, 1, 2]]), RED)
    out = renderer.render(np.zeros((48, 64, 3), np.uint8), [triangle])
    assert out[12, 12].sum() > 0 and out[38, 11].sum() > 0  # near the top-left and the bottom (y down) corners
    assert out[35, 45].sum() == 0  # beyond the hypotenuse


@pytest.mark.gui
def test_nearer_triangle_wins_the_depth_test(renderer_factory):
    renderer = renderer_factory(64, 48)
    red_vertices, triangles = _rectangle(4, 4, 40, 40, 10.0)
    blue_vertices, _ = _rectangle(20, 8, 60, 44, 0.0)
    image = np.zeros((48, 64, 3), np.uint8)
    for order in ((0, 1), (1, 0)):  # whatever the drawing order, larger z (closer) wins
        meshes = [MeshDraw(red_vertices, triangles, RED), MeshDraw(blue_vertices, triangles, BLUE)]
        out = renderer.render(image, [meshes[i] for i in order])
        overlap = out[20, 30]
        assert overlap[2] > 150 and overlap[0] < 100, f"red (z=10) should cover blue (z=0), got BGR {overlap}"
        assert out[42, 50][0] > 150, "blue outside the overlap"
    out = renderer.render(
        image, [MeshDraw(red_vertices - [0, 0, 20], triangles, RED), MeshDraw(blue_vertices, triangles, BLUE)]
    )
    assert out[20, 30][0] > 150 and out[20, 30][2] < 100, "blue is nearer now"


@pytest.mark.gui
def test_semi_transparent_mesh_blends_over_the_frame(renderer_factory):
    renderer = renderer_factory(32, 32)
    image = np.full((32, 32, 3), 100, np.uint8)
    vertices, triangles = _rectangle(0, 0, 32, 32, 0.0)
    out = renderer.render(image, [MeshDraw(vertices, triangles, (1.0, 1.0, 1.0, 0.5))])
    assert 120 < out[16, 16].mean() < 250  # between the frame and the lit white mesh
    opaque = renderer.render(image, [MeshDraw(vertices, triangles, (1.0, 1.0, 1.0, 1.0))])
    assert opaque[16, 16].mean() > out[16, 16].mean()


@pytest.mark.gui
def test_landmark_points_and_axis_lines(renderer_factory):
    renderer = renderer_factory(64, 48)
    out = renderer.render(
        np.zeros((48, 64, 3), np.uint8),
        overlays=[
            PointsDraw(np.array([[10.0, 10.0], [50.0, 30.0]]), (0, 1, 0, 1), 4.0),
            LinesDraw(np.array([[[5.0, 40.0], [60.0, 40.0]]]), BLUE, 2.0),
        ],
    )
    assert out[10, 10, 1] > 200 and out[30, 50, 1] > 200 and out[20, 30].sum() == 0
    assert out[40, 30, 0] > 200 and out[44, 30].sum() == 0


@pytest.mark.gui
def test_render_checks_the_frame_size_and_keeps_the_input(renderer_factory):
    renderer = renderer_factory(32, 24)
    with pytest.raises(ValueError, match=r"expected a \(24, 32, 3\) uint8 image"):
        renderer.render(np.zeros((24, 30, 3), np.uint8), [])
    image = np.full((24, 32, 3), 7, np.uint8)
    out = renderer.render(image, [])
    assert out is not image and (out == 7).all()  # the background is passed through exactly
    gray = renderer.render(np.full((24, 32), 9, np.uint8), [])
    assert (gray == 9).all()


@pytest.mark.gui
def test_renderer_can_be_handed_to_another_thread(renderer_factory):
    renderer = renderer_factory(16, 16)
    vertices, triangles = _rectangle(0, 0, 16, 16, 0.0)
    results = []
    thread = threading.Thread(
        target=lambda: results.append(renderer.render(np.zeros((16, 16, 3), np.uint8), [MeshDraw(vertices, triangles, RED)]))
    )
    thread.start()
    thread.join()
    assert results and results[0][8, 8, 2] > 200
    assert renderer.render(np.zeros((16, 16, 3), np.uint8), [])[8, 8].sum() == 0


@pytest.mark.gui
def test_gl_version_check_fails_clearly(renderer_factory, monkeypatch):
    renderer_factory(8, 8)  # loads PyOpenGL on the headless platform first
    from realtime.render import gl_scene

    monkeypatch.setattr(
        gl_scene, "gl_info", lambda: {"version": "2.1 Mesa 9.0", "renderer": "old", "vendor": "x", "glsl": "1.20"}
    )
    with pytest.raises(gl_scene.GLVersionError, match=r"OpenGL 3\.3 core profile is required.*'2\.1 Mesa 9\.0'"):
        gl_scene.check_gl_version()


def test_unknown_headless_backend_is_rejected():
    from realtime.render import create_headless_context

    with pytest.raises(ValueError, match="unknown headless GL backend 'vulkan'"):
        create_headless_context("vulkan")


# ------------------------------------------------------------------------------------------------ real face
@pytest.fixture(scope="module")
def d0_face(assets_dir, shared_dir, morphable):
    """The teacher's reconstruction of the first frame of the bundled clip: (frame, params, roi, vertices, landmarks)."""
    cv2 = pytest.importorskip("cv2")
    onnxruntime = pytest.importorskip("onnxruntime")
    from drtn.crop import crop_image, model_to_image, roi_box_from_detection, roi_box_from_landmarks

    capture = cv2.VideoCapture(str(shared_dir / "samples/video/liveportrait/d0.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok, "cannot decode the bundled clip"
    session = onnxruntime.InferenceSession(
        str(assets_dir / "teacher/3ddfa_v2_mb05_120x120.onnx"), providers=["CPUExecutionProvider"]
    )

    def reconstruct(roi_box):
        crop = crop_image(frame, roi_box).astype(np.float32)
        normalized = session.run(None, {session.get_inputs()[0].name: ((crop - 127.5) / 128.0).transpose(2, 0, 1)[None]})[0]
        params = morphable.stats.denormalize(normalized)
        return params, model_to_image(morphable.landmarks_model(params)[0], roi_box).T

    roi = roi_box_from_detection(D0_DETECTION_BOX)
    params, landmarks = reconstruct(roi)
    roi = roi_box_from_landmarks(landmarks[:, :2])  # 3DDFA_V2's second pass, on a crop framed by the landmarks
    params, landmarks = reconstruct(roi)
    vertices = model_to_image(morphable.dense_model(params)[0], roi).T
    return frame, params[0], roi, vertices, landmarks


def test_depth_convention_larger_z_is_closer(d0_face):
    _, _, _, _, landmarks = d0_face
    nose_tip, cheeks = landmarks[30, 2], landmarks[[2, 14], 2]
    assert (nose_tip > cheeks + 50).all(), f"nose tip z {nose_tip:.0f} should exceed the cheeks' {cheeks.round(0)}"


@pytest.mark.gui
def test_real_face_mesh_overlays_the_face(renderer_factory, d0_face, morphable):
    frame, params, roi, vertices, landmarks = d0_face
    renderer = renderer_factory(frame.shape[1], frame.shape[0])
    face = SimpleNamespace(vertices_image=vertices, landmarks_2d=landmarks[:, :2], params=params)
    meshes, overlays = face_draws([face], morphable.dense_triangles, FaceDrawOptions())
    out = renderer.render(frame, meshes, overlays)
    changed = np.abs(out.astype(int) - frame.astype(int)).max(axis=2) > 30
    x0, y0, x1, y1 = np.concatenate([landmarks[:, :2].min(0), landmarks[:, :2].max(0)]).astype(int)
    inside = changed[y0:y1, x0:x1].mean()
    assert inside > 0.6, f"only {inside:.0%} of the landmark box is covered by the mesh"
    margin = 0.15 * (roi[2] - roi[0])  # the crop is framed by the landmarks; the forehead mesh reaches above it
    rx0, ry0, rx1, ry1 = np.clip(roi + [-margin, -margin, margin, margin], 0, [frame.shape[1], frame.shape[0]] * 2).astype(int)
    outside = changed.copy()
    outside[ry0:ry1, rx0:rx1] = False
    assert outside.sum() == 0, f"{outside.sum()} mesh pixels outside the face's crop box"
    tinted = out[y0:y1, x0:x1].astype(int)
    assert (tinted[..., 0] - tinted[..., 2]).mean() > 20, "the light-blue mesh should make the face bluish"


@pytest.mark.gui
def test_avatar_view_shows_the_face_in_the_middle(renderer_factory, d0_face, morphable):
    _, params, _, _, _ = d0_face
    renderer = renderer_factory(96, 96)
    for kind in ("dense", "display"):
        vertices, triangles = avatar_mesh(morphable, params, kind)
        assert np.abs(vertices).max() < 1.5
        out = renderer.render_view(
            OrbitCamera(distance=4.0), [MeshDraw(vertices, triangles, (0.8, 0.8, 0.8, 1.0))], (0.0, 0.0, 0.0, 1.0)
        )
        lit = out.max(axis=2) > 40
        rows, cols = np.nonzero(lit)
        assert lit.mean() > 0.15, f"{kind}: the face covers only {lit.mean():.0%} of the view"
        assert abs(cols.mean() - 48) < 10 and abs(rows.mean() - 48) < 12, f"{kind}: face not centred"
    turned = renderer.render_view(
        OrbitCamera(distance=4.0, yaw_deg=90.0),
        [MeshDraw(*avatar_mesh(morphable, params, "dense"), (0.8, 0.8, 0.8, 1.0))],
        (0.0, 0.0, 0.0, 1.0),
    )
    assert (turned.max(axis=2) > 40).mean() < lit.mean(), "a profile view is narrower than the front view"


def test_no_headless_gl_names_every_attempt_and_the_fix(monkeypatch):
    from realtime.render import context

    def fail(name):
        def raise_error(*_args, **_kwargs):
            raise context.HeadlessGLError(f"{name} is broken here")

        return raise_error

    monkeypatch.setattr(context, "EGLContext", fail("libEGL"))
    monkeypatch.setattr(context, "OSMesaContext", fail("libOSMesa"))
    monkeypatch.setattr(context, "pyopengl_platform", lambda: "egl")  # never touch the real PyOpenGL platform
    monkeypatch.delenv(context.BACKEND_ENV, raising=False)
    with pytest.raises(context.HeadlessGLError) as error:
        context.create_headless_context()
    message = str(error.value)
    assert "egl: libEGL is broken here" in message and "osmesa: libOSMesa is broken here" in message
    assert "apt-get install" in message


@pytest.mark.gui
def test_osmesa_fallback_renders_too(tmp_path):
    """OSMesa needs its own PyOpenGL platform, chosen before OpenGL loads: so in a fresh process."""
    import ctypes.util
    import os
    import subprocess
    import sys

    if ctypes.util.find_library("OSMesa") is None:
        pytest.skip("libOSMesa not installed (Debian: libosmesa6)")
    program = (
        "import numpy as np\n"
        "from realtime.render import MeshDraw, OverlayRenderer\n"
        "with OverlayRenderer(32, 32) as renderer:\n"
        "    out = renderer.render(np.zeros((32, 32, 3), np.uint8), [MeshDraw(np.array([[2, 2, 0], [30, 2, 0], [2, 30, 0]], np.float32), np.array([[0, 1, 2]]), (1, 0, 0, 1))])\n"
        "    print(renderer.description, int(out[5, 5, 2]), int(out[28, 28].sum()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    env["DRTN_GL_BACKEND"] = "osmesa"
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    description, red, corner = done.stdout.strip().rsplit(" ", 2)
    assert description.startswith("OSMesa") and int(red) > 200 and int(corner) == 0
