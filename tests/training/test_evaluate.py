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
    oracle_params = np.concatenate([pose_to_crop(pose_image, crop.image_to_crop_affine(eval_set.roi_boxes[0])).reshape(12), shape])
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
