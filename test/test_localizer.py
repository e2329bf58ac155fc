"""glace_core.localizer: the one image -> pose path (options, statistics, global modes, candidate selection)."""
from __future__ import annotations

import math

import copy
import dataclasses
import threading

import dsac_native
import numpy as np
import pytest
import torch
from torch import nn

from glace_core.encoder_registry import resolve_encoder
from glace_core.geometry import cell_centres
from glace_core.head import GlaceHead
from glace_core.localizer import (LocalizationError, Localizer, LocalizerOptions, RansacOptions,
                                  RefinementOptions, reprojection_statistics)
from glace_core.preprocess import preprocess_image
from glace_core.r2former import R2FormerDescriptor


def _grid_points(pose: np.ndarray, K: np.ndarray, h: int, w: int, depth: np.ndarray, stride: int = 8) -> np.ndarray:
    """World points (3, h, w) seen at the cell centres (stride·x + stride/2) at ``depth`` (h, w)."""
    u, v = np.moveaxis(cell_centres(h, w, stride), -1, 0)
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth])
    return (pose[:3, :3] @ cam.reshape(3, -1) + pose[:3, 3:4]).reshape(3, h, w).astype(np.float32)


def test_ransac_defaults_are_the_native_solvers():
    native, ours = dsac_native.Options(), RansacOptions()
    for f in dataclasses.fields(ours):
        assert getattr(ours, f.name) == getattr(native, f.name), f.name
    assert set(ours.solver_kwargs()) == {f.name for f in dataclasses.fields(ours)}
    with pytest.raises(ValueError, match="threshold"):
        RansacOptions(threshold=0)
    with pytest.raises(ValueError, match="hypotheses"):
        RansacOptions(hypotheses=float("nan"))
    with pytest.raises(ValueError, match="confidence"):
        RansacOptions(confidence=1.0)
    with pytest.raises(ValueError, match="max_candidates"):
        RansacOptions(max_candidates=0)
    with pytest.raises(ValueError, match="global_mode"):
        LocalizerOptions(global_mode="sometimes")
    with pytest.raises(ValueError, match="ensemble_candidates"):
        LocalizerOptions(ensemble_candidates=-1)


def test_reprojection_statistics_exact_and_with_outliers():
    rng = np.random.default_rng(0)
    pose = np.eye(4)
    pose[:3, 3] = [0.3, -0.2, 1.0]
    K = np.array([[100.0, 0, 64], [0, 110.0, 48], [0, 0, 1]])
    depth = rng.uniform(2.0, 4.0, (12, 16))
    sc = _grid_points(pose, K, 12, 16, depth)
    s = reprojection_statistics(sc, pose, K, threshold=1.0)
    assert (s["inliers"], s["valid"]) == (192, 192) and s["mean_error_px"] < 1e-3
    assert s["median_depth_m"] == pytest.approx(np.median(depth), rel=1e-5)
    assert s["pixels"].shape == (192, 2) and s["camera_points"].shape == (192, 3)
    sc[:, :6] += 5.0  # 96 cells far off
    sc[0, 11, 15] = np.nan  # one invalid cell
    s = reprojection_statistics(sc, pose, K, threshold=1.0)
    assert s["valid"] == 191 and s["inliers"] == 95 and s["mean_error_px"] < 1e-3
    with pytest.raises(ValueError, match="scene_coordinates"):
        reprojection_statistics(sc[:2], pose, K, 1.0)


def test_load_errors_name_the_file(tmp_path):
    from glace_core.map_files import MapFileError

    with pytest.raises(FileNotFoundError, match="map_path is not set"):
        Localizer.load("", device="cpu")
    missing = tmp_path / "no_map.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        Localizer.load(missing, device="cpu")
    with pytest.raises(FileNotFoundError, match="is a directory"):
        Localizer.load(tmp_path, device="cpu")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage" * 100)
    with pytest.raises(MapFileError, match=str(corrupt)):
        Localizer.load(corrupt, device="cpu")


@pytest.fixture(scope="module")
def global_modules():
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
                                                   ("background", 2, [True, False, False, False, False]),
                                                   ("off", 1, [False] * 5)])
