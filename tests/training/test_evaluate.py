"""Evaluation: AFLW2000-3D reader + report on a tiny folder made from the 300W-LP sample."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy.io import savemat

from training import evaluate as ev
from training.datasets import mat_image_frame_pose, read_mat_sample
from training.teacher import peer_predictor


@pytest.fixture()
def aflw_folder(shared_dir, morphable, tmp_path):
    """Two AFLW2000-3D-style files whose pt3d_68 are the sample's own 3DMM landmarks."""
    source = shared_dir / "samples/300wlp/IBUG_image_008_1_0.mat"
    sample = read_mat_sample(source)
    pose_image, shape = mat_image_frame_pose(sample, image_height=450)
    vertices = morphable.sparse.vertices(shape[None, :40], shape[None, 40:])[0]
    pt3d = pose_image[:, :3] @ vertices + pose_image[:, 3:]
    for name in ("a", "b"):
        shutil.copy(source.with_suffix(".jpg"), tmp_path / f"{name}.jpg")
        savemat(tmp_path / f"{name}.mat", {"pt3d_68": pt3d, "Pose_Para": sample.pose_para[None]})
    return tmp_path


def test_aflw2000_report(aflw_folder, shared_dir, morphable, tmp_path):
    eval_set = ev.aflw2000_eval_set(aflw_folder)
    assert eval_set.crops.shape == (2, 120, 120, 3) and eval_set.landmarks_3d.shape == (2, 68, 3)
    mean_face = ev.evaluate(eval_set, ev.mean_face_predictor(morphable), morphable, "mean face")
    assert mean_face.nme3d is not None and np.all(mean_face.nme2d > 0.02)  # a turned face: the mean is far off
    # an oracle that predicts the generating params in the crop frame scores ~0
    from drtn import crop
    from training.geometry import pose_to_crop

    sample = read_mat_sample(shared_dir / "samples/300wlp/IBUG_image_008_1_0.mat")
    pose_image, shape = mat_image_frame_pose(sample, 450)
    oracle_params = np.concatenate(
        [pose_to_crop(pose_image, crop.image_to_crop_affine(eval_set.roi_boxes[0])).reshape(12), shape]
    )
    oracle = ev.evaluate(eval_set, lambda crops: np.repeat(oracle_params[None], len(crops), 0), morphable, "oracle")
    assert oracle.nme2d.max() < 1e-6 and oracle.nme3d.max() < 1e-6
    report = ev.write_report([(eval_set, [oracle, mean_face])], tmp_path / "report")
    text = report.read_text()
    assert "| oracle |" in text and "NME3D" in text and (tmp_path / "report" / f"ced_{eval_set.name}.png").is_file()


def test_aflw2000_reader_rejects_landmark_only_files(shared_dir, tmp_path):
    shutil.copy(shared_dir / "samples/300wlp/IBUG_image_008_1_0.jpg", tmp_path / "x.jpg")
    shutil.copy(shared_dir / "samples/300wlp/IBUG_image_008_1_0.mat", tmp_path / "x.mat")
    with pytest.raises(ValueError, match="no pt3d_68"):
        ev.aflw2000_eval_set(tmp_path)


def test_profiled_eval_set_turns_held_out_faces(shared_dir, morphable):
    eval_set = ev.profiled_eval_set(shared_dir / "data", "val_helen", morphable, peer_predictor(shared_dir / "assets"), limit=3)
    assert eval_set.crops.shape == (3, 120, 120, 3) and eval_set.landmarks_3d.shape == (3, 68, 3)
    assert np.all((eval_set.yaw_degrees > 29) & (eval_set.yaw_degrees < 86))
    mean_face = ev.evaluate(eval_set, ev.mean_face_predictor(morphable), morphable, "mean face")
    assert mean_face.nme2d.mean() > 0.08  # turned faces are far from the frontal mean


def test_roll_table_bins_faces_by_in_plane_rotation():
    base = np.zeros((68, 2))
    base[36:42] = [0.0, 0.0]
    base[42:48] = [10.0, 0.0]  # eyes level: roll 0
    turned = []
    for angle in (0.0, 45.0, -100.0, 180.0):
        t = np.radians(angle)
        rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        turned.append(base @ rotation.T)
    landmarks = np.stack(turned)
    np.testing.assert_allclose(np.abs(ev.eye_line_roll_degrees(landmarks)), [0, 45, 100, 180], atol=1e-9)
    eval_set = ev.EvalSet("toy", np.zeros((4, 120, 120, 3), np.uint8), np.zeros((4, 4)), landmarks, None, np.zeros(4))
    table = ev.format_roll_table(eval_set, [ev.MethodResult("m", np.array([0.01, 0.02, 0.03, 0.05]), None)])
    assert "[0,30] (1)" in table and "[30,60] (1)" in table and "[60,180] (2)" in table
    assert "| m | 1.00 | 2.00 | 4.00 |" in table


def test_eval_flip_average_adds_rows_for_ours_and_the_peer(aflw_folder, assets_dir, tmp_path, capsys):
    """``main.py eval --flip-average``: ours and the peer, each plain and mirror-averaged, in one report."""
    from drtn_cli import main

    out = tmp_path / "eval"
    argv = ["eval", "--aflw2000", str(aflw_folder), "--splits", "", "--robustness", "", "--cache", "", "--out", str(out)]
    code = main(argv + ["--flip-average", "--flip-pose", "linear,rotation", "--assets", str(assets_dir)])
    assert code == 0
    text = (out / "report.md").read_text()
    for row in (
        "DRTN (ours)",
        "DRTN (ours) + flip (linear)",
        "DRTN (ours) + flip (rotation)",
        "3DDFA_V2 teacher + flip (linear)",
    ):
        assert f"| {row} |" in text
    assert main(argv + ["--flip-average", "--flip-pose", "slerp", "--assets", str(assets_dir)]) != 0
    assert "--flip-pose" in capsys.readouterr().err
