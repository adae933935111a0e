"""Second data engine: the real large-pose held-out set, pitch + yaw profiling with exact labels, the
robustness changes (eval and training), distillation targets that follow the crop, and the eval tables."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from drtn import crop
from drtn.params import pose_angles_degrees
from training import corruptions as cr
from training import evaluate as ev
from training.augment import CONTEXT_AUGMENTATION, AugmentConfig, make_batch
from training.corpus import ProfilingPlan, build_corpus
from training.datasets import (
    HELDOUT_POSE_SPLIT,
    LARGE_POSE_FILE,
    apply_large_pose_holdout,
    load_corpus,
    load_pts_folder,
    read_large_pose_file,
)
from training.labels import FitConfig, make_labels, read_image
from training.profiling import ProfilePoseConfig, profile_face, sample_profile_pose
from training.teacher import peer_predictor
from training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def labels(shared_dir, morphable):
    samples = load_pts_folder(shared_dir / "data/300w/helen_trainset", "300w/helen_trainset", "train")[:4]
    return make_labels(samples, morphable, peer_predictor(shared_dir / "assets"), FitConfig(steps=300))


@pytest.fixture(scope="module")
def sphere_corpus(labels, morphable):
    plan = ProfilingPlan(fraction=1.0, per_face=2, poses=ProfilePoseConfig())
    return build_corpus(labels, morphable, plan=plan, seed=3)


# ------------------------------------------------------------------------------------ the large-pose set
def test_large_pose_set_is_held_out_by_photo_and_identity(shared_dir):
    definition = read_large_pose_file()
    held = set(definition["groups"])
    samples = load_corpus(shared_dir / "data")
    train_groups = {s.group for s in samples if s.split == "train"}
    assert not held & train_groups, "a photo / identity of the large-pose set is still in training"
    assert {s.split for s in samples if s.group in held} == {HELDOUT_POSE_SPLIT}
    faces = definition["faces"]
    assert len(faces) >= 100
    assert all(f["yaw"] > 30 or f["pitch"] > 25 for f in faces)
    # every face of the set is either from an always-held-out split or from a held-out group
    assert all(f["origin"] != "train" or f["group"] in held for f in faces)
    by_path = {s.image_path.resolve().relative_to((shared_dir / "data").resolve()).as_posix(): s for s in samples}
    assert all(by_path[f["image"]].split != "train" for f in faces)


def test_holdout_applies_to_cached_labels_and_corpora(tmp_path):
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"groups": ["youtube_faces_68/Some_Person"], "faces": []}))
    splits = np.array(["train", "train", "val_helen", "train"])
    groups = np.array(["youtube_faces_68/Some_Person", "youtube_faces_68/Other", "youtube_faces_68/Some_Person", ""])
    assert apply_large_pose_holdout(splits, groups, path).tolist() == [HELDOUT_POSE_SPLIT, "train", "val_helen", "train"]
    assert LARGE_POSE_FILE.is_file()


# ------------------------------------------------------------------------------------ pitch + yaw profiling
def test_pitch_and_yaw_profiles_have_exact_labels(labels, morphable):
    image = read_image(labels.image_paths[0])
    params = labels.params[0]
    yaw0, pitch0, _ = pose_angles_degrees(params[None].astype(np.float64))[0]
    for d_yaw, d_pitch in ((0.0, 35.0), (0.0, -40.0), (40.0, 25.0)):
        face = profile_face(image, labels.roi_boxes[0], params, d_yaw, morphable, delta_pitch_degrees=d_pitch)
        assert abs(face.pitch_degrees - (pitch0 + d_pitch)) < 1.0 and abs(face.yaw_degrees - (yaw0 + d_yaw)) < 1.0
        yaw, pitch, _ = pose_angles_degrees(face.params[None].astype(np.float64))[0]
        assert abs(pitch - face.pitch_degrees) < 2.0 and abs(yaw - face.yaw_degrees) < 2.0  # the label says the same
        projected = crop.model_to_image(morphable.landmarks_model(face.params[None])[0], face.roi_box)[:2].T
        assert np.abs(projected - face.landmarks).max() < 1e-3


def test_profile_pose_sampler_covers_the_sphere():
    rng = np.random.default_rng(0)
    config = ProfilePoseConfig()
    poses = np.array([sample_profile_pose(5.0, 3.0, rng, config) for _ in range(600)])
    yaw, pitch = np.abs(poses[:, 0]), np.abs(poses[:, 1])
    assert yaw.max() > 85 and pitch.max() > 40 and pitch.max() <= 45
    assert ((yaw > 25) & (pitch > 15)).mean() > 0.2  # both at once
    assert ((yaw < 10) & (pitch > 20)).mean() > 0.15  # pitch only
    assert (poses[:, 1] > 0).any() and (poses[:, 1] < 0).any()  # up and down
    with pytest.raises(ValueError, match="shares"):
        ProfilePoseConfig(yaw_only=0.8, both=0.5)


def test_several_profiles_per_face_and_exact_batch_labels(sphere_corpus, morphable):
    profiles = np.flatnonzero(sphere_corpus.kinds == "profile")
    assert len(profiles) == 2 * int((sphere_corpus.kinds != "profile").sum())  # 2 per face and per mirror
    assert np.isfinite(sphere_corpus.pitch_degrees).all()
    batch = make_batch(sphere_corpus, profiles, seed=2, epoch=1, config=AugmentConfig(context=CONTEXT_AUGMENTATION))
    projected = crop.model_to_crop(morphable.landmarks_model(batch.params))[:, :2].transpose(0, 2, 1)
    assert np.abs(projected - batch.landmarks).max() < 1e-2  # with the context changes too


def test_corpus_is_the_same_with_worker_processes(labels, morphable, sphere_corpus):
    plan = ProfilingPlan(fraction=1.0, per_face=2, poses=ProfilePoseConfig())
    parallel = build_corpus(labels, morphable, plan=plan, seed=3, workers=2)
    assert np.array_equal(parallel.canvases, sphere_corpus.canvases)
    assert np.array_equal(parallel.pose_canvas, sphere_corpus.pose_canvas)


# ------------------------------------------------------------------------------------ distillation targets
def test_teacher_targets_follow_the_crop_exactly(sphere_corpus, morphable):
    real = np.flatnonzero(sphere_corpus.has_teacher)
    assert (
        len(real) == int(np.isin(sphere_corpus.kinds, ("real", "mirror")).sum())
        and not sphere_corpus.has_teacher[sphere_corpus.kinds == "profile"].any()
    )
    plain = make_batch(sphere_corpus, real, 0, 0, AugmentConfig(enabled=False))
    turned = make_batch(sphere_corpus, real, 5, 2, AugmentConfig(rotation_probability=1.0, large_rotation_probability=1.0))
    # the peer's landmarks move with the crop exactly as the image does: compare in canvas pixels
    for batch in (plain, turned):
        assert np.isfinite(batch.teacher_params).all()
    lm_plain = crop.model_to_crop(morphable.landmarks_model(plain.teacher_params.astype(np.float64)))[:, :2]
    lm_turned = crop.model_to_crop(morphable.landmarks_model(turned.teacher_params.astype(np.float64)))[:, :2]
    # map both back through their label landmarks: the affine between the two crops is fixed by the targets
    for i in range(len(real)):
        a, b = plain.landmarks[i], turned.landmarks[i]
        design = np.hstack([a, np.ones((68, 1))])
        affine, *_ = np.linalg.lstsq(design, b, rcond=None)
        mapped = np.hstack([lm_plain[i].T, np.ones((68, 1))]) @ affine
        assert np.abs(mapped - lm_turned[i].T).max() < 1e-2


def test_distillation_adds_a_term_only_where_weighted(sphere_corpus, morphable, tmp_path):
    corpus = dataclasses.replace(sphere_corpus, yaw_degrees=np.full(len(sphere_corpus), 45.0, np.float32))
    config = TrainConfig(batch_size=4, epochs=1, threads=1, distill_weight=2.0, distill_min_yaw=30.0)
    trainer = Trainer(config, corpus, morphable, tmp_path)
    assert (trainer.distill_rows > 0).sum() == int(corpus.has_teacher.sum())
    rows = np.flatnonzero(corpus.has_teacher)[:4]
    batch = make_batch(corpus, rows, 0, 0, AugmentConfig(enabled=False))
    args = (torch.from_numpy(batch.images), torch.from_numpy(batch.params), torch.from_numpy(batch.landmarks))
    with torch.no_grad():
        base = trainer.loss_terms(*args)
        weighted = trainer.loss_terms(
            *args, torch.from_numpy(batch.teacher_params), torch.from_numpy(trainer.distill_rows[rows])
        )
        none = trainer.loss_terms(*args, torch.from_numpy(batch.teacher_params), torch.zeros(4))
    assert "distill" in weighted and float(weighted["distill"]) > 0
    assert float(weighted["objective"]) == pytest.approx(float(base["objective"]) + 2.0 * float(weighted["distill"]), rel=1e-5)
    assert float(none["objective"]) == pytest.approx(float(base["objective"]))
    no_distill = Trainer(TrainConfig(batch_size=4, epochs=1, threads=1), corpus, morphable, tmp_path / "b")
    assert not no_distill.distill_rows.any()


# ------------------------------------------------------------------------------------ robustness changes
def _face_crop(shared_dir):
    sample = load_pts_folder(shared_dir / "data/300w/afw", "afw", "val_afw")[0]
    box = crop.roi_box_from_landmarks(sample.landmarks)
    image = crop.crop_image(read_image(sample.image_path), box)
    return image, crop.image_to_crop(sample.landmarks.T, box).T


def test_each_robustness_condition_changes_the_crop_where_it_should(shared_dir):
    image, landmarks = _face_crop(shared_dir)
    crops = {name: cr.corrupt_crops(image[None], landmarks[None], name)[0] for name in cr.ROBUSTNESS_CONDITIONS}
    assert np.array_equal(crops["clean"], image)
    for name, out in crops.items():
        assert out.shape == image.shape and out.dtype == np.uint8
        if name != "clean":
            assert np.abs(out.astype(int) - image).mean() > 0.5, f"{name} did not change the crop"
    gray = crops["grayscale"].astype(int)
    assert np.array_equal(gray[..., 0], gray[..., 1])
    eyes = np.round(landmarks[36:48].mean(0)).astype(int)
    mouth = np.round(landmarks[48:68].mean(0)).astype(int)
    assert (crops["occluder over eyes"][eyes[1], eyes[0]] == 40).all() and not (
        crops["occluder over eyes"][mouth[1], mouth[0]] == 40
    ).all()
    assert (crops["occluder over mouth"][mouth[1], mouth[0]] == 40).all()
    nose = np.round(landmarks[30]).astype(int)
    assert np.array_equal(crops["background replaced"][nose[1], nose[0]], image[nose[1], nose[0]])  # the face stays
    assert not np.array_equal(crops["background replaced"][2, 2], image[2, 2])  # the corner is new
    cut = crops["cut at the forehead"]
    assert (cut[0] == 0).all() and np.array_equal(cut[nose[1]], image[nose[1]])  # top rows gone, face kept
    assert np.array_equal(
        cr.corrupt_crops(image[None], landmarks[None], "motion blur 9 px", seed=4),
        cr.corrupt_crops(image[None], landmarks[None], "motion blur 9 px", seed=4),
    )
    with pytest.raises(ValueError, match="unknown condition"):
        cr.corrupt_crops(image[None], landmarks[None], "fog")


def test_robustness_table_puts_every_method_on_the_same_changed_crops(shared_dir, morphable):
    image, landmarks = _face_crop(shared_dir)
    box = np.array([0.0, 0.0, 119.0, 119.0])
    eval_set = ev.EvalSet(
        "toy",
        image[None],
        box[None],
        crop.crop_to_image(np.vstack([landmarks.T, np.zeros((1, 68))]), box)[:2].T[None],
        None,
        np.zeros(1),
        np.zeros(1),
        None,
        np.array(["a.jpg"]),
    )
    seen = []
    method = lambda crops: seen.append(crops.copy()) or np.repeat(morphable.stats.mean[None], len(crops), 0)  # noqa: E731
    results = ev.robustness_results(eval_set, [("m", method)], morphable, ["clean", "grayscale"])
    assert len(seen) == 2 and np.array_equal(seen[0][0], image) and not np.array_equal(seen[1][0], image)
    table = ev.format_robustness_table(eval_set, results)
    assert "| clean |" in table and "| grayscale |" in table and "+0.00" in table
    pooled = ev.robustness_set([eval_set, eval_set])
    assert len(pooled.crops) == 1  # a face of two sets counts once


def test_pitch_and_subset_tables():
    eval_set = ev.EvalSet(
        "toy",
        np.zeros((4, 120, 120, 3), np.uint8),
        np.zeros((4, 4)),
        np.zeros((4, 68, 2)),
        None,
        np.array([10.0, 40.0, 35.0, 5.0]),
        np.array([5.0, 20.0, 30.0, 50.0]),
        np.array(["x", "x", "y", "y"]),
    )
    result = ev.MethodResult("m", np.array([0.01, 0.02, 0.03, 0.05]), None)
    pitch = ev.format_pitch_table(eval_set, [result])
    assert "[0,15] (1)" in pitch and "[25,40] (1)" in pitch and ">40 (1)" in pitch
    assert "| m | 1.00 | 2.00 | 3.00 | 5.00 |" in pitch
    subset = ev.format_subset_table(eval_set, [result])
    assert "| m | 1.50 | 4.00 |" in subset


def test_eval_set_cache_round_trip(tmp_path):
    made = []
    eval_set = ev.EvalSet(
        "val_pose",
        np.ones((2, 120, 120, 3), np.uint8),
        np.zeros((2, 4)),
        np.zeros((2, 68, 2)),
        None,
        np.array([31.0, 40.0]),
        np.array([3.0, 30.0]),
        np.array(["AFW", "HELEN test"]),
        np.array(["a", "b"]),
    )
    make = lambda: made.append(1) or eval_set  # noqa: E731
    first = ev.cached_eval_set(tmp_path, "k", make)
    again = ev.cached_eval_set(tmp_path, "k", make)
    assert len(made) == 1 and again.name == "val_pose" and again.landmarks_3d is None
    assert np.array_equal(again.crops, first.crops) and again.tags.tolist() == ["AFW", "HELEN test"]
    assert np.array_equal(again.pitch_degrees, eval_set.pitch_degrees)


# ------------------------------------------------------------------------------------ packing for a GPU machine
def test_pack_fits_the_limit_keeps_validation_and_exact_labels(sphere_corpus, tmp_path):
    from training.pack import pack_corpus, summary_of, unpack_corpus

    val = np.flatnonzero(sphere_corpus.kinds == "real")[:2]
    splits = sphere_corpus.splits.astype("<U12")
    splits[val] = "val_helen"
    splits[val + 1] = "val_helen"  # a profile row of a validation face: training never reads it
    corpus = dataclasses.replace(sphere_corpus, splits=splits)
    full = pack_corpus(corpus, tmp_path / "full.npz")
    assert full["dropped_train_rows"] == 0 and full["rows"] == int((splits == "train").sum()) + 2
    limit = int(full["bytes"] * 0.6)
    small = pack_corpus(corpus, tmp_path / "small.npz", max_bytes=limit)
    assert (
        small["bytes"] <= limit
        and small["dropped_train_rows"] > 0
        and summary_of(tmp_path / "small.npz")["rows"] == small["rows"]
    )
    back = unpack_corpus(tmp_path / "small.npz")
    assert (back.splits == "val_helen").sum() == 2 and (back.kinds[back.splits == "val_helen"] == "real").all()  # kept
    pack_corpus(corpus, tmp_path / "all.npz", val_split=None)
    whole = unpack_corpus(tmp_path / "all.npz")
    assert np.array_equal(whole.pose_canvas, corpus.pose_canvas) and np.array_equal(whole.landmarks, corpus.landmarks)
    assert np.array_equal(whole.kinds, corpus.kinds) and np.allclose(
        whole.teacher_shapes, corpus.teacher_shapes, equal_nan=True
    )
    assert np.abs(whole.canvases.astype(int) - corpus.canvases).mean() < 6  # JPEG q65
    with pytest.raises(FileNotFoundError, match="packed corpus not found"):
        unpack_corpus(tmp_path / "missing.npz")


def test_gpu_config_trains_two_steps_from_a_pack_on_cpu(sphere_corpus, assets_dir, tmp_path):
    """The GPU script's training call (training/gpu_run.sh train) on CPU: packed corpus, wide model, loader processes."""
    import subprocess
    import sys
    from pathlib import Path

    from training.pack import pack_corpus

    repo = Path(__file__).resolve().parents[2]
    corpus = dataclasses.replace(
        sphere_corpus, splits=np.where(np.arange(len(sphere_corpus)) < 2, "val_helen", sphere_corpus.splits)
    )
    pack_corpus(corpus, tmp_path / "pack.npz")
    config = json.loads((repo / "training/configs/gpu_wide.json").read_text())
    config.update(batch_size=4, warmup_steps=1)
    (tmp_path / "c.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    command = [
        sys.executable,
        str(repo / "main.py"),
        "--assets",
        str(assets_dir),
        "train",
        "--packed",
        str(tmp_path / "pack.npz"),
        "--config",
        str(tmp_path / "c.json"),
        "--device",
        "cpu",
        "--loader-workers",
        "2",
        "--max-steps",
        "2",
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, cwd=repo, capture_output=True, timeout=600)
    from drtn.model.io import read_checkpoint

    state = read_checkpoint(out / "last.pt")
    assert state["step"] == 2 and "optimizer" in state and json.loads(state["train_config"])["model"] == "drtn_rt_wide"