def test_global_descriptor_modes(global_modules, mode, every_n, expected):
    encoder, head, descriptor = global_modules
    localizer = Localizer(encoder, head, "cpu", descriptor, options=LocalizerOptions(
        image_resolution=64, global_mode=mode, global_every_n=every_n, ransac=RansacOptions(hypotheses=8)))
    computed = []
    for seed in range(5):
        image, K = _image(seed)
        r = localizer.localize(image, K)
        computed.append(r.global_computed)
        assert r.scene_coordinates.shape == (3, 8, 10) and r.scene_coordinates.dtype == np.float32
        assert set(r.timings) >= {"preprocess", "global", "ransac", "total"}
    assert computed == expected
    assert localizer.globals.wait(60)


class _BlockingDescriptor(nn.Module):
    """A real R2Former whose forward, once ``block`` is set, says so (``started``) and waits for ``release``
    before computing: a descriptor slower than any number of frames."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.block = False
        self.started, self.release, self.finished = threading.Event(), threading.Event(), threading.Event()
        self.images: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.images.append(images.clone())
        blocked = self.block
        if blocked:
            self.started.set()
            if not self.release.wait(120):
                raise RuntimeError("the test never released the descriptor")
        out = self.inner(images)
        if blocked:
            self.finished.set()
        return out


def test_background_descriptor_never_delays_a_pose(global_modules):
    """Mode "background": while the descriptor is stuck inside forward, frames are still answered
    (with the latest finished descriptor); once it finishes, the next frame uses the new one."""
    encoder, head, descriptor = global_modules
    slow = _BlockingDescriptor(descriptor).eval()
    localizer = Localizer(encoder, head, "cpu", slow, options=LocalizerOptions(
        image_resolution=64, global_mode="background", global_every_n=1, ransac=RansacOptions(hypotheses=8)))
    frames = [_image(seed) for seed in range(6)]

    def with_descriptor_of(i: int, frame: int) -> np.ndarray:
        with torch.inference_mode():
            g = descriptor(torch.from_numpy(frames[frame][0]).permute(2, 0, 1)[None].float() / 255)
        tensor, _ = preprocess_image(frames[i][0], frames[i][1], resolution=64)
        return localizer.predict(tensor, g, 1)[0][1]

    first = localizer.localize(*frames[0])
    assert first.global_computed and len(slow.images) == 1  # the first frame computes its own, once
    slow.block = True
    second = localizer.localize(*frames[1])  # starts the background computation on frame 1's image
    assert not second.global_computed and slow.started.wait(120)
    for i in (2, 3, 4):  # answered while the descriptor is still inside forward
        r = localizer.localize(*frames[i])
        assert localizer.globals.running and not slow.finished.is_set()
        assert not r.global_computed
        assert np.allclose(r.scene_coordinates, with_descriptor_of(i, 0), atol=1e-5)  # frame 0's descriptor
    assert len(slow.images) == 2  # no second computation was queued behind the running one
    slow.release.set()
    assert localizer.globals.wait(120) and slow.finished.is_set()
    r = localizer.localize(*frames[5])
    assert not r.global_computed
    assert np.allclose(r.scene_coordinates, with_descriptor_of(5, 1), atol=1e-5)  # frame 1's, now finished
    assert torch.equal(slow.images[1], torch.from_numpy(frames[1][0]).permute(2, 0, 1)[None].float() / 255)
    assert localizer.globals.wait(120)
    localizer.globals.reset()  # the next frame computes its own descriptor again
    assert localizer.localize(*frames[2]).global_computed


def test_global_reuse_gives_the_descriptor_of_the_computed_frame(global_modules):
    """every_n reuses the last computed descriptor: frame 1 gets frame 0's, as if it were frame 0's image."""
    encoder, head, descriptor = global_modules
    a, K = _image(1)
    b, _ = _image(2)
    every3 = LocalizerOptions(image_resolution=64, global_mode="every_n", global_every_n=3)
    reuse = Localizer(encoder, head, "cpu", descriptor, options=every3)
    reuse.localize(a, K)
    reused = reuse.localize(b, K).scene_coordinates
    fresh = Localizer(encoder, head, "cpu", descriptor, options=LocalizerOptions(image_resolution=64))
    own = fresh.localize(b, K).scene_coordinates
    with torch.inference_mode():
        g_a = descriptor(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255)
    tensor, _ = preprocess_image(b, K, resolution=64)
    assert np.allclose(reused, fresh.predict(tensor, g_a, 1)[0][1], atol=1e-5)
    assert not np.allclose(reused, own, atol=1e-3)
    given = fresh.localize(b, K, global_features=g_a[0].numpy())  # glace-eval's features.npy path
    assert np.allclose(given.scene_coordinates, reused, atol=1e-5) and not given.global_computed


def test_zero_global_features_without_a_descriptor(global_modules):
    encoder, head, _ = global_modules
    localizer = Localizer(encoder, head, "cpu", None, options=LocalizerOptions(image_resolution=64))
    assert localizer.zero_global_reason
    image, K = _image()
    r = localizer.localize(image, K)
    tensor, _ = preprocess_image(image, K, resolution=64)
    assert np.allclose(r.scene_coordinates, localizer.predict(tensor, torch.zeros(1, 256), 1)[0][1], atol=1e-6)
    assert not r.global_computed
    with pytest.raises(LocalizationError, match="width 3"):
        localizer.localize(image, K, global_features=np.zeros(3, np.float32))


def test_bad_inputs_raise_localization_errors(global_modules):
    encoder, head, _ = global_modules
    localizer = Localizer(encoder, head, "cpu", None)
    image, K = _image()
    with pytest.raises(LocalizationError, match="uint8"):
        localizer.localize(image.astype(np.float32), K)
    with pytest.raises(LocalizationError, match="too small"):
        localizer.localize(image[:4, :4], K)
    bad = K.copy()
    bad[0, 0] = np.nan
    with pytest.raises(LocalizationError, match="K"):
        localizer.localize(image, bad)


def _real_and_impostor(tiny_scene):
    """(encoder, the tiny map's real head, an impostor head with random weights, its sidecar, the
    good frame, that frame's routing descriptor (1, D))."""
    from glace_core.head_ensemble import HeadEnsemble, routing_descriptor
    from glace_core.network import load_map

    real = load_map(tiny_scene.map_path)
    encoder = resolve_encoder(tiny_scene.encoder)
    good = real.heads[0] if isinstance(real, HeadEnsemble) else real
    torch.manual_seed(5)
    impostor = copy.deepcopy(good)
    with torch.no_grad():
        for p in impostor.parameters():
            p.normal_(0.0, 0.05)
    frame = tiny_scene.frames[tiny_scene.good_frame]
    tensor, _ = preprocess_image(frame.rgb, frame.K, resolution=tiny_scene.resolution)
    with torch.inference_mode():
        query = routing_descriptor(encoder(tensor))  # (1, D)
    return encoder, good, impostor, getattr(real, "metadata", {}), frame, query


def test_most_inliers_wins_when_the_best_routed_head_is_wrong(tiny_scene):
    """ensemble_fusion "best" (ACE's rule). An ensemble whose best-routed head is an impostor (random weights, routed first for the query)
    and whose second head is the tiny map's real one: RANSAC runs on both, the real head wins with
    more inliers, and its pose is the one the real head gives on its own."""
    from glace_core.head_ensemble import HeadEnsemble

    encoder, good, impostor, metadata, frame, query = _real_and_impostor(tiny_scene)
    descriptors = torch.cat([query, -query])  # frame 0 (the impostor's) is the query itself
    ensemble = HeadEnsemble([impostor, good], descriptors, torch.eye(2, dtype=torch.bool)).eval()
    ensemble.metadata = metadata
    options = LocalizerOptions(image_resolution=tiny_scene.resolution, ensemble_candidates=2, ensemble_fusion="best")
    both = Localizer(encoder, ensemble, "cpu", options=options).localize(frame.rgb, frame.K)
    assert [k for k, _ in both.candidates] == [0, 1], "the impostor must be routed first"
    assert both.success and both.head_index == 1
    assert both.candidates[1][1] > both.candidates[0][1]
    alone = Localizer(encoder, good, "cpu", options=options).localize(frame.rgb, frame.K)
    assert alone.success and both.inlier_count == alone.inlier_count
    assert np.allclose(both.camera_to_world, alone.camera_to_world, atol=1e-9)
    first_only = Localizer(encoder, ensemble, "cpu", options=dataclasses.replace(options, ensemble_candidates=1))
    r = first_only.localize(frame.rgb, frame.K)
    assert r.head_index == 0 and r.inlier_count < both.inlier_count


@pytest.mark.parametrize("early", [0.0, 1.0])
def test_union_fusion_outvotes_the_wrong_head(tiny_scene, early):
    """ensemble_fusion "union": the impostor routed first and the real head second, solved as one
    RANSAC over both heads' cells (every candidate at once with early accept off; after the first
    head fell short of early accept at 1.0), give a pose that fits the real head's cells as well as
    its own pose does, with the real head's statistics; the impostor's cells hardly fit it."""
    from glace_core.head_ensemble import HeadEnsemble

    encoder, good, impostor, metadata, frame, query = _real_and_impostor(tiny_scene)
    ensemble = HeadEnsemble([impostor, good], torch.cat([query, -query]), torch.eye(2, dtype=torch.bool)).eval()
    ensemble.metadata = metadata
    options = LocalizerOptions(image_resolution=tiny_scene.resolution, ensemble_candidates=2, early_accept_ratio=early)
    alone = Localizer(encoder, good, "cpu", options=options).localize(frame.rgb, frame.K)
    union = Localizer(encoder, ensemble, "cpu", options=dataclasses.replace(options, ensemble_fusion="union"))
    fused = union.localize(frame.rgb, frame.K)
    assert fused.success and fused.head_index == 1
    assert [k for k, _ in fused.candidates] == [0, 1] and fused.candidates[1][1] > 4 * fused.candidates[0][1]
    assert fused.inlier_count == fused.statistics["inliers"] == fused.candidates[1][1] <= fused.num_cells
    # the fused pose explains the real head's cells as well as the real head's own pose does
    assert fused.inlier_count >= 0.9 * alone.inlier_count
    assert fused.covariance is not None and fused.timings["ransac"] > 0
    with pytest.raises(ValueError, match="ensemble_fusion"):
        LocalizerOptions(ensemble_fusion="mean")


def test_early_accept_skips_the_other_heads_only_above_its_ratio(tiny_scene):
    """The real head routed first, an impostor second. With the first head's inlier ratio above
    ``early_accept_ratio`` the impostor head never runs (a forward hook counts its calls) and the pose
    is the real head's alone; just above that ratio, or with 0 (off), both run and the real head
    still wins with the same pose (ensemble_fusion "best"; "union" is tested above)."""
    from glace_core.head_ensemble import HeadEnsemble

    encoder, good, impostor, metadata, frame, query = _real_and_impostor(tiny_scene)
    calls = []
    impostor.register_forward_hook(lambda *_: calls.append(1))
    ensemble = HeadEnsemble([good, impostor], torch.cat([query, -query]), torch.eye(2, dtype=torch.bool)).eval()
    ensemble.metadata = metadata
    options = LocalizerOptions(image_resolution=tiny_scene.resolution, ensemble_candidates=2, ensemble_fusion="best")
    alone = Localizer(encoder, good, "cpu", fast_inference=False, options=options).localize(frame.rgb, frame.K)
    assert alone.success
    ratio = alone.inlier_count / alone.num_cells
    assert ratio < 0.95, "the test needs a ratio with room above it"

    def run(early: float):
        calls.clear()
        loc = Localizer(encoder, ensemble, "cpu", fast_inference=False,
                        options=dataclasses.replace(options, early_accept_ratio=early)).localize(frame.rgb, frame.K)
        assert loc.success and loc.head_index == 0
        assert np.allclose(loc.camera_to_world, alone.camera_to_world, atol=1e-9)
        return loc, len(calls)

    accepted, n = run(0.9 * ratio)
    assert n == 0 and [k for k, _ in accepted.candidates] == [0]
    for early in (min(1.0, 1.05 * ratio), 0.0):
        both, n = run(early)
        assert n == 1 and [k for k, _ in both.candidates] == [0, 1], early
    with pytest.raises(ValueError, match="early_accept_ratio"):
        LocalizerOptions(early_accept_ratio=1.5)


def test_load_expands_the_home_folder(tmp_path, monkeypatch):
    from glace_core.map_files import MapFileError

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "map.pt").write_bytes(b"not a map" * 10)
    with pytest.raises(MapFileError, match=str(tmp_path / "map.pt")):  # found (and refused), not "not found"
        Localizer.load("~/map.pt", device="cpu")


