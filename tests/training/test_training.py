"""Training side: readers, exact label bookkeeping through crops / profiling, the loop, resume, NaN guard."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from drtn import crop
from drtn.params import pose_angles_degrees
from training.augment import AugmentConfig, make_batch
from training.corpus import Corpus, build_corpus
from training.datasets import FLIP_68, load_corpus, load_landmark_csv, load_pts_folder, read_mat_sample, read_pts
from training.geometry import pose_to_crop, pose_to_image
from training.labels import FitConfig, LabelSet, make_labels, mirror_landmarks
from training.profiling import profile_face
from training.teacher import peer_predictor
from training.trainer import TrainConfig, Trainer, TrainingDiverged, learning_rate_at


@pytest.fixture(scope="module")
def tiny_labels(shared_dir, morphable):
    samples = load_pts_folder(shared_dir / "data/300w/helen_trainset", "helen", "train")[:6]
    samples += [
        dataclasses.replace(s, split="val_helen")
        for s in load_pts_folder(shared_dir / "data/300w/helen_testset", "helen_test", "val_helen")[:2]
    ]
    return make_labels(samples, morphable, peer_predictor(shared_dir / "assets"), FitConfig(steps=300))


@pytest.fixture(scope="module")
def tiny_corpus(tiny_labels, morphable):
    return build_corpus(tiny_labels, morphable, profile_fraction=1.0, seed=1)


def test_read_pts_and_errors(shared_dir, tmp_path):
    pts = sorted((shared_dir / "data/300w/afw").glob("*.pts"))[0]
    assert read_pts(pts).shape == (68, 2)
    bad = tmp_path / "bad.pts"
    bad.write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}\n")
    with pytest.raises(ValueError, match="expected 68 points"):
        read_pts(bad)


def test_csv_readers(shared_dir):
    infant = load_landmark_csv(shared_dir / "data/infanface/labels.csv", shared_dir / "data/infanface", "infanface")
    assert len(infant) > 400 and infant[0].landmarks.shape == (68, 2) and infant[0].image_path.is_file()


def test_corpus_splits_keep_photos_apart(shared_dir):
    samples = load_corpus(shared_dir / "data")
    groups = {}
    for s in samples:
        groups.setdefault(s.group, set()).add(s.split)
    assert all(len(splits) == 1 for splits in groups.values()), "a photo/identity appears in two splits"
    assert {"train", "val_helen", "val_afw"} <= {s.split for s in samples}


def test_300wlp_reader(shared_dir):
    sample = read_mat_sample(shared_dir / "samples/300wlp/IBUG_image_008_1_0.mat")
    assert sample.landmarks.shape == (68, 2) and sample.shape_para.shape == (199,)
    assert abs(sample.yaw_degrees) > 10  # this face is turned


def test_mirror_landmarks_is_an_involution():
    rng = np.random.default_rng(0)
    landmarks = rng.uniform(0, 100, (68, 2))
    assert np.allclose(mirror_landmarks(mirror_landmarks(landmarks, 101), 101), landmarks)
    assert sorted(FLIP_68.tolist()) == list(range(68))


def test_labels_fit_the_annotations(tiny_labels):
    assert np.median(tiny_labels.fit_nme) < 0.03  # 1.4% median on the full corpus
    assert tiny_labels.mirrored.sum() == len(tiny_labels) // 2


def test_label_file_round_trip(tiny_labels, tmp_path):
    tiny_labels.save(tmp_path / "labels.npz")
    again = LabelSet.load(tmp_path / "labels.npz")
    assert np.array_equal(again.params, tiny_labels.params) and list(again.splits) == list(tiny_labels.splits)


def test_pose_moves_exactly_with_the_crop(tiny_labels, morphable):
    params = tiny_labels.params[0].astype(np.float64)
    box = tiny_labels.roi_boxes[0]
    pose_image = pose_to_image(params[:12].reshape(3, 4), box)
    rng = np.random.default_rng(3)
    theta = 0.3
    affine = np.array([[0.7 * np.cos(theta), -0.7 * np.sin(theta), 5.0], [0.7 * np.sin(theta), 0.7 * np.cos(theta), -9.0]])
    new_params = params.copy()
    new_params[:12] = pose_to_crop(pose_image, affine).reshape(12)
    original = crop.model_to_image(morphable.landmarks_model(params[None])[0], box)[:2]
    expected = affine[:, :2] @ original + affine[:, 2:]
    got = crop.model_to_crop(morphable.landmarks_model(new_params[None])[0])[:2]
    assert np.abs(got - expected).max() < 1e-6
    assert rng is not None


def test_profiling_turns_the_face_and_labels_follow(tiny_labels, morphable):
    from training.labels import read_image

    image = read_image(tiny_labels.image_paths[0])
    params = tiny_labels.params[0]
    yaw = pose_angles_degrees(params[None])[0, 0]
    face = profile_face(image, tiny_labels.roi_boxes[0], params, 50.0, morphable)
    assert abs(face.yaw_degrees - (yaw + 50.0)) < 1.0
    projected = crop.model_to_image(morphable.landmarks_model(face.params[None])[0], face.roi_box)[:2].T
    assert np.abs(projected - face.landmarks).max() < 1e-3
    # the rendered face is not the source image pasted: the centre of the canvas changed
    assert face.image.shape == (256, 256, 3) and face.image.std() > 10


def test_augmented_batch_labels_are_exact(tiny_corpus, morphable):
    profiled = np.flatnonzero(tiny_corpus.kinds == "profile")
    assert len(profiled) > 0
    batch = make_batch(tiny_corpus, profiled, seed=7, epoch=3, config=AugmentConfig(rotation_probability=1.0))
    projected = crop.model_to_crop(morphable.landmarks_model(batch.params))[:, :2].transpose(0, 2, 1)
    assert np.abs(projected - batch.landmarks).max() < 1e-2  # generated faces: targets are model landmarks
    again = make_batch(tiny_corpus, profiled, seed=7, epoch=3, config=AugmentConfig(rotation_probability=1.0))
    assert np.array_equal(batch.crops, again.crops)  # deterministic in (seed, epoch, index)
    other = make_batch(tiny_corpus, profiled, seed=7, epoch=4, config=AugmentConfig(rotation_probability=1.0))
    assert not np.array_equal(batch.crops, other.crops)


def test_learning_rate_schedule_matches_the_paper():
    config = TrainConfig(epochs=70, warmup_steps=0)
    assert learning_rate_at(config, 0, 10) == pytest.approx(0.03)
    assert learning_rate_at(config, 300, 10) == pytest.approx(0.02)
    assert learning_rate_at(config, 450, 10) == pytest.approx(0.004)
    assert learning_rate_at(config, 650, 10) == pytest.approx(0.0008)


def test_train_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown key 'lerning_rate'"):
        TrainConfig.from_dict({"lerning_rate": 0.1})


def _tiny_trainer(corpus, morphable, out, **overrides):
    config = TrainConfig(
        batch_size=4, epochs=2, warmup_steps=2, checkpoint_every=2, log_every=1, val_limit=2, threads=1, **overrides
    )
    return Trainer(config, corpus, morphable, out)


def test_resume_is_bit_exact(tiny_corpus, morphable, tmp_path):
    full = _tiny_trainer(tiny_corpus, morphable, tmp_path / "full", max_steps=4)
    full.train()
    first = _tiny_trainer(tiny_corpus, morphable, tmp_path / "half", max_steps=2)
    first.train()
    resumed = _tiny_trainer(tiny_corpus, morphable, tmp_path / "half", max_steps=4)
    resumed.resume(first.checkpoint_path())
    resumed.train()
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after resume"
    assert (tmp_path / "full" / "metrics.jsonl").read_text().count("val_nme") >= 1


def test_nan_guard_names_the_step(tiny_corpus, morphable, tmp_path):
    trainer = _tiny_trainer(tiny_corpus, morphable, tmp_path / "nan", max_steps=3)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="step 0"):
        trainer.train()


def test_corpus_save_load(tiny_corpus, tmp_path):
    tiny_corpus.save(tmp_path / "c")
    again = Corpus.load(tmp_path / "c")
    assert len(again) == len(tiny_corpus) and np.array_equal(again.canvases, tiny_corpus.canvases)
    with pytest.raises(FileNotFoundError, match="no corpus"):
        Corpus.load(tmp_path / "missing")


def test_large_in_plane_rotations_keep_labels_exact(tiny_corpus, morphable):
    rows = np.flatnonzero(tiny_corpus.kinds == "profile")
    rows = np.tile(rows, 8)
    keys = rows + np.repeat(np.arange(8), len(rows) // 8) * len(tiny_corpus)
    batch = make_batch(tiny_corpus, rows, seed=1, epoch=0, config=AugmentConfig(large_rotation_probability=1.0), keys=keys)
    projected = crop.model_to_crop(morphable.landmarks_model(batch.params))[:, :2].transpose(0, 2, 1)
    assert np.abs(projected - batch.landmarks).max() < 1e-2
    eyes = batch.landmarks[:, 42:48].mean(1) - batch.landmarks[:, 36:42].mean(1)
    roll = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    assert np.abs(roll).max() > 90  # some faces turned upside down, not only the +-20 deg jitter
    assert np.abs(pose_angles_degrees(batch.params)[:, 2]).max() > 90  # and the pose label says so


def test_resume_across_sessions_checks_config_and_corpus(tiny_corpus, morphable, tmp_path, caplog):
    """A committed checkpoint resumes in a later session: the same config continues (other folder, same weights as
    one run); another schedule is refused; a rebuilt corpus that differs is said in the log."""
    first = _tiny_trainer(tiny_corpus, morphable, tmp_path / "session1", max_steps=2)
    first.train()
    committed = tmp_path / "committed.pt"
    committed.write_bytes(first.checkpoint_path().read_bytes())
    later = _tiny_trainer(tiny_corpus, morphable, tmp_path / "session2", max_steps=4)
    later.resume(committed)
    assert later.step == 2
    with pytest.raises(ValueError, match=r"another config \(learning_rate=0.03\)"):
        _tiny_trainer(tiny_corpus, morphable, tmp_path / "other", max_steps=4, learning_rate=0.1).resume(committed)
    changed = Corpus.concat([tiny_corpus])
    changed.landmarks = changed.landmarks + 0.5
    assert changed.fingerprint() != tiny_corpus.fingerprint()
    with caplog.at_level(logging.WARNING, logger="training.trainer"):
        _tiny_trainer(changed, morphable, tmp_path / "rebuilt", max_steps=4).resume(committed)
    assert "not bit-exactly" in caplog.text


def test_kind_repeats_multiply_source_repeats(tiny_corpus, morphable, tmp_path):
    plain = _tiny_trainer(tiny_corpus, morphable, tmp_path / "a", max_steps=1)
    weighted = _tiny_trainer(
        tiny_corpus, morphable, tmp_path / "b", max_steps=1, kind_repeats={"real": 3}, source_repeats={"300w": 2}
    )
    train = np.isin(tiny_corpus.splits, ("train",))
    real = train & (tiny_corpus.kinds == "real")
    from_300w = tiny_corpus.sources == "300w"
    expected = int((np.where(real, 3, 1) * np.where(from_300w, 2, 1))[train].sum())
    assert len(plain.train_indices) == int(train.sum())
    assert len(weighted.train_indices) == expected and expected > len(plain.train_indices)
    with pytest.raises(ValueError, match=r"kind_repeats\['real'\]"):
        TrainConfig(kind_repeats={"real": 1.5})


@pytest.mark.parametrize("shift", [0, 4])
def test_mirror_teacher_target_is_mirror_consistent_and_trains(tiny_corpus, morphable, tmp_path, shift):
    """The self-distillation target of a crop's mirror image is the mirror of the crop's target (exact in pose:
    the pose mirror is an involution, and the shifted views are symmetric), and a run with it adds the term to
    the objective."""
    from drtn.mirror import MirrorMap
    from drtn.model import default_weights_path

    with pytest.raises(ValueError, match="mirror_teacher"):
        TrainConfig(mirror_teacher="x.pt")
    with pytest.raises(ValueError, match="one term"):
        TrainConfig(mirror_teacher="x.pt", mirror_teacher_weight=1.0, distill_weight=1.0)
    trainer = _tiny_trainer(
        tiny_corpus,
        morphable,
        tmp_path / "mt",
        max_steps=2,
        mirror_teacher=str(default_weights_path()),
        mirror_teacher_weight=1.0,
        mirror_teacher_shift=shift,
    )
    batch = make_batch(tiny_corpus, np.arange(4), seed=0, epoch=0, config=AugmentConfig())
    images = torch.from_numpy(batch.images)
    target = trainer.mirror_teacher_target(images).double().numpy()
    target_of_flipped = trainer.mirror_teacher_target(torch.flip(images, dims=(3,))).double().numpy()
    mirrored = MirrorMap.from_morphable(morphable).mirror(target)
    assert np.allclose(target_of_flipped[:, :12], mirrored[:, :12], atol=1e-3 * np.abs(target[:, :12]).max())
    plain = trainer.stats.denormalize(trainer.mirror_teacher(images)).double().numpy()
    assert np.abs(plain - target)[:, :12].max() > 1e-4  # the average is not the plain prediction
    trainer.train()
    logged = [json.loads(line) for line in (tmp_path / "mt" / "metrics.jsonl").read_text().splitlines()]
    assert any("distill" in record and record["distill"] > 0 for record in logged)


def test_shifted_teacher_views_cut_the_moved_boxes_and_map_back_exactly(morphable):
    """The shifted views are what drtn.crop cuts for the moved ROI boxes (replicated border), and the offset
    maps params predicted on a view back to the crop: the landmarks land where they are in the crop."""
    import cv2

    from training.trainer import shifted_views, view_to_crop_offset

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)
    views = shifted_views(torch.from_numpy(crop.normalize_crops(image[None])), 5)
    assert [offset for offset, _ in views] == [(0, 0), (-5, -5), (-5, 5), (5, -5), (5, 5)]
    for (dx, dy), view in views:
        box = np.array([dx, dy, dx + 120, dy + 120], dtype=np.float64)
        expected = cv2.warpAffine(
            image, crop.image_to_crop_affine(box), (120, 120), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        assert np.array_equal(view.numpy(), crop.normalize_crops(expected[None]))
    assert len(shifted_views(torch.zeros(2, 3, 120, 120), 0)) == 1
    params = morphable.stats.mean[None].astype(np.float64).repeat(2, 0)
    params[1, 3] += 4.0
    in_crop = crop.model_to_crop(morphable.landmarks_model(params))[:, :2]
    for dx, dy in [(3, -7), (-5, 5)]:
        on_view = params - view_to_crop_offset(dx, dy).double().numpy()  # what a perfect model predicts on the view
        in_view = crop.model_to_crop(morphable.landmarks_model(on_view))[:, :2]
        assert np.allclose(in_view, in_crop - np.array([dx, dy])[None, :, None], atol=1e-6)
    with pytest.raises(ValueError, match="mirror_teacher_shift"):
        TrainConfig(mirror_teacher_shift=3)
    with pytest.raises(ValueError, match="mirror_teacher_shift"):
        TrainConfig(mirror_teacher="x.pt", mirror_teacher_weight=1.0, mirror_teacher_shift=-1)


def test_mirror_teacher_in_onnxruntime_gives_the_torch_target(tiny_corpus, morphable, tmp_path):
    """The teacher's ONNX Runtime export (the fast path for ten views per crop) gives the torch target."""
    from drtn.model import default_weights_path

    with pytest.raises(ValueError, match="mirror_teacher_runtime"):
        TrainConfig(mirror_teacher="x.pt", mirror_teacher_weight=1.0, mirror_teacher_runtime="tensorflow")
    targets = []
    for runtime in ("torch", "onnxruntime"):
        trainer = _tiny_trainer(
            tiny_corpus,
            morphable,
            tmp_path / runtime,
            max_steps=1,
            mirror_teacher=str(default_weights_path()),
            mirror_teacher_weight=1.0,
            mirror_teacher_shift=3,
            mirror_teacher_runtime=runtime,
        )
        assert (trainer.teacher_session is not None) == (runtime == "onnxruntime")
        batch = make_batch(tiny_corpus, np.arange(4), seed=0, epoch=0, config=AugmentConfig())
        targets.append(trainer.mirror_teacher_target(torch.from_numpy(batch.images)).double().numpy())
    scale = np.abs(targets[0]).max(axis=0) + 1e-6
    assert np.abs(targets[0] - targets[1]).max() > 0  # two runtimes really ran
    assert (np.abs(targets[0] - targets[1]) / scale).max() < 1e-3
