"""The feature-matching peer (bench/feature_peer.py, bench/feature_peer_ops.py): its geometry
(lifting with depth, known-pose triangulation), matching, retrieval, the pixel convention of both
extractors, and exact pose recovery on a clean synthetic scene with XFeat and SIFT, from depth and
from triangulation."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from glace_core.dataset import SceneSplit
from glace_core.geometry import backproject, project

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fp = _load("feature_peer")
ops = fp.ops


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """XFeat on one thread: several times faster than two where other jobs share the two cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A clean synthetic room: 24 mapping and 6 test frames at 240x320 (XFeat resizes it to 256x320);
    100 texels/m (a third of the build time of the default 200) is still sharp at this resolution."""
    from glace_core.synthetic import make_scene

    root = tmp_path_factory.mktemp("peer") / "scene"
    make_scene(root, seed=3, n_train=24, n_test=6, resolution=(240, 320), texels_per_m=100)
    return root


@pytest.fixture(scope="module")
def scene_without_depth(scene, tmp_path_factory):
    """The same scene with its depth hidden (the other folders linked)."""
    root = tmp_path_factory.mktemp("peer_nodepth") / "scene"
    for split in ("train", "test"):
        for sub in ("rgb", "poses", "calibration"):
            (root / split).mkdir(parents=True, exist_ok=True)
            os.symlink(scene / split / sub, root / split / sub)
    return root


# --------------------------------------------------------------------------- geometry

def _look_at(centre, target) -> np.ndarray:
    z = np.asarray(target, float) - centre
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.column_stack([x, np.cross(z, x), z])
    T[:3, 3] = centre
    return T


def test_triangulate_recovers_points_drops_bad_views_and_refuses_weak_tracks():
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 160], [0, 280.0, 120], [0, 0, 1]])
    centres = [[0, 0, 1], [0.3, 0, 1], [0, 0.3, 1.1], [-0.3, 0.1, 1]]
    poses = np.stack([_look_at(np.array(c, float), [0, 4, 1]) for c in centres])
    points = rng.uniform([-1, 3, 0], [1, 5, 2], (200, 3))
    obs = np.stack([project(points, np.linalg.inv(T), K)[0] for T in poses], axis=1)  # (200, 4, 2)
    obs[50:100, 2] += 15.0  # one bad view per track: dropped, the point is still exact
    obs[100:120, 0] += 15.0  # the reference view is bad: refused
    obs[120:140, 1:] = np.nan  # seen by the reference view only: refused
    Ks = np.repeat(K[None], 4, axis=0)
    out = ops.triangulate(obs, Ks, poses, max_error=1.0, min_angle_deg=1.0)
    good = np.r_[0:100, 140:200]
    np.testing.assert_allclose(out[good], points[good], atol=1e-6)
    assert np.isnan(out[100:140]).all()
    # a ray-angle floor above the rig's largest angle (under 7 degrees) refuses every point
    assert np.isnan(ops.triangulate(obs, Ks, poses, 1.0, min_angle_deg=20.0)).all()


def test_lift_keypoints_is_backproject_at_pixel_centres_and_drops_occlusion_edges():
    h, w = 30, 40
    K = np.array([[50.0, 0, 20], [0, 50.0, 15], [0, 0, 1]])
    pose = _look_at(np.array([1.0, 2.0, 1.5]), [3.0, 6.0, 1.0])
    v, u = np.mgrid[0:h, 0:w]
    depth = 2.0 + 0.005 * u + 0.01 * v
    depth[:, 30:] += 1.0  # a step: an occlusion edge at column 29/30
    rows, cols = np.r_[3, 10, 20, 12], np.r_[5, 18, 25, 29]
    pixels = np.column_stack([cols + 0.5, rows + 0.5])
    lifted = ops.lift_keypoints(pixels, (h, w), depth, K, pose)
    np.testing.assert_allclose(lifted[:3], backproject(depth, K, pose)[rows[:3], cols[:3]], atol=1e-12)
    assert np.isnan(lifted[3]).all()
    # a depth image at half the resolution is read at the pixel holding the keypoint
    half = ops.lift_keypoints(pixels[:1], (h, w), depth[::2, ::2], K, pose)
    z = (np.linalg.inv(pose) @ np.append(half[0], 1.0))[2]
    assert z == pytest.approx(depth[2, 4])


def test_mutual_nn_ratio_and_cosine_floor():
    a = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    b = np.array([[0.99, 0.141, 0], [0.0, 0.8, 0.6], [0.0, 0.6, 0.8], [1, 0, 0]], np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    ia, ib = ops.mutual_nn(a, b)
    assert ia.tolist() == [0, 1, 2] and ib.tolist() == [3, 1, 2]
    ia, _ = ops.mutual_nn(a, b, ratio=0.7)  # rows 1 and 2: best / second distance 0.71
    assert ia.tolist() == [0]
    ia, _ = ops.mutual_nn(a, b, min_cosine=0.9)
    assert ia.tolist() == [0]


def test_vlad_retrieves_the_image_itself_and_the_codebook_is_seeded():
    rng = np.random.default_rng(1)
    images = [rng.normal(size=(300, 16)).astype(np.float32) + 2 * rng.normal(size=16).astype(np.float32)
              for _ in range(8)]
    images = [d / np.linalg.norm(d, axis=1, keepdims=True) for d in images]
    codebook = ops.train_codebook(np.concatenate(images), 8, seed=4)
    np.testing.assert_array_equal(codebook, ops.train_codebook(np.concatenate(images), 8, seed=4))
    database = np.stack([ops.vlad(d, codebook) for d in images])
    assert np.allclose(np.linalg.norm(database, axis=1), 1.0)
    for i, d in enumerate(images):
        assert ops.top_k(database, ops.vlad(d[::2], codebook), 1)[0] == i  # half of its descriptors
    others = ops.top_k(database, database[3], 2, exclude=3).tolist()
    assert len(others) == 2 and 3 not in others


# --------------------------------------------------------------------------- extractors

@pytest.mark.parametrize("features", fp.FEATURES)
def test_keypoints_are_continuous_pixels_of_the_original_image(scene, features):
    """The same image extracted at full and at half size gives keypoints at the same places in the
    original image: the corner-origin convention, each extractor's KEYPOINT_OFFSET and the resize
    scale are right. A wrong offset c' moves the half-size keypoints by (c' - c) px against the
    full-size ones (SIFT: 0.25 px for the naive +0.5 or for none; XFeat: 0.7 px for none)."""
    rgb = SceneSplit(scene, "train").load_rgb(0)
    full = fp.make_extractor(fp.PeerConfig(features=features, max_side=320))(rgb)
    half = fp.make_extractor(fp.PeerConfig(features=features, max_side=160))(rgb)
    # XFeat works at multiples of 32: 256x320 and 128x160; SIFT at 240x320 and 120x160
    assert half.scale == pytest.approx(np.sqrt(240 / 128 * 2) if features == "xfeat" else 2.0)
    ia, ib = ops.mutual_nn(full.descriptors, half.descriptors, *fp.PeerConfig(features=features).matching)
    offset = half.keypoints[ib] - full.keypoints[ia]
    offset = offset[np.linalg.norm(offset, axis=1) < 3.0]  # same feature, found at both sizes
    assert len(offset) > 40
    bias = np.mean(offset, axis=0)  # XFeat's keypoints are integers: the median jumps by 0.5 px
    bound = 0.1 if features == "sift" else 0.3
    assert np.abs(bias).max() < bound, f"{features}: mean offset {bias} px between full and half size"


# --------------------------------------------------------------------------- end to end

def _check_recovery(records, summary, median_cm: float, median_deg: float):
    t = np.array([r.t_err_m for r in records])
    r = np.array([r.r_err_deg for r in records])
    assert summary["localised"] == len(records) == 6
    assert summary["median_t_cm"] < median_cm and summary["median_r_deg"] < median_deg, summary
    assert np.all((t < 0.05) & (r < 5.0)), list(zip(t, r))
    assert summary["accuracy"]["pct_5cm_5deg"] == 100.0
    inliers, matches = np.array([rec.inliers for rec in records]), np.array([rec.matches for rec in records])
    assert inliers.min() >= 20 and inliers.sum() > 0.8 * matches.sum(), list(zip(inliers, matches))


@pytest.mark.parametrize("features", fp.FEATURES)
def test_peer_recovers_test_poses_from_depth(scene, features):
    peer_map = fp.build_peer_map(scene, features)
    assert peer_map.source == "depth" and len(peer_map.frames) == 24
    records, summary = fp.localize_split(peer_map, scene, top_k=3)
    _check_recovery(records, summary, median_cm=1.0, median_deg=0.5)
    # retrieval finds a mapping frame that sees the same place: the nearest camera is among the top 3
    train, test = SceneSplit(scene, "train"), SceneSplit(scene, "test")
    nearest = np.argmin(np.linalg.norm(test.camera_centres[:, None] - train.camera_centres[None], axis=2), axis=1)
    assert sum(int(n) in rec.retrieved for n, rec in zip(nearest, records)) >= 5
    again, _ = fp.localize_split(peer_map, scene, top_k=3)  # deterministic for a seed
    for a, b in zip(records, again):
        np.testing.assert_array_equal(a.camera_to_world, b.camera_to_world)
    assert set(summary["ms_per_frame"]) == {"extract", "retrieve", "match", "pose"} and summary["mapping_time_s"] > 0


def test_peer_triangulates_without_depth(scene, scene_without_depth):
    peer_map = fp.build_peer_map(scene_without_depth, "sift")
    assert peer_map.source == "triangulation" and peer_map.num_points > 24 * 100
    # the triangulated points lie on the surfaces the (hidden) depth sees: < 1 cm median
    train = SceneSplit(scene, "train")
    errors = []
    for i, frame in enumerate(peer_map.frames):
        truth = ops.lift_keypoints(frame.keypoints, train.image_size(i), train.load_depth_m(i),
                                   train.intrinsics(i), train.poses[i])
        errors.append(np.linalg.norm(frame.points - truth, axis=1))
    errors = np.concatenate(errors)
    errors = errors[np.isfinite(errors)]
    assert np.median(errors) < 0.01 and np.mean(errors < 0.05) > 0.95
    records, summary = fp.localize_split(peer_map, scene_without_depth)
    assert summary["source"] == "triangulation"
    _check_recovery(records, summary, median_cm=1.0, median_deg=0.5)


def test_cli_prints_the_table_and_writes_the_records(scene, tmp_path, capsys):
    out = tmp_path / "peer.json"
    assert fp.main([str(scene), "--features", "sift", "--top_k", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5cm/5d" in printed and "\nsift     depth" in printed
    report = json.loads(out.read_text())
    assert [r["summary"]["config"]["top_k"] for r in report] == [2]
    frames = report[0]["frames"]
    assert len(frames) == 6 and all(len(f["retrieved"]) == 2 and f["success"] for f in frames)
    assert fp.main([str(scene / "missing")]) == 2
