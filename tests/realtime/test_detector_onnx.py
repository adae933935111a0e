"""The BlazeFace ONNX detector (``teacher/blazeface_320.onnx``): prior-box decoding checked against YuNet and
MediaPipe's BlazeFace on the shared photos, keypoint layout, large faces, bad model files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.detector import MODEL_FILES, DetectorOptions, FaceDetector, _BlazeFaceOnnx, _box_nms


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detectors(assets_dir):
    made = {
        "yunet": FaceDetector(DetectorOptions(model="yunet"), assets_dir),
        "blazeface": FaceDetector(DetectorOptions(model="blazeface", max_input_side_px=0), assets_dir),
        "blazeface-onnx": FaceDetector(DetectorOptions(model="blazeface-onnx"), assets_dir),
    }
    yield made
    for detector in made.values():
        detector.close()


def _image(samples_dir, name):
    image = cv2.imread(str(samples_dir / "images" / name))
    if image is None:
        pytest.skip(f"samples/images/{name} missing")
    return image


@pytest.mark.parametrize("name", ["emma.jpg", "two_people.jpg", "trump_hillary.jpg", "synergynet_sample_1.jpg"])
def test_boxes_agree_with_yunet_and_mediapipe(detectors, samples_dir, name):
    """Every face MediaPipe finds has a blazeface-onnx box with IoU > 0.5; every YuNet face of score > 0.8 one with
    IoU > 0.6 (YuNet's boxes have the same shape: median IoU ~0.89 on the shared photos); no extra faces."""
    image = _image(samples_dir, name)
    found = {model: detector.detect(image) for model, detector in detectors.items()}
    ours = found["blazeface-onnx"]
    assert ours
    for reference, threshold in (("blazeface", 0.5), ("yunet", 0.6)):
        for face in found[reference]:
            if reference == "yunet" and face.score < 0.8:
                continue  # e.g. the blurred bystander behind the first Emma
            best = max(_iou(face.box_xyxy, mine.box_xyxy) for mine in ours)
            assert best > threshold, (name, reference, face.box_xyxy, best)
    # nothing YuNet does not also see (YuNet at its lowest threshold here: no phantom faces)
    for mine in ours:
        assert max(_iou(mine.box_xyxy, face.box_xyxy) for face in found["yunet"]) > 0.5, (name, mine.box_xyxy)


def test_keypoints_are_the_yunet_five_inside_the_box(detectors, samples_dir):
    """Right eye, left eye, nose, right and left mouth corner (the subject's), inside the box, eyes above the
    mouth, and on average within 10 % of the face size of YuNet's points (a turned face here: ~7 %)."""
    image = _image(samples_dir, "trump_hillary.jpg")
    ours, yunet = detectors["blazeface-onnx"].detect(image), detectors["yunet"].detect(image)
    assert len(ours) == 2
    for face in ours:
        points = face.keypoints_xy
        assert points.shape == (5, 2)
        x0, y0, x1, y1 = face.box_xyxy
        assert ((points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)).all()
        assert max(points[0, 1], points[1, 1]) < points[2, 1] < min(points[3, 1], points[4, 1])  # eyes, nose, mouth
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # subject's right on the image's left
        other = max(yunet, key=lambda y: _iou(y.box_xyxy, face.box_xyxy))
        size = np.sqrt((x1 - x0) * (y1 - y0))
        assert np.linalg.norm(points - other.keypoints_xy, axis=1).mean() < 0.1 * size


def test_a_close_face_is_found_by_the_native_scale_pass(assets_dir, samples_dir):
    """A face filling most of a 704x612 photo is over the largest prior (149 px) at 640 px; the second pass at
    320 px finds it (and alone, without that pass, the 640 px one does not)."""
    image = _image(samples_dir, "lin-manuel-miranda.png")
    with FaceDetector(DetectorOptions(model="blazeface-onnx"), assets_dir) as detector:
        faces = detector.detect(image)
        assert len(faces) == 1 and faces[0].box_xyxy[2] - faces[0].box_xyxy[0] > 0.3 * image.shape[1]  # ~270 px
        single = detector._impl._candidates(cv2.resize(image, (640, 556), interpolation=cv2.INTER_AREA), 1.0)
        assert len(single[0]) == 0 or single[1].max() < 0.5


def test_prior_boxes_and_decoding(assets_dir):
    """5,600 priors at 320x320 (40x40 cells x 2 sizes + 20x20 x 6), row-major cells, sizes innermost; zero offsets
    decode to the prior box itself."""
    impl = FaceDetector(DetectorOptions(model="blazeface-onnx"), assets_dir)._impl
    priors = impl._priors_for(320, 320)
    assert priors.shape == (5600, 4)
    np.testing.assert_allclose(priors[:3], [[4, 4, 8, 8], [4, 4, 11, 11], [12, 4, 8, 8]])
    np.testing.assert_allclose(priors[3200:3207, 3], [14, 19, 26, 38, 64, 149, 14])
    np.testing.assert_allclose(priors[3206, :2], [24, 8])
    assert impl._priors_for(480, 640).shape == (60 * 80 * 2 + 30 * 40 * 6, 4)
    # an input whose size is no multiple of 32 is padded: the network's outputs match the priors
    boxes, scores, points = impl._candidates(np.full((203, 301, 3), 128, np.uint8), 1.0)
    assert boxes.shape[1:] == (4,) and points.shape[1:] == (5, 2) and len(scores) == len(boxes)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], np.float64)
    assert _box_nms(boxes, 0.4) == [0, 2]
    assert _box_nms(boxes[:0], 0.4) == []


