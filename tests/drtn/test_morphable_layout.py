"""drtn.morphable without torch: the numpy nearest-neighbour layout (exact against brute force), its disk cache,
and the torch classes kept apart in drtn.morphable_torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from drtn.morphable import MorphableModel, nearest_neighbours, on_surface

REPO = Path(__file__).resolve().parents[2]


def brute_force(queries, points):
    return np.linalg.norm(queries[:, None] - points[None], axis=2)


def test_on_surface_matches_brute_force():
    rng = np.random.default_rng(0)
    surface = rng.uniform(-1e5, 1e5, size=(5000, 3))
    queries = np.concatenate([surface[:300] + rng.normal(0, 2000, (300, 3)), rng.uniform(-2e5, 2e5, (300, 3))])
    expected = brute_force(queries, surface).min(axis=1) < 6000.0
    assert 0 < expected.sum() < len(queries)  # both kinds present
    np.testing.assert_array_equal(on_surface(queries, surface, 6000.0), expected)


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(1)
    points, queries = rng.uniform(-1e5, 1e5, (3000, 3)), rng.uniform(-1e5, 1e5, (5000, 3))
    index, distance = nearest_neighbours(queries, points, 4)
    full = brute_force(queries, points)
    expected = np.argsort(full, axis=1)[:, :4]
    assert index.shape == distance.shape == (5000, 4)
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_allclose(distance, np.take_along_axis(full, expected, axis=1), rtol=1e-12)


def test_mesh_layout_is_cached_per_asset_content(assets_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DRTN_CACHE_DIR", str(tmp_path))
    first = MorphableModel.load(str(assets_dir))
    on_face, (neighbours, weights) = first.dense_on_face, first._display_weights
    cached = list((tmp_path / "mesh").glob("layout-*.npz"))
    assert len(cached) == 1 and len(list((tmp_path / "mesh").glob("dense-expression-*.npz"))) == 1
    with np.load(cached[0]) as stored:
        assert set(stored.files) == {"dense_on_face", "display_neighbours", "display_weights"}
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert on_face[neighbours].all()  # display vertices follow on-face dense points only

    import drtn.morphable as morphable_module

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the cache holds the layout")

    monkeypatch.setattr(morphable_module, "on_surface", fail)
    monkeypatch.setattr(morphable_module, "nearest_neighbours", fail)
    monkeypatch.setattr(morphable_module, "interpolate_basis", fail)
    second = MorphableModel.load(str(assets_dir))
    np.testing.assert_array_equal(second.dense.expression, first.dense.expression)
    np.testing.assert_array_equal(second.dense_on_face, on_face)
    np.testing.assert_array_equal(second._display_weights[0], neighbours)


def test_unwritable_cache_only_costs_time(assets_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DRTN_CACHE_DIR", str(blocker))
    model = MorphableModel.load(str(assets_dir))
    assert 3000 < model.dense_on_face.sum() < 4096


def test_morphable_imports_no_torch(assets_dir):
    code = (
        "import sys; from drtn.morphable import MorphableModel; m = MorphableModel.load(sys.argv[1]); "
        "m.dense_triangles; m.display_vertices(m.stats.mean[None]); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(assets_dir)], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_torch_classes_live_apart(morphable):
    torch = pytest.importorskip("torch")
    import drtn.morphable
    from drtn.morphable_torch import TorchMorphable

    assert not hasattr(drtn.morphable, "TorchMorphable") and not hasattr(drtn.morphable, "torch")
    assert isinstance(TorchMorphable(morphable), torch.nn.Module)