def test_max_input_pixels_refuses_extreme_aspect_ratios(global_modules):
    encoder, head, _ = global_modules
    localizer = Localizer(encoder, head, "cpu", None, options=LocalizerOptions(image_resolution=64,
                                                                               max_input_pixels=64 * 128))
    strip = np.zeros((8, 1600), np.uint8)
    K = np.array([[800.0, 0, 800], [0, 800.0, 4], [0, 0, 1]])
    with pytest.raises(LocalizationError, match="max_input_pixels"):
        localizer.localize(strip, K)
    image, K = _image()
    assert localizer.localize(image, K).scene_coordinates.shape == (3, 8, 10)  # 64 x 80 fits


def test_warm_up_builds_every_head_of_an_ensemble(tiny_scene):
    """After warm_up no head graph is built at a later frame (building one stalls that frame)."""
    from glace_core.head_ensemble import HeadEnsemble

    localizer = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu",
                               options=LocalizerOptions(image_resolution=tiny_scene.resolution))
    assert isinstance(localizer.model, HeadEnsemble)
    frame = tiny_scene.frames[0]
    localizer.warm_up(*frame.rgb.shape[:2])
    assert localizer._predictor.built_heads == list(range(len(localizer.model)))


def test_warm_up_once_warms_each_network_input_once(tiny_scene, monkeypatch):
    """A new camera mid-run (another focal length or size) is warmed up at its first frame, once per
    network input size and precision; a camera that gives a size already built is not."""
    import cv2

    localizer = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu")
    frame = tiny_scene.frames[tiny_scene.good_frame]
    h, w = frame.rgb.shape[:2]
    built: list[tuple] = []
    warm_up = Localizer.warm_up
    monkeypatch.setattr(Localizer, "warm_up", lambda self, *a, **k: built.append(a[:2]) or warm_up(self, *a, **k))
    assert localizer.warm_up_once(h, w, frame.K) and not localizer.warm_up_once(h, w, frame.K)
    assert localizer._predictor.built_heads == list(range(len(localizer.model)))
    double = frame.K.copy()
    double[:2] *= 2  # the same view at twice the pixels: the same network input, nothing to build
    assert not localizer.warm_up_once(2 * h, 2 * w, double)
    assert localizer.localize(cv2.resize(frame.rgb, (2 * w, 2 * h)), double).scene_coordinates.shape == \
        localizer.localize(frame.rgb, frame.K).scene_coordinates.shape
    assert localizer.warm_up_once(h, w, _zoomed_K(frame, 1.5))  # focal matching: a smaller network input
    assert not localizer.warm_up_once(h, w, _zoomed_K(frame, 1.5))
    other = localizer.precision() != localizer.precision("fp32")  # "auto" runs bf16 where the CPU has it
    assert localizer.warm_up_once(h, w, frame.K, LocalizerOptions(precision="fp32")) == other  # a new fast path
    assert len(built) == 2 + other
    localizer.refresh_fast_path()  # new weights: everything is built again
    assert localizer.warm_up_once(h, w, frame.K)