def test_blank_and_tiny_images_have_no_face(detectors):
    detector = detectors["blazeface-onnx"]
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(np.full((720, 1280, 3), 200, np.uint8)) == []
    assert detector.detect(np.zeros((4, 4, 3), np.uint8)) == []
    assert detector.detect(np.zeros((9, 13), np.uint8)) == []  # grayscale, smaller than one cell


def test_options_and_flag_accept_the_model(assets_dir):
    from realtime.arguments import add_pipeline_arguments

    assert DetectorOptions.from_dict({"model": "blazeface-onnx"}).model == "blazeface-onnx"
    import argparse

    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser)
    assert parser.parse_args(["--detector-model", "blazeface-onnx"]).detector_model == "blazeface-onnx"
    assert parser.parse_args([]).detector_model == "yunet"


def _asset_folder_with(tmp_path, assets_dir, content: bytes | None):
    root = tmp_path / "assets"
    target = root / MODEL_FILES["blazeface-onnx"]
    target.parent.mkdir(parents=True)
    if content is not None:
        target.write_bytes(content)
    return root, target


def test_missing_model_file_is_named(tmp_path, assets_dir):
    root, target = _asset_folder_with(tmp_path, assets_dir, None)
    with pytest.raises(FileNotFoundError, match="blazeface_320.onnx"):
        FaceDetector(DetectorOptions(model="blazeface-onnx"), root)


@pytest.mark.parametrize("how", ["random", "empty", "truncated", "another-model"])
def test_corrupt_model_file_is_one_line_naming_it(tmp_path, assets_dir, how):
    real = (assets_dir / MODEL_FILES["blazeface-onnx"]).read_bytes()
    content = {
        "random": np.random.default_rng(1).bytes(3000),
        "empty": b"",
        "truncated": real[: len(real) // 3],
        "another-model": (assets_dir / "teacher" / "3ddfa_v2_mb05_120x120.onnx").read_bytes(),  # loads, wrong outputs
    }[how]
    root, target = _asset_folder_with(tmp_path, assets_dir, content)
    with pytest.raises(ValueError) as caught:
        FaceDetector(DetectorOptions(model="blazeface-onnx"), root)
    message = str(caught.value)
    assert str(target) in message and "\n" not in message and "blazeface-onnx" in message, message


def test_runs_on_one_thread(detectors):
    impl = detectors["blazeface-onnx"]._impl
    assert isinstance(impl, _BlazeFaceOnnx)
    options = impl._session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
