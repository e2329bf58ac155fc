"""glace_ros.pipeline: the ROS-free relocalization pipeline (statistics, device, global descriptor modes)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glace_core.encoder_registry import resolve_encoder
from glace_core.head import GlaceHead
from glace_core.r2former import R2FormerDescriptor
from glace_ros.pipeline import (PipelineError, RansacOptions, RelocalizationPipeline, reprojection_statistics,
                                resolve_device)


def _grid_points(pose: np.ndarray, K: np.ndarray, h: int, w: int, depth: np.ndarray, stride: int = 8) -> np.ndarray:
    """World points (3, h, w) seen at the cell centres (stride·x + stride/2) at ``depth`` (h, w)."""
    ys, xs = np.mgrid[0:h, 0:w]
    u, v = xs * stride + stride / 2, ys * stride + stride / 2
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth])
    return (pose[:3, :3] @ cam.reshape(3, -1) + pose[:3, 3:4]).reshape(3, h, w).astype(np.float32)


def test_reprojection_statistics_exact_and_with_outliers():
    rng = np.random.default_rng(0)
    pose = np.eye(4)
    pose[:3, 3] = [0.3, -0.2, 1.0]
    K = np.array([[100.0, 0, 64], [0, 110.0, 48], [0, 0, 1]])
    depth = rng.uniform(2.0, 4.0, (12, 16))
    sc = _grid_points(pose, K, 12, 16, depth)
    n, valid, err, med = reprojection_statistics(sc, pose, K, threshold=1.0)
    assert (n, valid) == (192, 192) and err < 1e-3 and med == pytest.approx(np.median(depth), rel=1e-5)
    sc[:, :6] += 5.0  # 96 cells far off
    sc[0, 11, 15] = np.nan  # one invalid cell
    n, valid, err, _ = reprojection_statistics(sc, pose, K, threshold=1.0)
    assert valid == 191 and n == 95 and err < 1e-3
    with pytest.raises(ValueError, match="scene_coordinates"):
        reprojection_statistics(sc[:2], pose, K, 1.0)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_load_errors_name_the_file(tmp_path):
    from glace_core.map_files import MapFileError

    with pytest.raises(FileNotFoundError, match="map_path is not set"):
        RelocalizationPipeline.load("", device="cpu")
    missing = tmp_path / "no_map.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        RelocalizationPipeline.load(missing, device="cpu")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage" * 100)
    with pytest.raises(MapFileError, match=str(corrupt)):
        RelocalizationPipeline.load(corrupt, device="cpu")


@pytest.fixture(scope="module")
def global_pipeline():
    """A real (random) XFeat-width head with 256-d global input and a small R2Former."""
    torch.manual_seed(0)
    encoder = resolve_encoder("xfeat")
    head = GlaceHead(local_channels=encoder.out_channels, global_channels=256, head_channels=32, num_head_blocks=0)
    descriptor = R2FormerDescriptor(resolution=(32, 32))
    return encoder, head, descriptor


def _image(seed=0, h=64, w=80):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8), np.array([[70.0, 0, 40], [0, 70.0, 32], [0, 0, 1]])


@pytest.mark.parametrize("mode,every_n,expected", [("every_frame", 1, [True] * 5),
                                                   ("every_n", 2, [True, False, True, False, True]),
                                                   ("off", 1, [False] * 5)])
def test_global_descriptor_modes(global_pipeline, mode, every_n, expected):
    encoder, head, descriptor = global_pipeline
    pipeline = RelocalizationPipeline(encoder, head, "cpu", descriptor)
    image, K = _image()
    computed, coords = [], []
    for seed in range(5):
        image, _ = _image(seed)
        r = pipeline.localize(image, K, image_resolution=64, global_mode=mode, global_every_n=every_n,
                              ransac=RansacOptions(hypotheses=8))
        computed.append(r.global_computed)
        coords.append(r.scene_coordinates)
        assert r.scene_coordinates.shape == (3, 8, 10) and r.scene_coordinates.dtype == np.float32
        assert set(r.timings) >= {"preprocess", "global", "network", "ransac", "total"}
    assert computed == expected


def test_global_reuse_gives_the_descriptor_of_the_computed_frame(global_pipeline):
    """every_n reuses the last computed descriptor: frame 1 gets frame 0's, as if it were frame 0's image."""
    encoder, head, descriptor = global_pipeline
    a, K = _image(1)
    b, _ = _image(2)
    reuse = RelocalizationPipeline(encoder, head, "cpu", descriptor)
    reuse.localize(a, K, image_resolution=64, global_mode="every_n", global_every_n=3)
    reused = reuse.localize(b, K, image_resolution=64, global_mode="every_n", global_every_n=3).scene_coordinates
    fresh = RelocalizationPipeline(encoder, head, "cpu", descriptor)
    own = fresh.localize(b, K, image_resolution=64, global_mode="every_frame").scene_coordinates
    with torch.inference_mode():
        g_a = descriptor(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255)
    from glace_core.preprocess import preprocess_image

    tensor, _ = preprocess_image(b, K, resolution=64)
    expected = fresh.predict(tensor, g_a)
    assert np.allclose(reused, expected, atol=1e-5)
    assert not np.allclose(reused, own, atol=1e-3)


def test_zero_global_features_without_a_checkpoint(global_pipeline):
    encoder, head, _ = global_pipeline
    pipeline = RelocalizationPipeline(encoder, head, "cpu", None)
    assert pipeline.zero_global_reason
    image, K = _image()
    r = pipeline.localize(image, K, image_resolution=64)
    from glace_core.preprocess import preprocess_image

    tensor, _ = preprocess_image(image, K, resolution=64)
    assert np.allclose(r.scene_coordinates, pipeline.predict(tensor, torch.zeros(1, 256)), atol=1e-6)
    assert not r.global_computed


def test_bad_inputs_raise_pipeline_errors(global_pipeline):
    encoder, head, _ = global_pipeline
    pipeline = RelocalizationPipeline(encoder, head, "cpu", None)
    image, K = _image()
    with pytest.raises(PipelineError, match="uint8"):
        pipeline.localize(image.astype(np.float32), K)
    with pytest.raises(PipelineError, match="too small"):
        pipeline.localize(image[:4, :4], K)
    bad = K.copy()
    bad[0, 0] = np.nan
    with pytest.raises(PipelineError, match="focal"):
        pipeline.localize(image, bad)
