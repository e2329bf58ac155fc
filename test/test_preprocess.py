"""glace_core.preprocess: torchvision resize semantics, intrinsics scaling, grayscale normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from glace_core.geometry import project
from glace_core.preprocess import (FOCAL_MAX_FACTOR, FOCAL_STEP_PX, MEAN, STD, network_focal, network_resolution,
                                   preprocess_image, resized_shape, scale_intrinsics)


@pytest.mark.parametrize("hw", [(1080, 1920), (968, 1296), (481, 641), (37, 53), (53, 37), (640, 480), (33, 33)])
@pytest.mark.parametrize("resolution", [480, 31])
def test_resized_shape_matches_torchvision(hw, resolution):
    import torchvision.transforms.functional as tvf
    image = Image.new("L", (hw[1], hw[0]))
    out = tvf.resize(image, resolution)
    assert resized_shape(*hw, resolution) == (out.height, out.width)


def test_resized_shape_checks():
    assert resized_shape(1080, 1920) == (480, 853)
    assert resized_shape(1920, 1080) == (853, 480)
    with pytest.raises(ValueError, match="resolution"):
        resized_shape(10, 10, 0)
    with pytest.raises(ValueError, match="positive"):
        resized_shape(0, 10)


@pytest.mark.parametrize("hw", [(60, 80), (81, 60)])  # landscape and portrait
def test_scaled_K_projects_like_the_resized_image(hw):
    """A 3D point projects to the same relative position in the original and the resized image."""
    h, w = hw
    K = np.array([[70.0, 0, 0.45 * w], [0, 75.0, 0.55 * h], [0, 0, 1]])
    new_hw = resized_shape(h, w, 48)
    K2 = scale_intrinsics(K, (h, w), new_hw)
    sx, sy = new_hw[1] / w, new_hw[0] / h
    np.testing.assert_allclose(K2, [[70 * sx, 0, 0.45 * w * sx], [0, 75 * sy, 0.55 * h * sy], [0, 0, 1]])
    pts = np.array([[0.1, -0.2, 2.0], [-0.3, 0.25, 3.0]])
    px, _ = project(pts, np.eye(4), K)
    px2, _ = project(pts, np.eye(4), K2)
    np.testing.assert_allclose(px2 / [new_hw[1], new_hw[0]], px / [w, h], atol=1e-12)
    if h > w:  # portrait: the width is the short side, so the height ratio (the reference's) is wrong
        assert new_hw == (64, 48) and K2[0, 0] == pytest.approx(70 * 48 / 60) != 70 * 48 / 81


def test_preprocess_matches_the_reference_pipeline():
    """PIL RGB → torchvision resize (bilinear) → PIL 'L' → /255 → normalise(0.4, 0.25)."""
    import torchvision.transforms.functional as tvf
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(45, 70, 3), dtype=np.uint8)
    K = np.array([[50.0, 0, 35], [0, 50.0, 22.5], [0, 0, 1]])
    tensor, K2 = preprocess_image(rgb, K, resolution=30)
    ref = tvf.to_grayscale(tvf.resize(Image.fromarray(rgb), 30))
    ref = tvf.normalize(tvf.to_tensor(ref), [MEAN], [STD])
    assert tensor.shape == (1, 1, 30, 46) and tensor.dtype == torch.float32
    torch.testing.assert_close(tensor[0], ref, rtol=0, atol=1e-6)
    assert K2.dtype == np.float64
    np.testing.assert_allclose(K2[0], np.array([50.0, 0, 35]) * 46 / 70)
    np.testing.assert_allclose(K2[1], np.array([0, 50.0, 22.5]) * 30 / 45)


def test_gray_uint16_rgba_inputs():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(20, 30), dtype=np.uint8)
    K = np.array([[20.0, 0, 15], [0, 20.0, 10], [0, 0, 1]])
    t_gray, _ = preprocess_image(gray, K, resolution=20)  # no resize: exact values
    np.testing.assert_allclose(t_gray[0, 0].numpy(), (gray / 255.0 - MEAN) / STD, atol=1e-6)
    t_rgb, _ = preprocess_image(np.repeat(gray[:, :, None], 3, 2), K, resolution=20)
    torch.testing.assert_close(t_rgb, t_gray)  # gray as RGB gives the same 'L'
    t16, _ = preprocess_image(gray.astype(np.uint16) * 257, K, resolution=20)
    torch.testing.assert_close(t16, t_gray)
    rgba = np.concatenate([np.repeat(gray[:, :, None], 3, 2), np.zeros((20, 30, 1), np.uint8)], 2)
    torch.testing.assert_close(preprocess_image(rgba, K, resolution=20)[0], t_gray)
    torch.testing.assert_close(preprocess_image(gray[:, :, None], K, resolution=20)[0], t_gray)


@pytest.mark.parametrize("image, K, match", [
    (np.zeros((10, 10), np.float32), np.eye(3), "uint8 or uint16"),
    (np.zeros((10, 10, 2), np.uint8), np.eye(3), "shape"),
    (np.zeros((2, 10, 10, 3), np.uint8), np.eye(3), "shape"),
    (np.zeros((0, 10), np.uint8), np.eye(3), "empty"),
    (np.zeros((10, 10), np.uint8), np.eye(4), r"\(3, 3\)"),
    (np.zeros((10, 10), np.uint8), np.diag([np.nan, 1, 1]), "NaN"),
    (np.zeros((10, 10), np.uint8), np.diag([-5.0, 5, 1]), "positive focal"),
])
def test_bad_inputs_raise(image, K, match):
    with pytest.raises(ValueError, match=match):
        preprocess_image(image, K, resolution=8)


def _K(f, h, w):
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])


def test_network_focal_follows_the_resize():
    assert network_focal(_K(525.0, 480, 640), 480, 640, 480) == pytest.approx(525.0)
    # a 1080p camera of the same field of view: the same focal length at network resolution
    assert network_focal(_K(525.0 * 2.25, 1080, 1440), 1080, 1440, 480) == pytest.approx(525.0)
    # portrait: the shorter side (the width) becomes 480
    assert network_focal(_K(380.0, 640, 480), 640, 480, 480) == pytest.approx(380.0)


def test_network_resolution_matches_the_focal_length_of_the_map():
    # the hard scenes' other camera: 380 px against the map's 525 -> 480 * 525 / 380 = 663, in steps of 32
    res = network_resolution(_K(380.0, 640, 480), 640, 480, 480, 525.0)
    assert res == 672 and res % FOCAL_STEP_PX == 0
    assert network_focal(_K(380.0, 640, 480), 640, 480, res) == pytest.approx(525.0, rel=FOCAL_STEP_PX / 2 / 663)
    # a longer focal length shrinks the input
    assert network_resolution(_K(1050.0, 480, 640), 480, 640, 480, 525.0) == 256  # 240, within 2x, to 32 px
    # the same camera, one within the dead band, another resolution of the same view, or no map focal:
    # the map's resolution, exactly
    assert network_resolution(_K(525.0, 480, 640), 480, 640, 480, 525.0) == 480
    assert network_resolution(_K(525.0 * 1.09, 480, 640), 480, 640, 480, 525.0) == 480
    assert network_resolution(_K(525.0 * 2.25, 1080, 1440), 1080, 1440, 480, 525.0) == 480
    assert network_resolution(_K(100.0, 480, 640), 480, 640, 480, None) == 480
    # at most a factor FOCAL_MAX_FACTOR either way
    assert network_resolution(_K(50.0, 480, 640), 480, 640, 480, 525.0) == 480 * FOCAL_MAX_FACTOR
    assert network_resolution(_K(5000.0, 480, 640), 480, 640, 480, 525.0) == 256  # 240 is not a multiple of 32
    assert network_resolution(_K(50.0, 504, 672), 504, 672, 504, 525.0) == 992  # 1024 would exceed 2 x 504
    assert network_resolution(_K(50.0, 12, 16), 12, 16, 12, 525.0) == 12  # no step of 32 within 2x of 12
    with pytest.raises(ValueError, match="focal"):
        network_resolution(_K(525.0, 480, 640), 480, 640, 480, -1.0)
