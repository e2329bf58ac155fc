"""glace_core.ensemble_fusion: one RANSAC over every candidate head's cells (the real native solver)."""
from __future__ import annotations

import numpy as np
import pytest

from glace_core.ensemble_fusion import fuse_candidates
from glace_core.geometry import cell_centres, pose_errors
from glace_core.localizer import RansacOptions
from glace_core.pose_covariance import reprojection_statistics

K = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])
H, W = 60, 80  # cells of a 480x640 image


def _pose(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=3) * 0.2
    c, s = np.cos(a[2]), np.sin(a[2])
    pose = np.eye(4)
    pose[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    pose[:3, 3] = rng.normal(size=3)
    return pose


def _scene_coordinates(pose: np.ndarray, seed: int) -> np.ndarray:
    """(3, H, W) world points of the cells seen by ``pose`` on a bumpy surface 2-4 m away."""
    rng = np.random.default_rng(seed)
    u, v = np.moveaxis(cell_centres(H, W, 8), -1, 0)
    depth = 3.0 + 0.5 * np.sin(u / 90.0) * np.cos(v / 70.0) + rng.uniform(-0.2, 0.2, (H, W))
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth])
    return (pose[:3, :3] @ cam.reshape(3, -1) + pose[:3, 3:4]).reshape(3, H, W)


def test_heads_biased_in_opposite_ways_give_the_pose_between_them():
    """Head A's points all lie 2 cm off along +x, head B's along -x: each alone gives a pose about 2 cm
    off (its bias), and every one of its cells is an inlier of the true pose too (< 10 px). The union's
    refit averages the two: its pose is far closer to the truth than either head's."""
    import dsac_native

    pose = _pose(1)
    truth = _scene_coordinates(pose, 2)
    offset = np.array([0.02, 0.0, 0.0])[:, None, None]
    a, b = (truth + offset).astype(np.float32), (truth - offset).astype(np.float32)
    kwargs = RansacOptions().solver_kwargs()
    singles = [dsac_native.estimate_pose(np.ascontiguousarray(sc), K[0, 0], K[1, 1], K[0, 2], K[1, 2],
                                         subsampling=8, **kwargs) for sc in (a, b)]
    single_errors = [pose_errors(np.asarray(r.camera_to_world), pose)[0] for r in singles]
    assert all(0.015 < e < 0.03 for e in single_errors), single_errors
    fused = fuse_candidates([(4, a), (9, b)], K, kwargs)
    assert fused is not None and fused.success
    assert pose_errors(fused.camera_to_world, pose)[0] < 0.2 * min(single_errors)
    assert fused.head in (4, 9) and [k for k, _ in fused.head_inliers] == [4, 9]
    assert fused.inlier_count == max(n for _, n in fused.head_inliers) <= H * W  # cells, not correspondences
    assert fused.inlier_count > 0.9 * H * W
    np.testing.assert_array_equal(fused.scene_coordinates, a if fused.head == 4 else b)


def test_a_wrong_head_is_outvoted_and_carries_no_statistics():
    """One head sees the scene, the other puts its cells' points in the wrong places (the same points,
    shuffled among the cells): the union's pose is the good head's, the good head carries the
    statistics, and the wrong head has almost no inlier cells."""
    pose = _pose(3)
    good = _scene_coordinates(pose, 4).astype(np.float32)
    shuffled = np.random.default_rng(5).permutation(H * W)
    wrong = np.ascontiguousarray(good.reshape(3, -1)[:, shuffled].reshape(3, H, W))
    fused = fuse_candidates([(0, wrong), (1, good)], K, RansacOptions().solver_kwargs())
    assert fused is not None
    t_err, r_err = pose_errors(fused.camera_to_world, pose)
    assert t_err < 1e-3 and r_err < 0.05
    assert fused.head == 1 and fused.inlier_count == reprojection_statistics(good, fused.camera_to_world, K, 10.0)["inliers"] == H * W
    assert dict(fused.head_inliers)[0] < 0.05 * H * W


def test_bad_candidates_are_refused():
    kwargs = RansacOptions().solver_kwargs()
    with pytest.raises(ValueError, match="at least one"):
        fuse_candidates([], K, kwargs)
    with pytest.raises(ValueError, match="one grid"):
        fuse_candidates([(0, np.zeros((3, 4, 5), np.float32)), (1, np.zeros((3, 4, 6), np.float32))], K, kwargs)
