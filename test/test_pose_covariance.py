"""glace_core.pose_covariance: Jacobians, the covariance model, its calibration, and the adjoint transform."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from glace_core.geometry import invert_pose, project
import torch

from glace_core.pose_covariance import (CovarianceCalibration, MappingViews, cell_texture, covariance_from_residuals,
                                        mahalanobis_squared, pose_error_vector, pose_jacobians,
                                        transform_pose_covariance)

K = np.array([[500.0, 0, 320], [0, 520.0, 240], [0, 0, 1]])


def _pose(rng, scale=1.0):
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.normal(0, scale, 3)
    return T


def _perturb(T, error):
    """The pose whose pose_error_vector from T is ``error`` (dC, r about the map axes)."""
    out = T.copy()
    out[:3, :3] = Rotation.from_rotvec(error[3:]).as_matrix() @ T[:3, :3]
    out[:3, 3] = T[:3, 3] + error[:3]
    return out


def _scene(rng, pose, n):
    """n world points in front of the camera ``pose`` (camera-to-world) and their exact pixels."""
    cam = np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-1, 1, n), rng.uniform(2, 6, n)], 1)
    world = cam @ pose[:3, :3].T + pose[:3, 3]
    px, _ = project(world, invert_pose(pose), K)
    return world, px


def test_error_vector_round_trip_and_mahalanobis():
    rng = np.random.default_rng(0)
    T = _pose(rng)
    e = np.array([0.1, -0.2, 0.05, 0.01, -0.02, 0.03])
    np.testing.assert_allclose(pose_error_vector(T, _perturb(T, e)), e, atol=1e-12)
    C = np.diag([4.0, 1, 1, 1, 1, 1])
    assert mahalanobis_squared(np.array([2.0, 0, 0, 0, 0, 0]), C) == pytest.approx(1.0)


def test_jacobians_match_finite_differences():
    rng = np.random.default_rng(1)
    T = _pose(rng)
    world, px = _scene(rng, T, 20)
    cam = (world - T[:3, 3]) @ T[:3, :3]
    J = pose_jacobians(cam, K, T[:3, :3])
    eps = 1e-6
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        moved, _ = project(world, invert_pose(_perturb(T, d)), K)
        np.testing.assert_allclose((moved - px) / eps, J[:, :, k], rtol=1e-4, atol=1e-3)


def _stats(rng, T, n, noise_px):
    world, px = _scene(rng, T, n)
    noisy = px + rng.normal(0, noise_px, px.shape)
    cam = (world - T[:3, 3]) @ T[:3, :3]
    return {"camera_points": cam, "errors": np.linalg.norm(noisy - px, axis=1), "inliers": n}, world, noisy


def test_independent_noise_is_calibrated_with_n_eff_equal_to_n():
    """With independent pixel noise and n_eff = N (no correlation), the least-squares pose errors
    follow the covariance: median Mahalanobis^2 near the chi^2(6) median 5.35."""
    import dsac_native

    rng = np.random.default_rng(2)
    d2 = []
    n = 300
    for _ in range(60):
        T = _pose(rng)
        stats, world, noisy = _stats(rng, T, n, 1.0)
        r = dsac_native.estimate_pose_from_correspondences(noisy, world, K[0, 0], K[1, 1], K[0, 2], K[1, 2],
                                                           threshold=10.0, seed=0)
        est = np.asarray(r.camera_to_world)
        calib = CovarianceCalibration(effective_observations=n, min_position_std_m=0, min_rotation_std_rad=0,
                                      min_inlier_ratio=1.0)
        est_stats = {"camera_points": (world - est[:3, 3]) @ est[:3, :3],
                     "errors": np.linalg.norm(project(world, invert_pose(est), K)[0] - noisy, axis=1)}
        cov = covariance_from_residuals(est_stats, n, K, est, calib)
        d2.append(mahalanobis_squared(pose_error_vector(est, T), cov))
    assert 3.5 < np.median(d2) < 8.0, np.median(d2)
    assert np.mean(np.array(d2) < 12.59) > 0.85


def test_covariance_grows_with_noise_and_shrinks_with_n_eff():
    rng = np.random.default_rng(3)
    T = _pose(rng)
    small, _, _ = _stats(rng, T, 500, 1.0)
    big = dict(small, errors=small["errors"] * 3)
    a = covariance_from_residuals(small, 1000, K, T).reshape(6, 6)
    b = covariance_from_residuals(big, 1000, K, T).reshape(6, 6)
    assert np.all(np.diag(b) > np.diag(a))
    more = CovarianceCalibration(effective_observations=2 * CovarianceCalibration().effective_observations)
    c = covariance_from_residuals(small, 1000, K, T, more).reshape(6, 6)
    assert np.all(np.diag(c) < np.diag(a))
    low_ratio = covariance_from_residuals(small, 5000, K, T).reshape(6, 6)  # same inliers of more cells
    assert np.all(np.diag(low_ratio) > np.diag(a))
    for C in (a, b, c, low_ratio):
        np.testing.assert_allclose(C, C.T, atol=1e-15)
        assert np.linalg.eigvalsh(C).min() > 0
    floor = CovarianceCalibration().min_position_std_m ** 2
    assert np.all(np.diag(a)[:3] >= floor)
    with pytest.raises(ValueError, match="inliers"):
        covariance_from_residuals({"camera_points": np.zeros((2, 3)), "errors": np.zeros(2)}, 10, K, T)


def test_plain_cells_and_distance_from_the_mapping_views_widen_the_covariance():
    rng = np.random.default_rng(6)
    T = _pose(rng)
    stats, _, _ = _stats(rng, T, 400, 1.0)
    calib = CovarianceCalibration(min_position_std_m=0, min_rotation_std_rad=0)

    def cov(stats_, novelty=0.0, c=calib):
        return covariance_from_residuals(stats_, 1000, K, T, c, novelty).reshape(6, 6)

    base = cov(stats)
    textured = dict(stats, texture=np.full(400, 2 * calib.texture_full_weight))  # above full weight: the same
    np.testing.assert_allclose(cov(textured), base, rtol=1e-9)
    half_plain = dict(stats, texture=np.where(np.arange(400) % 2 == 0, 0.0, 10.0))  # every other cell on a plain wall
    assert np.all(np.diag(cov(half_plain)) > 1.5 * np.diag(base))
    # the texture weight is (t / full) ** 2: a quarter of full texture everywhere is 1/16 of the information
    np.testing.assert_allclose(cov(dict(stats, texture=np.full(400, calib.texture_full_weight / 4))), 16 * base,
                               rtol=1e-6)
    # distance d from the nearest mapping view scales it by 1 + (d / novelty_scale_m) ** 2
    d = 0.5
    np.testing.assert_allclose(cov(stats, d), (1 + (d / calib.novelty_scale_m) ** 2) * base, rtol=1e-9)
    np.testing.assert_allclose(cov(stats, None), cov(stats, calib.unknown_novelty_m), rtol=1e-12)  # not recorded
    with pytest.raises(ValueError, match="texture"):
        cov(dict(stats, texture=np.ones(3)))


def test_mapping_views_distance_counts_metres_and_degrees():
    poses = np.stack([np.eye(4)] * 3)
    poses[:, 0, 3] = [0.0, 10.0, 20.0]  # three cameras 10 m apart, all looking along +z
    poses[2, :3, :3] = Rotation.from_euler("y", 90, degrees=True).as_matrix()
    views = MappingViews(poses)
    assert views.distance(poses[1]) == pytest.approx(0.0, abs=1e-7)
    moved = poses[1].copy()
    moved[:3, 3] += [0.3, 0.4, 0.0]
    assert views.distance(moved) == pytest.approx(0.5)
    turned = poses[1].copy()
    turned[:3, :3] = Rotation.from_euler("z", 15, degrees=True).as_matrix()
    assert views.distance(turned) == pytest.approx(0.5)  # 30 degrees count as 1 m
    assert MappingViews(poses, metres_per_degree=0.1).distance(turned) == pytest.approx(1.5)
    with_nan = poses.copy()
    with_nan[1, 0, 0] = np.nan  # a frame without a valid pose is left out
    assert len(MappingViews(with_nan)) == 2 and MappingViews(with_nan).distance(poses[1]) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="mapping poses"):
        MappingViews(np.eye(4))
    with pytest.raises(ValueError, match="finite"):
        MappingViews(np.full((2, 4, 4), np.nan))


def test_cell_texture_is_the_mean_gradient_in_grey_levels():
    h, w, stride = 6, 8, 8
    flat = torch.full((1, 1, h * stride, w * stride), 0.3)
    np.testing.assert_array_equal(cell_texture(flat, (h, w), stride, 255.0), np.zeros((h, w), np.float32))
    ramp = torch.arange(w * stride, dtype=torch.float32).repeat(h * stride, 1)[None, None] * 3.0 / 255.0
    texture = cell_texture(ramp, (h, w), stride, 255.0)  # 3 grey levels per pixel
    assert texture.shape == (h, w)
    np.testing.assert_allclose(texture[2:-2, 2:-2], 3.0, rtol=1e-5)  # away from the image's border
    assert np.all(texture[:, 0] < 3.0)
    # more cells than the image covers (the encoder pads): the uncovered ones are 0 before the 3x3 mean
    assert cell_texture(ramp, (h + 1, w), stride, 255.0).shape == (h + 1, w)
    with pytest.raises(ValueError, match="1, 1, H, W"):
        cell_texture(ramp[0], (h, w), stride)


def test_transform_to_base_frame_matches_sampling():
    """Sampling camera poses from a covariance and moving them to a rigidly attached base frame gives
    the empirical covariance the adjoint predicts."""
    rng = np.random.default_rng(4)
    map_T_cam = _pose(rng)
    base_T_cam = np.eye(4)
    base_T_cam[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
    base_T_cam[:3, 3] = [0.3, 0.0, 1.2]
    cam_T_base = invert_pose(base_T_cam)
    A = rng.normal(size=(6, 6)) * [0.02, 0.02, 0.02, 0.01, 0.01, 0.01]
    cov = (A @ A.T + np.eye(6) * 1e-6).reshape(36)
    lever = map_T_cam[:3, :3] @ cam_T_base[:3, 3]
    predicted = transform_pose_covariance(cov, lever).reshape(6, 6)
    samples = rng.multivariate_normal(np.zeros(6), cov.reshape(6, 6), size=20000)
    map_T_base = map_T_cam @ cam_T_base
    errors = np.array([pose_error_vector(map_T_base, _perturb(map_T_cam, e) @ cam_T_base) for e in samples])
    empirical = np.cov(errors.T)
    np.testing.assert_allclose(empirical, predicted, atol=0.05 * np.abs(predicted).max())
    np.testing.assert_allclose(transform_pose_covariance(cov, np.zeros(3)), cov)


def test_calibration_values_are_checked():
    with pytest.raises(ValueError, match="effective_observations"):
        CovarianceCalibration(effective_observations=0)
    with pytest.raises(ValueError, match="min_position_std_m"):
        CovarianceCalibration(min_position_std_m=-1)
    assert math.isfinite(CovarianceCalibration().min_rotation_std_rad)