def test_loader_processes_give_the_same_training(sphere_corpus, morphable, tmp_path):
    """Batches made ahead in worker processes are the batches of the step: the same weights, so resume stays exact."""
    runs = []
    for workers in (0, 2):
        config = TrainConfig(
            batch_size=4,
            epochs=1,
            warmup_steps=1,
            max_steps=3,
            threads=1,
            val_limit=2,
            loader_workers=workers,
            context_augmentation=True,
        )
        trainer = Trainer(config, sphere_corpus, morphable, tmp_path / f"w{workers}")
        trainer.train()
        runs.append(trainer.model.state_dict())
    for name, value in runs[0].items():
        assert torch.equal(value, runs[1][name]), f"{name} differs with loader processes"


def test_package_can_average_with_the_start_model(tmp_path):
    """--package --average-with: weight x run + (1 - weight) x other, same config only."""
    from drtn.model import create_model, load_model, save_checkpoint
    from training.trainer import package_weights

    torch.manual_seed(0)
    a, b = create_model("drtn_rt"), create_model("drtn_rt")
    save_checkpoint(tmp_path / "a.pt", a, {"step": 3})
    save_checkpoint(tmp_path / "b.pt", b)
    package_weights(tmp_path / "a.pt", tmp_path / "out.pt", average_with=tmp_path / "b.pt", weight=0.2)
    out = load_model(tmp_path / "out.pt").state_dict()
    name = next(k for k, v in a.state_dict().items() if v.is_floating_point() and v.numel() > 10)
    assert torch.allclose(out[name], 0.2 * a.state_dict()[name] + 0.8 * b.state_dict()[name], atol=1e-6)
    assert not torch.allclose(out[name], a.state_dict()[name])
    save_checkpoint(tmp_path / "wide.pt", create_model("drtn_rt_wide"))
    with pytest.raises(ValueError, match="configs differ"):
        package_weights(tmp_path / "a.pt", tmp_path / "x.pt", average_with=tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="average weight"):
        package_weights(tmp_path / "a.pt", tmp_path / "x.pt", average_with=tmp_path / "b.pt", weight=1.5)
