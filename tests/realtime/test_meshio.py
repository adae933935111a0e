"""realtime.meshio: OBJ / PLY export re-imports to the same geometry; the BFM mesh with its UVs and texture."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from realtime.meshio import (
    FaceMesh,
    MeshTopology,
    face_mesh,
    numbered_paths,
    read_obj,
    read_ply,
    sample_texture,
    sample_vertex_colors,
    visible_vertices,  # fmt: skip
    write_obj,
    write_ply,
)


def _tetrahedron() -> FaceMesh:
    vertices = np.array([[0, 0, 0], [10.5, 0, 0], [0, 20.25, 0], [0, 0, -7.125]], dtype=np.float32)
    triangles = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int32)
    uv = np.array([[0, 0], [1, 0], [0, 1], [0.5, 0.5]], dtype=np.float32)
    return FaceMesh(vertices, triangles, uv, (64, 48))


def test_obj_round_trip_keeps_vertices_faces_and_uvs(tmp_path):
    mesh = _tetrahedron()
    texture = np.full((8, 8, 3), (10, 20, 30), np.uint8)
    files = write_obj(tmp_path / "t.obj", mesh, texture)
    assert [f.name for f in files] == ["t.obj", "t.mtl", "t_texture.png"]
    loaded = read_obj(tmp_path / "t.obj")
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-4)
    np.testing.assert_array_equal(loaded.triangles, mesh.triangles)
    np.testing.assert_allclose(loaded.uv, mesh.uv, atol=1e-6)
    assert loaded.texture_path == tmp_path / "t_texture.png"
    text = (tmp_path / "t.obj").read_text()
    assert text.count("\nv ") == 4 and text.count("\nvt ") == 4 and text.count("\nf ") == 4 and "f 1/1 3/3 2/2" in text


def test_ply_round_trip_keeps_vertices_faces_uvs_and_colours(tmp_path):
    mesh = _tetrahedron()
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [7, 8, 9]], np.uint8)
    write_ply(tmp_path / "t.ply", mesh, colors)
    loaded = read_ply(tmp_path / "t.ply")
    np.testing.assert_array_equal(loaded.vertices, mesh.vertices)  # binary float32: exact
    np.testing.assert_array_equal(loaded.triangles, mesh.triangles)
    np.testing.assert_array_equal(loaded.uv, mesh.uv)
    np.testing.assert_array_equal(loaded.colors, colors)
    with pytest.raises(ValueError, match=r"colors_rgb must be \(4, 3\)"):
        write_ply(tmp_path / "bad.ply", mesh, colors[:2])


def test_readers_reject_what_they_cannot_read(tmp_path):
    (tmp_path / "quad.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    with pytest.raises(ValueError, match=r"quad.obj:5: expected a triangle"):
        read_obj(tmp_path / "quad.obj")
    (tmp_path / "range.obj").write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match=r"range.obj:2: index 2 out of range"):
        read_obj(tmp_path / "range.obj")
    (tmp_path / "big.ply").write_text("ply\nformat binary_big_endian 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(ValueError, match="not supported"):
        read_ply(tmp_path / "big.ply")


def test_numbered_paths_one_file_per_face(tmp_path):
    assert [p.name for p in numbered_paths(tmp_path / "F.obj", 3)] == ["F.obj", "F_1.obj", "F_2.obj"]


@pytest.fixture(scope="module")
def topology(morphable, assets_dir):
    return MeshTopology.load(morphable, str(assets_dir))


def _frontal_face(morphable, size: int = 400):
    """A synthetic face result: mean shape, frontal, filling most of a ``size`` square image."""
    params = morphable.stats.mean.astype(np.float64).copy()
    params[:12] = (np.array([[1, 0, 0, 60], [0, 1, 0, 60], [0, 0, 1, 0]]) * np.array([[5e-4] * 3 + [1]] * 3)).reshape(-1)
    params[12:] = 0.0
    return SimpleNamespace(params=params.astype(np.float32), roi_box=np.array([0.0, 0.0, size, size]), track_id=0)


def test_bfm_mesh_has_uvs_for_every_vertex_and_faces_the_viewer(morphable, topology, tmp_path):
    face = _frontal_face(morphable)
    mesh = face_mesh(morphable, face, 120, (400, 400), topology)
    assert mesh.vertices.shape == (38365, 3) and mesh.triangles.shape == (76073, 3) and mesh.uv.shape == (38365, 2)
    assert 0 <= mesh.uv.min() and mesh.uv.max() <= 1
    a, b, c = (mesh.vertices[mesh.triangles[:, k]].astype(np.float64) for k in range(3))
    normals = np.cross(b - a, c - a)
    assert (normals[:, 2] > 0).mean() > 0.9  # counter-clockwise from the front in the y-up mesh frame
    # the mesh frame is the image flipped up: the nose tip (nearest point) is near the image centre, forehead up
    nose = mesh.vertices[np.argmax(mesh.vertices[:, 2])]
    assert abs(nose[0] - 200) < 20 and abs(nose[1] - 200) < 40
    np.testing.assert_allclose(mesh.vertices_image[:, 1], 400 - mesh.vertices[:, 1], atol=1e-3)
    files = write_obj(tmp_path / "face.obj", mesh)
    loaded = read_obj(files[0])
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-4)
    np.testing.assert_array_equal(loaded.triangles, mesh.triangles)
    assert loaded.uv.shape == (38365, 2) and np.isfinite(loaded.uv).all()


def test_texture_and_vertex_colours_sample_the_photo(morphable, topology):
    face = _frontal_face(morphable)
    mesh = face_mesh(morphable, face, 120, (400, 400), topology)
    photo = np.zeros((400, 400, 3), np.uint8)
    photo[:, :200] = (0, 0, 255)  # left half red (BGR), right half green
    photo[:, 200:] = (0, 255, 0)
    colors = sample_vertex_colors(photo, mesh, visibility=False)
    left = mesh.vertices_image[:, 0] < 190
    right = mesh.vertices_image[:, 0] > 210
    assert (colors[left] == [255, 0, 0]).all() and (colors[right] == [0, 255, 0]).all()  # RGB
    texture = sample_texture(photo, mesh, topology, size=128, visibility=False)
    covered, _ = topology.texel_map(128)
    covered = covered.reshape(128, 128) >= 0
    assert covered.mean() > 0.5
    assert (texture[covered].max(axis=1) > 0).mean() > 0.99  # every covered texel took a colour from the photo
    assert (texture[~covered] == 0).all()
    # BFM UVs wrap the face left to right: the subject's right cheek (image left, red) is on one side of the map
    red = (texture[:, :, 2] > 200) & covered
    green = (texture[:, :, 1] > 200) & covered
    assert red.sum() > 100 and green.sum() > 100
    assert np.nonzero(red)[1].mean() != pytest.approx(np.nonzero(green)[1].mean(), abs=10)


def test_turned_face_hides_its_far_side(morphable, topology):
    """Frontal: almost every vertex is seen. Turned 60 degrees: the far cheek is hidden (and sampled black),
    the near cheek and the nose tip stay visible."""
    from drtn.params import compose_pose, euler_to_rotation

    face = _frontal_face(morphable)
    frontal = visible_vertices(face_mesh(morphable, face, 120, (400, 400), topology))
    assert frontal.mean() > 0.85  # the rest: grazing sides under the chin and by the ears
    params = face.params.astype(np.float64).copy()
    params[:12] = compose_pose(5e-4, euler_to_rotation(0.0, np.radians(60), 0.0), np.array([[60.0, 60.0, 0.0]]))[0].reshape(-1)
    turned = face_mesh(morphable, SimpleNamespace(params=params, roi_box=face.roi_box, track_id=0), 120, (400, 400), topology)
    seen = visible_vertices(turned)
    model_x = morphable.display_mean[:, 0] - morphable.display_mean[:, 0].mean()  # the subject's left/right
    one_side, other_side = seen[model_x > 30000].mean(), seen[model_x < -30000].mean()
    assert min(one_side, other_side) < 0.4 and max(one_side, other_side) > 0.9
    assert seen[np.argmax(turned.vertices[:, 2])]  # the nearest point is visible
    photo = np.full((400, 400, 3), 200, np.uint8)
    colors = sample_vertex_colors(photo, turned)
    assert (colors[~seen] == 0).all() and (colors[seen] == 200).all()
