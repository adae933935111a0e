"""Processing files for use elsewhere: photo folders photo by photo, demo meshes, video records and meshes, the
records schema and the Python API -- on the shared photos and clip with a real backend."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from realtime.file_outputs import PhotoProcessor, process_folder
from realtime.meshio import read_obj, read_ply
from realtime.pipeline import RunningMode
from realtime.records import CSV_COLUMNS, SCHEMA_VERSION, read_records

FOLDER_PHOTOS = {"trump_hillary.jpg": 2, "alex-lacamoire.png": 1, "prnet_trump.jpg": 1}


@pytest.fixture()
def photo_folder(samples_dir, tmp_path):
    """Three shared photos, a corrupt JPEG and a text file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in FOLDER_PHOTOS:
        shutil.copy(samples_dir / "images" / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_folder_is_processed_photo_by_photo_and_skips_what_does_not_decode(make_pipeline, photo_folder, tmp_path):
    out = tmp_path / "out"
    with PhotoProcessor(make_pipeline(running_mode=RunningMode.IMAGE), ("mesh",), "cv") as processor:
        summary = process_folder(processor, photo_folder, out, meshes=("obj",))
    assert sorted(p.name for p, _ in summary.skipped) == ["broken.jpg", "notes.txt"]
    assert all(reason == "not a readable image" for _, reason in summary.skipped)
    assert {photo.source.name: photo.faces for photo in summary.photos} == FOLDER_PHOTOS
    for name, faces in FOLDER_PHOTOS.items():
        stem = name.rsplit(".", 1)[0]
        assert (out / f"{stem}.png").is_file()
        document = json.loads((out / f"{stem}.json").read_text())
        assert document["source"] == str(photo_folder / name) and document["schema_version"] == SCHEMA_VERSION
        assert len(document["faces"]) == faces and all(face["source"] == document["source"] for face in document["faces"])
        assert sorted(p.name for p in out.glob(f"{stem}*.obj")) == [f"{stem}.obj"] + [
            f"{stem}_{k}.obj" for k in range(1, faces)
        ]
    assert not list(out.glob("broken*"))
    # no state between photos: trump_hillary alone in a fresh pipeline gives the same faces as after the others
    with PhotoProcessor(make_pipeline(running_mode=RunningMode.IMAGE), ("mesh",), "cv") as processor:
        processor.process(photo_folder / "trump_hillary.jpg", tmp_path / "alone.png", tmp_path / "alone.json")
    alone = json.loads((tmp_path / "alone.json").read_text())["faces"]
    in_folder = json.loads((out / "trump_hillary.json").read_text())["faces"]
    np.testing.assert_allclose([f["params"] for f in alone], [f["params"] for f in in_folder], rtol=1e-6)


def test_photo_processor_refuses_a_tracking_pipeline(make_pipeline):
    with pytest.raises(ValueError, match="IMAGE-mode"):
        PhotoProcessor(make_pipeline())


@pytest.fixture()
def use_backend(backend, monkeypatch):
    import realtime.cli

    monkeypatch.setattr(realtime.cli, "create_backend", lambda *args, **kwargs: backend)


def test_demo_writes_obj_and_ply_per_face_and_the_maps(use_backend, samples_dir, assets_dir, tmp_path, capsys):
    import main

    out = tmp_path / "demo.png"
    code = main.main(["--assets", str(assets_dir), "demo", str(samples_dir / "images" / "trump_hillary.jpg"), "-o", str(out),
                      "--obj", str(tmp_path / "F.obj"), "--ply", str(tmp_path / "F.ply"), "--texture", "--renderer", "cv",
                      "--render", "mesh,depth,pncc"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    for name in (
        "demo.png",
        "demo_depth.png",
        "demo_pncc.png",
        "demo.json",
        "F.obj",
        "F_1.obj",
        "F.mtl",
        "F_texture.png",
        "F.ply",
        "F_1.ply",
    ):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "F_2.obj").exists()  # two faces, two files
    obj, ply = read_obj(tmp_path / "F_1.obj"), read_ply(tmp_path / "F_1.ply")
    assert obj.vertices.shape == (38365, 3) and obj.triangles.shape == (76073, 3) and obj.uv.shape == (38365, 2)
    np.testing.assert_allclose(ply.vertices, obj.vertices, atol=1e-4)
    np.testing.assert_array_equal(ply.triangles, obj.triangles)
    assert ply.colors is not None and ply.colors.mean() > 20  # sampled from the photo
    # the mesh lies on the face it belongs to: its image-space x range contains the face's landmarks
    document = json.loads((tmp_path / "demo.json").read_text())
    landmarks = np.asarray(document["faces"][1]["landmarks_2d"])
    assert obj.vertices[:, 0].min() < landmarks[:, 0].min() and landmarks[:, 0].max() < obj.vertices[:, 0].max()
    assert document["source_width"] == 1536 and document["source_height"] == 689


def test_demo_folder_mode_names_skipped_files(use_backend, photo_folder, assets_dir, tmp_path, capsys):
    import main

    code = main.main(
        ["--assets", str(assets_dir), "demo", str(photo_folder), "--out-dir", str(tmp_path / "o"), "--renderer", "cv"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"skipped {photo_folder / 'broken.jpg'}: not a readable image" in out
    assert "3 photo(s), 4 face(s)" in out
    assert main.main(["--assets", str(assets_dir), "demo", str(photo_folder), "--obj", "x.obj"]) == 2  # --obj is for one image


def test_video_records_only_csv_and_meshes(use_backend, clip_path, assets_dir, tmp_path, capsys):
    import main

    records, meshes = tmp_path / "r.csv", tmp_path / "meshes"
    code = main.main(["--assets", str(assets_dir), "video", str(clip_path), "--records", str(records), "--records-only",
                      "--mesh-dir", str(meshes), "--mesh-every", "2", "--mesh-format", "ply", "--max-frames", "5",
                      "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert not list(tmp_path.glob("*.mp4")) and not (tmp_path.parent / "out" / "d0_tracked.mp4").exists()
    rows = read_records(records)
    assert (records.read_text().splitlines()[0]).split(",") == list(CSV_COLUMNS)
    assert len(rows) == 5 and {r["schema_version"] for r in rows} == {str(SCHEMA_VERSION)}
    assert {(r["source_width"], r["source_height"], r["source_fps"]) for r in rows} == {("512", "512", "25.0")}
    assert rows[0]["source"] == str(clip_path)
    assert sorted(p.name for p in meshes.iterdir()) == [f"d0_f{k:06d}_t0.ply" for k in (0, 2, 4)]
    assert read_ply(meshes / "d0_f000002_t0.ply").vertices.shape == (38365, 3)


def test_video_depth_render_and_jsonl_records(use_backend, clip_path, assets_dir, tmp_path):
    import cv2

    import main

    output, records = tmp_path / "depth.mp4", tmp_path / "r.jsonl"
    assert main.main(["--assets", str(assets_dir), "video", str(clip_path), "-o", str(output), "--records", str(records),
                      "--render", "depth", "--max-frames", "3", "--no-progress"]) == 0  # fmt: skip
    lines = read_records(records)
    assert len(lines) == 3 and lines[0]["schema_version"] == SCHEMA_VERSION
    assert (lines[0]["source_width"], lines[0]["source_height"], lines[0]["source_fps"]) == (512, 512, 25.0)
    assert np.asarray(lines[0]["pose_matrix_image"]).shape == (4, 4) and len(lines[0]["expression"]) == 10
    capture = cv2.VideoCapture(str(output))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        pytest.skip("no mp4 decoder for the written video")
    # a depth map: black background, grey face (all channels equal up to compression noise)
    assert frame[:20, :20].max() < 20
    face = frame[frame.max(axis=2) > 60]
    assert len(face) > 2000 and np.abs(face.astype(int)[:, 0] - face.astype(int)[:, 1]).mean() < 8


def test_api_image_and_video_modes(backend, samples_dir, assets_dir, tmp_path):
    import cv2

    from realtime.api import FaceTracker, FaceTrackerOptions, RunningMode

    photo = cv2.imread(str(samples_dir / "images" / "trump_hillary.jpg"))
    with FaceTracker(FaceTrackerOptions(assets_dir=str(assets_dir)), backend=backend) as tracker:
        result = tracker.detect(photo)
        assert len(result.faces) == 2 and result.image_size == (1536, 689)
        face = result.faces[0]
        assert face.identity.shape == (40,) and face.expression.shape == (10,) and face.pose.matrix_image.shape == (4, 4)
        # the typed pose reproduces the landmarks: nose tip (landmark 30) depth ordering and position
        assert abs(face.yaw) < 45 and face.pose.quaternion_wxyz.shape == (4,)
        empty = tracker.detect(np.zeros((120, 160, 3), np.uint8))
        assert empty.faces == []  # no face: an empty list, never None
        files = tracker.write_obj(face, tmp_path / "api.obj", photo)
        assert read_obj(files[0]).uv.shape == (38365, 2)
        with pytest.raises(ValueError, match="detect_for_video is for VIDEO mode"):
            tracker.detect_for_video(photo, 0.0)
    with FaceTracker(
        FaceTrackerOptions(running_mode=RunningMode.VIDEO, assets_dir=str(assets_dir)), backend=backend
    ) as tracker:
        assert len(tracker.detect_for_video(photo, 0.0).faces) == 2
        with pytest.raises(ValueError, match="timestamps must increase"):
            tracker.detect_for_video(photo, 0.0)
        with pytest.raises(ValueError, match="detect is for IMAGE mode"):
            tracker.detect(photo)
    with pytest.raises(ValueError, match="result_callback"):
        FaceTrackerOptions(running_mode=RunningMode.LIVE_STREAM)


def test_api_live_stream_calls_back_with_typed_results(backend, samples_dir, assets_dir):
    import threading

    import cv2

    from realtime.api import FaceTracker, FaceTrackerOptions, RunningMode

    photo = cv2.imread(str(samples_dir / "images" / "trump_hillary.jpg"))
    received, done = [], threading.Event()

    def on_result(result, image, timestamp_ms):
        received.append((len(result.faces), image.shape, timestamp_ms, result.faces[0].pose.matrix_image.shape))
        done.set()

    options = FaceTrackerOptions(running_mode=RunningMode.LIVE_STREAM, assets_dir=str(assets_dir), result_callback=on_result)
    with FaceTracker(options, backend=backend) as tracker:
        tracker.detect_async(photo, 40.0)
        assert done.wait(60)
        with pytest.raises(ValueError, match="detect is for IMAGE mode"):
            tracker.detect(photo)
    assert received[0] == (2, photo.shape, 40.0, (4, 4))
