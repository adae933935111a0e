"""The tracking benchmark: exact, seeded ground truth from held-out faces, CLEAR MOT scoring, a tiny real run."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.tracking_bench import GroupStats, Prediction, SceneScorer, markdown, roc_auc
from realtime.tracking_scenes import FaceTruth, SceneFrame, load_held_out_faces, moving_scene, multi_face_scene, standard_scenes


@pytest.fixture(scope="module")
def faces(data_dir):
    return load_held_out_faces(data_dir, 4, seed=0)


def test_faces_come_from_the_held_out_folders_only(data_dir):
    from realtime import tracking_scenes

    assert set(tracking_scenes.HELD_OUT_FOLDERS) == {"300w/helen_testset", "300w/afw"}
    names = {face.name for face in load_held_out_faces(data_dir, 6, seed=1)}
    train = {path.stem for path in (data_dir / "300w" / "helen_trainset").glob("*.pts")}
    assert names and not names & train


def test_scenes_are_seeded_and_the_truth_moves_with_the_pixels(faces):
    a, b = moving_scene(faces[0], 1.5, seed=3, frames=20), moving_scene(faces[0], 1.5, seed=3, frames=20)
    first, again = a.render(10), b.render(10)
    np.testing.assert_array_equal(first.image, again.image)
    start, later = a.render(0), a.render(19)
    moved = np.abs(later.truths[0].landmarks - start.truths[0].landmarks).max()
    assert moved > 10  # the camera moved the face

    def colours(frame, points):
        xy = np.round(points).astype(int)
        return frame.image[xy[:, 1], xy[:, 0]].astype(np.float64)

    # the texture under each landmark travels with it: same colours at the true points, not at shifted ones
    exact = np.abs(colours(start, start.truths[0].landmarks) - colours(later, later.truths[0].landmarks)).mean()
    shifted = np.abs(colours(start, start.truths[0].landmarks) - colours(later, later.truths[0].landmarks + 6)).mean()
    assert exact < 0.5 * shifted


def test_multi_face_scene_has_entries_exits_and_occlusion(faces):
    scene = multi_face_scene(faces[:4], seed=5, frames=60, size=(640, 480))
    visible = np.zeros((60, 4))
    for frame in scene:
        for truth in frame.truths:
            visible[frame.index, truth.face_id] = truth.visible
    assert (visible[0] < 0.5).any() and (visible.max(axis=0) > 0.9).all()  # faces enter
    assert ((visible > 0) & (visible < 0.9)).any()  # partly hidden or cut by the border at times


def _truth(face_id, offset, size=100.0):
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 17), np.linspace(0, 1, 4)), -1).reshape(-1, 2)[:68]
    return FaceTruth(face_id, grid * size + offset, 1.0)


def test_scorer_counts_hits_phantoms_misses_and_id_switches():
    stats = GroupStats()
    scorer = SceneScorer(stats)
    frames = []
    for index in range(4):
        truths = [_truth(0, np.array([10.0 + 5 * index, 10.0])), _truth(1, np.array([300.0, 50.0]))]
        frames.append(SceneFrame(np.zeros((8, 8, 3), np.uint8), truths, index))
    for frame in frames[:3]:  # face 0 tracked exactly by id 7; face 1 missed; a phantom far away
        scorer.add(frame, [Prediction(7, frame.truths[0].landmarks), Prediction(9, frame.truths[0].landmarks + 500)])
    scorer.add(frames[3], [Prediction(8, frames[3].truths[0].landmarks)])  # id changes: a switch
    assert (stats.truths, stats.hits, stats.misses, stats.false_positives, stats.id_switches) == (8, 4, 4, 3, 1)
    assert stats.mota == pytest.approx(1 - (4 + 3 + 1) / 8)
    assert max(stats.nme) == 0.0 and stats.jitter == [0.0] and stats.truth_jitter == [0.0] == stats.error_jitter
    table = markdown({"row": {"multi-640x480": stats}})
    assert "| row | 0.0 | 3 | 4/8 | 1 | 0.00 |" in table


def test_jitter_beyond_the_truth_counts_only_the_error():
    """A face accelerating, followed exactly then with a constant offset: jitter = the truth's, none beyond it;
    noise on the prediction shows in both."""
    frames = [SceneFrame(None, [_truth(0, np.array([10.0 + 2.0 * i * i, 10.0]))], i) for i in range(3)]
    exact, noisy = GroupStats(), GroupStats()
    rng = np.random.default_rng(0)
    exact_scorer, noisy_scorer = SceneScorer(exact), SceneScorer(noisy)
    for frame in frames:
        exact_scorer.add(frame, [Prediction(1, frame.truths[0].landmarks + 3.0)])
        noisy_scorer.add(frame, [Prediction(1, frame.truths[0].landmarks + rng.normal(0, 1.0, (68, 2)))])
    assert exact.jitter == pytest.approx(exact.truth_jitter) and exact.jitter[0] == pytest.approx(0.04)
    assert exact.error_jitter == pytest.approx([0.0], abs=1e-12)
    assert noisy.error_jitter[0] > 0.01
    assert "jitter beyond truth" in markdown({"row": {"moving-slow": noisy}})


def test_roc_auc():
    assert roc_auc([(0.9, True), (0.8, True), (0.1, False)]) == 1.0
    assert roc_auc([(0.1, True), (0.9, False)]) == 0.0
    assert roc_auc([(0.5, True), (0.5, False)]) == 0.5


def test_tiny_benchmark_ours_tracks_and_the_peer_runs(data_dir, backend, morphable, assets_dir):
    """A few short scenes through the real pipeline: accurate landmarks, no phantom tracks."""
    from realtime.detector import DetectorOptions
    from realtime.pipeline import PipelineOptions, RunningMode
    from realtime.tracking_bench import OurTracker, PerFramePeer, run_benchmark

    scenes = [s for s in standard_scenes(data_dir, "tiny") if s.name in ("moving-medium-0", "multi-640x480-0")]
    ours = OurTracker("ours", backend, PipelineOptions(assets_dir=str(assets_dir), compute_dense=False), morphable)
    peer = PerFramePeer(
        "peer",
        backend,
        PipelineOptions(
            running_mode=RunningMode.IMAGE,
            assets_dir=str(assets_dir),
            compute_dense=False,
            detector=DetectorOptions(model="blazeface"),
        ),
        morphable,
    )
    try:
        results = run_benchmark([ours, peer], scenes)
    finally:
        ours.close()
        peer.close()
    moving, multi = results["ours"]["moving-medium"], results["ours"]["multi-640x480"]
    assert moving.hits == moving.truths and np.mean(moving.nme) < 0.08
    assert multi.mota > 0.6 and multi.false_positives <= 3
    assert results["peer"]["moving-medium"].hits > 0


def test_bench_tracking_flag_reaches_the_tracking_benchmark(monkeypatch):
    import main
    from realtime import tracking_bench

    seen = []
    monkeypatch.setattr(tracking_bench, "run_tracking_bench", lambda args: seen.append((args.tiny, args.data)) or 0)
    args = main.build_parser().parse_args(["bench", "--tracking", "--tiny", "--data", "somewhere"])
    assert args.handler(args) == 0 and seen == [(True, "somewhere")]