def _zoomed_K(frame, factor: float) -> np.ndarray:
    """The frame's intrinsics with the focal length times ``factor`` (the principal point kept)."""
    K = frame.K.copy()
    K[0, 0] *= factor
    K[1, 1] *= factor
    return K


def test_the_trainer_records_the_mapping_focal_length(tiny_scene):
    from glace_core.dataset import SceneSplit
    from glace_core.map_files import read_map_metadata
    from glace_core.preprocess import network_focal

    train = SceneSplit(tiny_scene.root, "train")
    expected = network_focal(train.intrinsics(0), *train.image_size(0), tiny_scene.resolution)
    recorded = read_map_metadata(tiny_scene.map_path)["training"]["network_focal_px"]
    assert recorded == pytest.approx(expected, abs=1e-3)  # one camera: the median is any frame's


def test_the_covariance_knows_how_far_a_pose_is_from_the_mapping_views(tiny_scene, tmp_path):
    """glace-train records the mapping cameras; the Localizer reports a pose's distance from the nearest
    and widens the covariance with it. A map without them (an older map, an official head) assumes the
    calibration's typical distance."""
    import json
    import shutil

    from glace_core.dataset import SceneSplit
    from glace_core.map_files import mapping_poses, read_map_metadata
    from glace_core.pose_covariance import covariance_from_residuals

    train = SceneSplit(tiny_scene.root, "train")
    recorded = mapping_poses(read_map_metadata(tiny_scene.map_path))
    np.testing.assert_allclose(recorded, np.asarray(train.poses)[:, :3, :4], atol=1e-5)
    frame = tiny_scene.frames[tiny_scene.good_frame]
    # the regression's covariance (the keyframe refinement's, from keypoints, is tested in test_keyframes.py)
    options = LocalizerOptions(refinement=RefinementOptions(enabled=False))
    localizer = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu", options=options)
    out = localizer.localize(frame.rgb, frame.K)
    assert out.success and out.covariance is not None and out.refinement is None
    expected = localizer.mapping_views.distance(out.camera_to_world)
    assert out.mapping_view_distance_m == pytest.approx(expected) and 0 <= expected < 1.0
    # the statistics it was computed from come with it (the texture of every inlier included)
    assert out.statistics["texture"].shape == (out.statistics["inliers"],)
    np.testing.assert_allclose(covariance_from_residuals(out.statistics, out.num_cells, out.K_network,
                                                         out.camera_to_world, localizer.options.covariance,
                                                         expected), out.covariance, rtol=1e-12)

    path = tmp_path / "map.pt"
    shutil.copy(tiny_scene.map_path, path)
    sidecar = json.loads(open(f"{tiny_scene.map_path}.json").read())
    del sidecar["training"]["mapping_poses"]
    open(f"{path}.json", "w").write(json.dumps(sidecar))
    old = Localizer.load(path, tiny_scene.encoder, "cpu", options=options)
    assert old.mapping_views is None
    old_out = old.localize(frame.rgb, frame.K)
    assert math.isnan(old_out.mapping_view_distance_m)
    np.testing.assert_allclose(old_out.camera_to_world, out.camera_to_world, atol=1e-9)
    # the same pose and inliers: the covariances differ only by the distance factor (floors aside)
    c = localizer.options.covariance
    ratio = (1 + (c.unknown_novelty_m / c.novelty_scale_m) ** 2) / (1 + (expected / c.novelty_scale_m) ** 2)
    floors = np.diag([c.min_position_std_m ** 2] * 3 + [c.min_rotation_std_rad ** 2] * 3)
    np.testing.assert_allclose(old_out.covariance.reshape(6, 6) - floors,
                               ratio * (out.covariance.reshape(6, 6) - floors), rtol=1e-6, atol=1e-15)


