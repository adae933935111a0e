"""Source-weighted epochs, warm start, cosine schedule, and video frames pseudo-labelled by the peer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from drtn import crop
from drtn.model import create_model, save_checkpoint
from training.augment import AugmentConfig, make_batch
from training.corpus import Corpus
from training.teacher import peer_predictor
from training.trainer import TrainConfig, Trainer, learning_rate_at
from training.video_labels import pair_videos, read_records, video_corpus

REPO = Path(__file__).resolve().parents[2]


def _toy_corpus(sources: list[str]) -> Corpus:
    rng = np.random.default_rng(0)
    n = len(sources)
    landmarks = np.tile(
        np.stack(np.meshgrid(np.linspace(50, 110, 17), np.linspace(50, 110, 4)), -1).reshape(-1, 2)[:68], (n, 1, 1)
    )
    pose = np.tile(np.array([[1e-3, 0, 0, 80], [0, 1e-3, 0, 80], [0, 0, 1e-3, 0]], np.float32), (n, 1, 1))
    return Corpus(
        canvases=rng.integers(0, 255, (n, 160, 160, 3), dtype=np.uint8),
        pose_canvas=pose,
        shapes=np.zeros((n, 50), np.float32),
        landmarks=landmarks.astype(np.float32),
        splits=np.array(["train"] * n),
        kinds=np.array(["real"] * n),
        yaw_degrees=np.zeros(n, np.float32),
        sources=np.array(sources),
    )


def test_source_repeats_weight_the_epoch_and_copies_get_their_own_crops(morphable, tmp_path):
    corpus = _toy_corpus(["300w", "youtube_faces_68", "youtube_faces_68", "infanface"])
    config = TrainConfig(batch_size=2, epochs=1, threads=1, source_repeats={"300w": 3, "infanface": 2})
    trainer = Trainer(config, corpus, morphable, tmp_path)
    assert len(trainer.train_indices) == 3 + 1 + 1 + 2 and trainer.steps_per_epoch == 3
    rows, keys = [], []
    for step in range(trainer.steps_per_epoch):
        epoch, r, k = trainer.batch_indices(step)
        assert epoch == 0
        rows += r.tolist()
        keys += k.tolist()
    assert len(set(keys)) == len(keys)  # every visit is a distinct augmentation key
    counts = np.bincount(trainer.train_indices, minlength=4)
    assert counts.tolist() == [3, 1, 1, 2]
    # two copies of one row: same labels' source, different random crops
    batch = make_batch(corpus, np.array([0, 0]), 0, 0, AugmentConfig(), keys=np.array([0, len(corpus)]))
    assert not np.array_equal(batch.crops[0], batch.crops[1])
    with pytest.raises(ValueError, match="source_repeats"):
        TrainConfig(source_repeats={"300w": -1})


def test_cosine_schedule_and_bad_schedule_name():
    config = TrainConfig(epochs=10, warmup_steps=0, schedule="cosine", learning_rate=1.0)
    assert learning_rate_at(config, 0, 10) == pytest.approx(1.0)
    assert learning_rate_at(config, 50, 10) == pytest.approx(0.5)
    assert learning_rate_at(config, 100, 10) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def test_warm_start_loads_the_weights(morphable, tmp_path):
    torch.manual_seed(3)
    source = create_model("drtn_rt")
    for p in source.parameters():
        torch.nn.init.normal_(p, 0, 0.01)
    path = save_checkpoint(tmp_path / "init.pt", source, {})
    trainer = Trainer(
        TrainConfig(batch_size=2, threads=1, init_checkpoint=str(path)), _toy_corpus(["x"] * 4), morphable, tmp_path / "run"
    )
    for (name, a), (_, b) in zip(source.state_dict().items(), trainer.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_read_records_names_the_bad_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"frame_index": 0, "roi_box": [0, 0, 1, 1], "params": [0.0] * 62}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"r.jsonl:2"):
        read_records(path)
    path.write_text(json.dumps({"frame_index": 0, "roi_box": [0, 0, 1], "params": [0.0] * 62}) + "\n")
    with pytest.raises(ValueError, match="roi_box must have 4 values"):
        read_records(path)


def test_video_frames_get_exact_teacher_labels(shared_dir, assets_dir, morphable, tmp_path):
    """The product run with the peer backend writes records; the corpus entries reproduce the peer's landmarks."""
    records_dir = tmp_path / "records"
    video = shared_dir / "samples/video/obama.mp4"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "main.py"),
            "--assets",
            str(assets_dir),
            "video",
            str(video),
            "-o",
            str(tmp_path / "obama.mp4"),
            "--records",
            str(records_dir / "obama.jsonl"),
            "--backend",
            "teacher",
            "--no-smoothing",
            "--max-frames",
            "4",
            "--renderer",
            "cv",
            "--no-progress",
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    pairs = pair_videos(records_dir, [video.parent])
    assert pairs == [(video, records_dir / "obama.jsonl")]
    corpus = video_corpus(pairs, morphable, peer_predictor(assets_dir), every=2)
    assert len(corpus) == 2 and set(corpus.kinds) == {"video"} and set(corpus.sources) == {"video"}
    # labels are exact: the model landmarks of every augmented crop are its target landmarks
    batch = make_batch(corpus, np.arange(len(corpus)), 0, 0, AugmentConfig())
    projected = crop.model_to_crop(morphable.landmarks_model(batch.params))[:, :2].transpose(0, 2, 1)
    assert np.abs(projected - batch.landmarks).max() < 1e-2
    # and the face fills the canvas the way the inference crop policy frames it
    extent = corpus.landmarks.max(1) - corpus.landmarks.min(1)
    assert np.all(extent > 40) and np.all(corpus.landmarks > 0) and np.all(corpus.landmarks < 160)
    with pytest.raises(FileNotFoundError, match="no video"):
        pair_videos(records_dir, [records_dir])
