"""realtime.render_modes: depth and PNCC maps through the OpenGL path (marker ``gui``: skip without GL)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from realtime.render import ImageCamera, MeshDraw
from realtime.render_modes import MapDrawer, depth_colors, load_ncc_code, parse_render_modes


def test_depth_colours_brighten_towards_the_camera():
    colors = depth_colors(np.array([[0, 0, -5.0], [0, 0, 5.0], [0, 0, 0.0]]))
    np.testing.assert_allclose(colors[:, 0], [0.0, 1.0, 0.5])
    assert (colors == colors[:, :1]).all()  # grey


def test_render_mode_list_is_checked():
    assert parse_render_modes("mesh, depth,pncc") == ["mesh", "depth", "pncc"]
    for bad in ("normals", "mesh,mesh", ""):
        with pytest.raises(ValueError, match="--render"):
            parse_render_modes(bad)


def test_vertex_colours_are_validated():
    with pytest.raises(ValueError, match="vertex_colors"):
        MeshDraw(np.zeros((3, 3)), np.array([[0, 1, 2]]), vertex_colors=np.zeros((2, 3)))


@pytest.mark.gui
def test_depth_render_orders_near_and_far(renderer_factory):
    """Two overlapping squares: the nearer (larger z) one hides the farther and is brighter; a tilted plane's
    grey level rises steadily towards its near edge."""
    renderer = renderer_factory(64, 48)
    far = np.array([[4, 4, -10], [40, 4, -10], [40, 40, -10], [4, 40, -10]], np.float32)
    near = far + np.array([16, 0, 20], np.float32)  # shifted right, 20 px nearer
    vertices = np.concatenate([far, near])
    triangles = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], np.int32)
    draw = MeshDraw(vertices, triangles, (1, 1, 1, 1), vertex_colors=depth_colors(vertices), lit=False)
    image = renderer.render_view(ImageCamera(64, 48), [draw], (0, 0, 0, 1))
    assert image[20, 10].max() <= 2  # far square only: depth 0 -> black
    assert image[20, 30].min() >= 253  # overlap: the near square wins, white
    assert image[2, 2].max() == 0  # background
    # a plane tilted in x: z grows with x, so the grey level must grow left to right
    plane = np.array([[2, 2, 0], [62, 2, 60], [62, 46, 60], [2, 46, 0]], np.float32)
    draw = MeshDraw(plane, triangles[:2], (1, 1, 1, 1), vertex_colors=depth_colors(plane), lit=False)
    row = renderer.render_view(ImageCamera(64, 48), [draw], (0, 0, 0, 1))[24, 3:61, 0].astype(int)
    assert (np.diff(row) >= 0).all() and row[-1] - row[0] > 200


@pytest.fixture(scope="module")
def frontal_face(morphable):
    params = morphable.stats.mean.astype(np.float64).copy()
    params[:12] = (np.array([[1, 0, 0, 60], [0, 1, 0, 60], [0, 0, 1, 0]]) * np.array([[5e-4] * 3 + [1]] * 3)).reshape(-1)
    params[12:] = 0.0
    return SimpleNamespace(params=params.astype(np.float32), roi_box=np.array([0.0, 0.0, 480.0, 480.0]), track_id=0)


@pytest.mark.gui
def test_pncc_colours_match_ncc_code_at_visible_vertices(morphable, assets_dir, frontal_face, renderer_factory):
    renderer_factory(8, 8)  # skips here when there is no headless GL
    drawer = MapDrawer("pncc", morphable, 120, 480, 480, str(assets_dir))
    try:
        image = drawer.draw(np.zeros((480, 480, 3), np.uint8), [frontal_face])
        vertices = drawer.meshes([frontal_face], 480, 480)[0].vertices_image
    finally:
        drawer.close()
    code = load_ncc_code(str(assets_dir))
    # vertices on surface patches facing the camera (no steep slope within a pixel, nothing in front of them on
    # a frontal face) in the central face area, away from silhouette edges
    from realtime.render.scene import vertex_normals

    normals = vertex_normals(vertices, morphable.display_triangles)
    centre = (np.abs(vertices[:, 0] - 240) < 100) & (np.abs(vertices[:, 1] - 240) < 120) & (np.abs(normals[:, 2]) > 0.97)
    chosen = np.flatnonzero(centre)[:: max(1, centre.sum() // 60)]
    assert len(chosen) >= 50
    pixels = image[np.round(vertices[chosen, 1]).astype(int), np.round(vertices[chosen, 0]).astype(int)][:, ::-1]  # RGB
    expected = code[chosen] * 255
    # neighbouring vertices' codes differ by ~1/300: the rasterised colour is the code within a few levels
    assert np.abs(pixels.astype(float) - expected).max() < 6
    assert image[5, 5].max() == 0  # no face, black


@pytest.mark.gui
def test_depth_map_of_a_face_is_brightest_at_the_nose(morphable, frontal_face, renderer_factory):
    renderer_factory(8, 8)
    drawer = MapDrawer("depth", morphable, 120, 480, 480)
    try:
        image = drawer.draw(np.zeros((480, 480, 3), np.uint8), [frontal_face])
        vertices = drawer.meshes([frontal_face], 480, 480)[0].vertices_image
    finally:
        drawer.close()
    nose = vertices[np.argmax(vertices[:, 2])]
    brightest = np.unravel_index(np.argmax(image[:, :, 0]), image.shape[:2])
    assert image[int(round(nose[1])), int(round(nose[0]))].min() >= 250
    assert np.hypot(brightest[0] - nose[1], brightest[1] - nose[0]) < 10
    # cheeks (further back than the nose) are darker than the nose but lit, the background black
    cheek = vertices[np.argmin(np.abs(vertices[:, 0] - (nose[0] - 80)) + np.abs(vertices[:, 1] - nose[1]))]
    assert 0 < image[int(round(cheek[1])), int(round(cheek[0])), 0] < 230
    assert image[2, 2].max() == 0