def test_focal_matching_gives_the_network_the_maps_focal_length(tiny_scene):
    """A query camera with 1.5x the mapping focal length is shrunk to the map's focal length at network
    resolution; off, with an explicit image_resolution, or within the dead band it is not."""
    frame = tiny_scene.frames[tiny_scene.good_frame]
    localizer = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu")
    map_focal = localizer.map_focal
    assert map_focal and localizer.trained_resolution == tiny_scene.resolution

    def focal(K, **options):  # (the long side is truncated to whole pixels: within 1 %)
        out = localizer.localize(frame.rgb, K, options=LocalizerOptions(**options))
        return float(np.sqrt(out.K_network[0, 0] * out.K_network[1, 1]))

    assert focal(frame.K) == pytest.approx(map_focal, rel=0.01)
    assert focal(_zoomed_K(frame, 1.5)) == pytest.approx(map_focal, rel=0.01)  # 96 -> 64 px
    assert focal(_zoomed_K(frame, 1.5), match_focal=False) == pytest.approx(1.5 * map_focal, rel=0.01)
    assert focal(_zoomed_K(frame, 1.5), image_resolution=tiny_scene.resolution) == pytest.approx(1.5 * map_focal,
                                                                                                 rel=0.01)
    assert focal(_zoomed_K(frame, 1.05)) == pytest.approx(1.05 * map_focal, rel=0.01)  # the same camera, nearly
    # a wider camera is upscaled (96 -> 128 px) unless that exceeds max_input_pixels: then as it was
    assert focal(_zoomed_K(frame, 0.75)) == pytest.approx(map_focal, rel=0.01)
    assert focal(_zoomed_K(frame, 0.75), max_input_pixels=128 * 128) == pytest.approx(0.75 * map_focal, rel=0.01)


def test_a_map_without_a_recorded_focal_length_keeps_its_resolution(tiny_scene, tmp_path):
    import json
    import shutil

    path = tmp_path / "map.pt"
    shutil.copy(tiny_scene.map_path, path)
    sidecar = json.loads(open(f"{tiny_scene.map_path}.json").read())
    del sidecar["training"]["network_focal_px"]  # a map trained before glace-train recorded it
    open(f"{path}.json", "w").write(json.dumps(sidecar))
    localizer = Localizer.load(path, tiny_scene.encoder, "cpu")
    frame = tiny_scene.frames[tiny_scene.good_frame]
    assert localizer.map_focal is None
    assert localizer.frame_resolution(_zoomed_K(frame, 1.5), *frame.rgb.shape[:2]) == tiny_scene.resolution
