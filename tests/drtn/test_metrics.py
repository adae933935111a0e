"""drtn.metrics on hand-computed cases: NME2D / NME3D (eqs. 29-30), Table I yaw bins, CED and its AUC."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from drtn.metrics import box_size, ced_auc, ced_curve, nme_2d, nme_3d, plot_ced, yaw_bin_table

# Four points on a 4 x 1 box: sqrt(w * h) = 2
TARGET_2D = np.array([[0.0, 4.0, 0.0, 4.0], [0.0, 0.0, 1.0, 1.0]])


def test_box_size():
    np.testing.assert_allclose(box_size(TARGET_2D), [2.0])
    np.testing.assert_allclose(box_size(np.stack([TARGET_2D, 3 * TARGET_2D])), [2.0, 6.0])


def test_nme_2d_hand_computed():
    shift = np.array([[3.0], [4.0]])  # every point 5 px off
    np.testing.assert_allclose(nme_2d(TARGET_2D + shift, TARGET_2D), [2.5])
    pred = TARGET_2D.copy()
    pred[0, 0] += 6.0  # one point 6 px off, three exact: mean 1.5 px, / 2
    np.testing.assert_allclose(nme_2d(pred, TARGET_2D), [0.75])
    # batch, and z rows are ignored by the 2D metric
    with_z = np.stack([np.vstack([pred, [[9, 9, 9, 9]]]), np.vstack([TARGET_2D, [[0, 0, 0, 0]]])])
    target = np.stack([np.vstack([TARGET_2D, [[0, 0, 0, 0]]])] * 2)
    np.testing.assert_allclose(nme_2d(with_z, target), [0.75, 0.0])


def test_nme_normalised_by_target_not_prediction():
    mean_distance = (0 + 36 + 9 + np.hypot(36, 9)) / 4
    np.testing.assert_allclose(nme_2d(TARGET_2D * 10, TARGET_2D), [mean_distance / 2])
    np.testing.assert_allclose(nme_2d(TARGET_2D, TARGET_2D * 10), [mean_distance / 20])


def test_nme_3d_ignores_depth_offset():
    target = np.vstack([TARGET_2D, [[1.0, 2.0, 3.0, 4.0]]])
    pred = target + np.array([[0.0], [0.0], [100.0]])
    np.testing.assert_allclose(nme_3d(pred, target), [0.0], atol=1e-12)
    pred = target + np.array([[0.0], [0.0], [7.0]])
    pred[2, 0] += 4.0  # z errors after alignment: +3, -1, -1, -1 -> mean |.| = 1.5, / 2
    np.testing.assert_allclose(nme_3d(pred, target), [0.75])
    pred = target + np.array([[1.0], [2.0], [3.0]])
    pred[2, 1] += 8.0  # after alignment: xy (1, 2) everywhere, z +6 at point 1 and -2 elsewhere
    expected = (np.sqrt(1 + 4 + 36) + 3 * np.sqrt(1 + 4 + 4)) / 4 / 2
    np.testing.assert_allclose(nme_3d(pred, target), [expected])


@pytest.mark.parametrize(
    "pred, target",
    [(np.zeros((2, 4)), np.zeros((2, 5))), (np.zeros((5, 4)), np.zeros((5, 4))), (np.zeros((1, 2, 4)), np.zeros((2, 2, 4)))],
)
def test_nme_bad_shapes(pred, target):
    with pytest.raises(ValueError, match="shape|differ"):
        nme_2d(pred, target)


def test_nme_3d_needs_z():
    with pytest.raises(ValueError, match=r"\(N, 3, K\)"):
        nme_3d(TARGET_2D, TARGET_2D)


def test_yaw_bins_hand_computed():
    yaw = np.array([10.0, -20.0, 30.0, 45.0, -59.0, 60.0, 75.0, -95.0])
    nme = np.array([1.0, 3.0, 2.0, 2.0, 4.0, 3.0, 10.0, 20.0])
    row = yaw_bin_table(nme, yaw)
    assert row.counts == (3, 3, 2)  # 30 falls in [0, 30], 60 in [30, 60]; |yaw| > 90 counts as large pose
    assert row.as_tuple()[:3] == pytest.approx((2.0, 3.0, 15.0))
    assert row.mean == pytest.approx(20.0 / 3)  # mean of bin means, not of images (5.625)
    assert row.std == pytest.approx(np.std([2.0, 3.0, 15.0]))


def test_yaw_bins_reproduce_table_one():
    """DRTN's AFLW2000-3D row of Table I from its three bin means: mean 3.630, std 0.644."""
    yaw = np.array([10.0, 45.0, 80.0])
    row = yaw_bin_table(np.array([2.861, 3.592, 4.436]) / 100, yaw)
    assert row.format() == "2.861\t3.592\t4.436\t3.630\t0.644"


def test_yaw_bins_empty_bin_is_nan():
    row = yaw_bin_table([1.0, 2.0], [5.0, 40.0])
    assert np.isnan(row.bin_60_90) and np.isnan(row.mean) and row.counts == (1, 1, 0)


def test_yaw_bins_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        yaw_bin_table([1.0, 2.0], [5.0])


def test_ced_monotonic_with_limits():
    rng = np.random.default_rng(0)
    nme = rng.uniform(0.01, 0.09, 500)
    grid, fractions = ced_curve(nme)
    assert grid[0] == 0 and grid[-1] == pytest.approx(0.1)
    assert np.all(np.diff(fractions) >= 0)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    _, hand = ced_curve([0.01, 0.02, 0.02, 0.05], thresholds=[0.0, 0.01, 0.019, 0.02, 0.049, 0.05, 1.0])
    np.testing.assert_allclose(hand, [0, 0.25, 0.25, 0.75, 0.75, 1.0, 1.0])


def test_ced_counts_nan_as_failure():
    _, fractions = ced_curve([0.01, np.nan], thresholds=[1.0])
    assert fractions[0] == 0.5


def test_ced_rejects_bad_grid():
    with pytest.raises(ValueError, match="increasing"):
        ced_curve([0.1], thresholds=[0.2, 0.1])


def test_ced_auc_hand_computed():
    assert ced_auc(np.zeros(10), threshold=0.07) == pytest.approx(1.0)
    assert ced_auc([0.07, 0.5, np.nan], threshold=0.07) == pytest.approx(0.0)
    assert ced_auc([0.035], threshold=0.07) == pytest.approx(0.5)
    assert ced_auc([0.0, 0.035, 1.0], threshold=0.07) == pytest.approx(0.5)
    # agrees with integrating the curve numerically
    rng = np.random.default_rng(1)
    nme = rng.uniform(0, 0.1, 300)
    grid, fractions = ced_curve(nme, np.linspace(0, 0.07, 70001))
    assert ced_auc(nme, 0.07) == pytest.approx(((fractions[1:] + fractions[:-1]) / 2 * np.diff(grid)).sum() / 0.07, abs=1e-4)


def test_plot_ced_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(2)
    path = plot_ced({"DRTN": rng.uniform(0, 0.08, 50), "3DDFA_V2": rng.uniform(0, 0.1, 50)}, tmp_path / "out" / "ced.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drtn_imports_without_matplotlib():
    code = "import sys; sys.modules['matplotlib'] = None; import drtn.metrics, drtn.losses; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
