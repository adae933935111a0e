"""drtn.crop: ROI boxes and the image <-> crop <-> model-frame mappings shared by training and inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drtn.crop import (
    CROP_SIZE,
    crop_image,
    crop_to_image,
    crop_to_image_affine,
    crop_to_model,
    image_to_crop,
    image_to_crop_affine,
    image_to_model,
    model_to_crop,
    model_to_image,
    roi_box_from_detection,
    roi_box_from_landmarks,
)

ROI_BOX = np.array([37.25, 52.5, 97.25, 112.5])  # 60 px square: the crop upsamples by 2


@pytest.fixture()
def rng():
    return np.random.default_rng(7)


def test_roi_box_from_landmarks_side_and_center(rng):
    landmarks = np.stack([rng.uniform(100, 180, 68), rng.uniform(50, 110, 68)], axis=1)
    landmarks[0] = [100, 50]
    landmarks[1] = [180, 110]  # landmark box 80 x 60
    box = roi_box_from_landmarks(landmarks)
    assert box.shape == (4,)
    np.testing.assert_allclose(box[2] - box[0], np.sqrt(2) * 80)
    np.testing.assert_allclose(box[3] - box[1], np.sqrt(2) * 80)
    np.testing.assert_allclose([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], [140, 80])
    batch = roi_box_from_landmarks(np.stack([landmarks, landmarks + 5]))
    assert batch.shape == (2, 4)
    np.testing.assert_allclose(batch[1], box + 5)


def test_roi_box_from_detection_recipe():
    box = roi_box_from_detection(np.array([100.0, 100.0, 200.0, 200.0]))
    np.testing.assert_allclose(box[2] - box[0], 158.0)  # 3DDFA_V2: side * 1.58, centre moved down 0.14 side
    np.testing.assert_allclose((box[1] + box[3]) / 2, 150.0 + 14.0)


def test_affines_are_inverse():
    forward = np.vstack([crop_to_image_affine(ROI_BOX), [0, 0, 1]])
    backward = np.vstack([image_to_crop_affine(ROI_BOX), [0, 0, 1]])
    np.testing.assert_allclose(forward @ backward, np.eye(3), atol=1e-12)
    # the box edges map to the crop's pixel edges [-0.5, size - 0.5] (cv2.resize sampling of the box)
    corners = crop_to_image(np.array([[-0.5, CROP_SIZE - 0.5], [-0.5, CROP_SIZE - 0.5], [0.0, 0.0]]), ROI_BOX)
    np.testing.assert_allclose(corners[:2], [[ROI_BOX[0] - 0.5, ROI_BOX[2] - 0.5], [ROI_BOX[1] - 0.5, ROI_BOX[3] - 0.5]])


def test_image_crop_frame_round_trips(rng):
    points_image = np.vstack([rng.uniform(30, 110, (2, 20)), rng.normal(0, 20, (1, 20))])
    points_crop = image_to_crop(points_image, ROI_BOX)
    np.testing.assert_allclose(crop_to_image(points_crop, ROI_BOX), points_image, atol=1e-10)
    np.testing.assert_allclose(points_crop[2], points_image[2] / 0.5)  # z scales like x, y (2x upsampling)
    points_model = image_to_model(points_image, ROI_BOX)
    np.testing.assert_allclose(model_to_image(points_model, ROI_BOX), points_image, atol=1e-10)
    # 2D points keep two rows
    assert image_to_model(points_image[:2], ROI_BOX).shape == (2, 20)
    np.testing.assert_allclose(image_to_model(points_image[:2], ROI_BOX), points_model[:2], atol=1e-10)


def test_frame_convention_3ddfa():
    """3DDFA: crop x = model x - 1, crop y = size - model y (the model frame's y points up)."""
    model = np.array([[1.0, 61.0], [CROP_SIZE, 60.0], [1.0, 5.0]])
    np.testing.assert_allclose(model_to_crop(model), [[0.0, 60.0], [0.0, 60.0], [0.0, 4.0]])
    np.testing.assert_allclose(crop_to_model(model_to_crop(model)), model)


def test_frame_mapping_torch_matches_numpy(rng):
    batch = rng.normal(60, 30, (4, 3, 68))
    out = model_to_crop(torch.as_tensor(batch))
    assert isinstance(out, torch.Tensor) and out.shape == (4, 3, 68)
    np.testing.assert_allclose(out.numpy(), model_to_crop(batch))
    np.testing.assert_allclose(crop_to_model(out).numpy(), batch)


@pytest.mark.parametrize("dot_xy", [(60.0, 80.0), (83.0, 71.0), (45.0, 100.0)])
def test_crop_image_samples_the_mapped_pixel(dot_xy):
    """A bright blob drawn in the image appears in the crop at image_to_crop of its centre."""
    pytest.importorskip("cv2")
    height, width = 150, 140
    ys, xs = np.mgrid[0:height, 0:width]
    blob = np.exp(-((xs - dot_xy[0]) ** 2 + (ys - dot_xy[1]) ** 2) / (2 * 1.5**2))
    image = np.repeat((blob * 250).astype(np.uint8)[:, :, None], 3, axis=2)
    crop = crop_image(image, ROI_BOX)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    weight = crop[:, :, 0].astype(np.float64)
    cy, cx = (np.mgrid[0:CROP_SIZE, 0:CROP_SIZE] * weight).sum(axis=(1, 2)) / weight.sum()
    expected = image_to_crop(np.array([[dot_xy[0]], [dot_xy[1]]]), ROI_BOX)[:, 0]
    np.testing.assert_allclose([cx, cy], expected, atol=0.15)


def test_crop_image_outside_is_black():
    pytest.importorskip("cv2")
    image = np.full((50, 50), 200, np.uint8)
    crop = crop_image(image, np.array([-50.0, -50.0, 50.0, 50.0]), size=20)
    assert crop.shape == (20, 20)
    assert crop[2, 2] == 0 and crop[17, 17] == 200


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4, 5), (0, 5, 3)])
def test_crop_image_bad_shape(shape):
    pytest.importorskip("cv2")
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        crop_image(np.zeros(shape, np.uint8), ROI_BOX)
