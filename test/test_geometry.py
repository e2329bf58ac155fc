"""glace_core.geometry: pose inversion and validation, quaternions, pose errors, projection, accuracy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from glace_core import geometry as g


def _random_pose(rng) -> np.ndarray:
    q = rng.normal(size=4)
    T = np.eye(4)
    T[:3, :3] = g.quaternion_to_rotation_matrix(q)
    T[:3, 3] = rng.normal(size=3)
    return T


def _axis_angle(axis, deg) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = math.radians(deg)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def test_invert_pose_single_and_batched():
    rng = np.random.default_rng(0)
    T = np.stack([_random_pose(rng) for _ in range(3)])
    inv = g.invert_pose(T)
    np.testing.assert_allclose(inv @ T, np.repeat(np.eye(4)[None], 3, 0), atol=1e-12)
    np.testing.assert_allclose(g.invert_pose(T[0]), np.linalg.inv(T[0]), atol=1e-12)
    with pytest.raises(ValueError, match="4, 4"):
        g.invert_pose(np.eye(3))


def test_validate_pose_names_the_problem():
    T = _random_pose(np.random.default_rng(1))
    np.testing.assert_array_equal(g.validate_pose(T, "p"), T)
    bad = T.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="cam7: pose contains NaN"):
        g.validate_pose(bad, "cam7")
    with pytest.raises(ValueError, match="shape"):
        g.validate_pose(np.eye(3), "x")
    bad = T.copy()
    bad[3] = [0, 0, 1, 1]
    with pytest.raises(ValueError, match="last row"):
        g.validate_pose(bad, "x")
    bad = T.copy()
    bad[:3, :3] *= 1.1
    with pytest.raises(ValueError, match="not orthonormal"):
        g.validate_pose(bad, "x")
    bad = T.copy()
    bad[:3, 0] *= -1  # a reflection: orthonormal, det -1
    with pytest.raises(ValueError, match="determinant"):
        g.validate_pose(bad, "x")


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -2, 3)])
@pytest.mark.parametrize("deg", [0.0, 1e-6, 30.0, 90.0, 179.9999, 180.0])
def test_quaternion_round_trip(axis, deg):
    R = _axis_angle(axis, deg)
    q = g.rotation_matrix_to_quaternion(R)
    assert q.shape == (4,) and np.linalg.norm(q) == pytest.approx(1.0)
    assert q[0] >= 0
    np.testing.assert_allclose(g.quaternion_to_rotation_matrix(q), R, atol=1e-12)
    # the quaternion of an axis-angle rotation is (cos a/2, sin a/2 · axis), up to sign
    unit = np.asarray(axis, float) / np.linalg.norm(axis)
    expected = np.concatenate([[math.cos(math.radians(deg) / 2)], math.sin(math.radians(deg) / 2) * unit])
    assert min(np.abs(q - expected).max(), np.abs(q + expected).max()) < 1e-9


def test_quaternion_identity_and_half_turn_canonical():
    np.testing.assert_array_equal(g.rotation_matrix_to_quaternion(np.eye(3)), [1, 0, 0, 0])
    half = np.diag([-1.0, 1.0, -1.0])  # 180° about y
    np.testing.assert_allclose(g.rotation_matrix_to_quaternion(half), [0, 0, 1, 0], atol=1e-15)
    # qw == 0: the first non-zero vector component is made positive
    q = g.rotation_matrix_to_quaternion(_axis_angle((-1, 1, 0), 180.0))
    assert q[0] == pytest.approx(0, abs=1e-12) and q[1] > 0


def test_quaternion_input_checks():
    with pytest.raises(ValueError, match="zero"):
        g.quaternion_to_rotation_matrix([0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"\(4,\)"):
        g.quaternion_to_rotation_matrix([1, 0, 0])
    with pytest.raises(ValueError, match="3, 3"):
        g.rotation_matrix_to_quaternion(np.eye(4))
    # unnormalised quaternions are normalised
    np.testing.assert_allclose(g.quaternion_to_rotation_matrix([2, 0, 0, 0]), np.eye(3))


def test_pose_errors_known_perturbations():
    rng = np.random.default_rng(2)
    gt = _random_pose(rng)
    est = gt.copy()
    est[:3, 3] += [0.03, -0.04, 0.0]  # 5 cm
    est[:3, :3] = _axis_angle((0.3, 1, -0.2), 7.5) @ gt[:3, :3]
    t, r = g.pose_errors(est, gt)
    assert isinstance(t, float) and t == pytest.approx(0.05)
    assert r == pytest.approx(7.5, abs=1e-9)
    # rotation applied on the camera side gives the same angle
    est[:3, :3] = gt[:3, :3] @ _axis_angle((1, 0, 0), 3.0)
    assert g.pose_errors(est, gt)[1] == pytest.approx(3.0, abs=1e-9)
    # tiny and 180° angles are accurate (arccos of the trace is not)
    est[:3, :3] = _axis_angle((0, 0, 1), 1e-5) @ gt[:3, :3]
    assert g.pose_errors(est, gt)[1] == pytest.approx(1e-5, rel=1e-6)
    est[:3, :3] = _axis_angle((0, 1, 0), 180.0) @ gt[:3, :3]
    assert g.pose_errors(est, gt)[1] == pytest.approx(180.0)
    # batched
    t, r = g.pose_errors(np.stack([gt, est]), np.stack([gt, gt]))
    np.testing.assert_allclose(t, [0.0, 0.05], atol=1e-12)
    np.testing.assert_allclose(r, [0.0, 180.0], atol=1e-6)


def test_rotation_z_rolls_about_the_optical_axis():
    Rz = g.rotation_z(90.0)
    np.testing.assert_allclose(Rz[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(Rz[:3, :3] @ [0, 0, 1], [0, 0, 1])
    pose = _random_pose(np.random.default_rng(3))
    assert g.pose_errors(pose @ g.rotation_z(-12.0), pose)[1] == pytest.approx(12.0)


def test_rotation_y_turns_about_the_down_axis():
    Ry = g.rotation_y(90.0)
    np.testing.assert_allclose(Ry[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-15)  # forward turns to the right
    np.testing.assert_allclose(Ry[:3, :3] @ [0, 1, 0], [0, 1, 0])
    pose = _random_pose(np.random.default_rng(4))
    assert g.pose_errors(pose @ g.rotation_y(7.5), pose)[1] == pytest.approx(7.5)


def test_project_backproject_round_trip():
    rng = np.random.default_rng(4)
    c2w = _random_pose(rng)
    K = np.array([[50.0, 0, 16.5], [0, 55.0, 11.0], [0, 0, 1]])
    depth = rng.uniform(0.5, 5.0, size=(24, 32))
    depth[3, 4] = 0.0  # invalid
    pts = g.backproject(depth, K, c2w)
    assert pts.shape == (24, 32, 3) and np.isnan(pts[3, 4]).all()
    px, z = g.project(pts.reshape(-1, 3)[~np.isnan(pts.reshape(-1, 3)[:, 0])], g.invert_pose(c2w), K)
    valid = np.ones((24, 32), bool)
    valid[3, 4] = False
    v, u = np.nonzero(valid)
    np.testing.assert_allclose(px, np.stack([u + 0.5, v + 0.5], 1), atol=1e-9)  # pixel centres
    np.testing.assert_allclose(z, depth[valid], atol=1e-12)


def test_project_principal_point_and_behind_camera():
    K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    px, z = g.project(np.array([[0, 0, 2.0], [0.2, -0.1, 1.0], [0, 0, -1.0]]), np.eye(4), K)
    np.testing.assert_allclose(px[:2], [[32, 24], [52, 14]])
    assert np.isnan(px[2]).all() and z[2] == -1
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        g.project(np.zeros((3, 2)), np.eye(4), K)
    with pytest.raises(ValueError, match="positive focal"):
        g.backproject(np.ones((2, 2)), np.diag([0.0, 1, 1]), np.eye(4))


def test_accuracy_table_thresholds_are_strict_and_median_is_n_over_2():
    t = np.array([0.10, 0.0999, 0.05, 0.0199, 0.01, 0.005, np.inf])
    r = np.array([1.0, 4.99, 1.0, 1.99, 0.5, 0.99, np.inf])
    table = g.accuracy_table(t, r)
    n = len(t)
    assert table["pct_10cm_5deg"] == pytest.approx(100 * 5 / n)  # 0.10 is not < 0.10
    assert table["pct_5cm_5deg"] == pytest.approx(100 * 3 / n)  # 0.05 is not < 0.05
    assert table["pct_2cm_2deg"] == pytest.approx(100 * 3 / n)
    assert table["pct_1cm_1deg"] == pytest.approx(100 * 1 / n)  # only (0.005, 0.99): 0.01 is not < 0.01
    assert table["median_t_cm"] == pytest.approx(100 * np.sort(t)[n // 2])
    assert table["median_r_deg"] == pytest.approx(np.sort(r)[n // 2])
    even = g.accuracy_table([0.4, 0.1, 0.3, 0.2], [4, 1, 3, 2])  # index 2 of 4, not the mean
    assert even["median_t_cm"] == pytest.approx(30.0) and even["median_r_deg"] == 3
    # rotation alone can fail a frame
    assert g.accuracy_table([0.001], [5.0])["pct_10cm_5deg"] == 0.0
    assert g.accuracy_table([0.0999, 0.05], [9.99, 10.0])["pct_10cm_10deg"] == 50.0
    with pytest.raises(ValueError, match="same length"):
        g.accuracy_table([0.1], [1, 2])
    with pytest.raises(ValueError, match="at least one"):
        g.accuracy_table([], [])


@pytest.mark.parametrize("K, match", [
    (np.eye(4), r"cam0 must be a \(3, 3\) intrinsics matrix, got shape \(4, 4\)"),
    (np.array([[100.0, 0, 32], [0, np.nan, 24], [0, 0, 1]]), "cam0 contains NaN or infinite values"),
    (np.array([[100.0, 0, 32], [0, -100.0, 24], [0, 0, 1]]),
     r"cam0 must have positive focal lengths, got fx=100.0, fy=-100.0"),
    (np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 2]]), r"cam0: last row must be \[0 0 1\]"),
])
def test_check_K_names_the_matrix_and_the_problem(K, match):
    with pytest.raises(ValueError, match=match):
        g.check_K(K, "cam0")


def test_check_K_returns_float64_and_guards_projection():
    K = g.check_K([[100, 0, 32], [0, 90, 24], [0, 0, 1]])
    assert K.dtype == np.float64 and K[1, 1] == 90.0
    with pytest.raises(ValueError, match=r"^K must have positive focal lengths"):
        g.project(np.zeros((1, 3)), np.eye(4), np.diag([0.0, 1.0, 1.0]))


def test_cell_centres_follow_the_stride_convention():
    c = g.cell_centres(3, 4)
    assert c.shape == (3, 4, 2) and c.dtype == np.float64
    np.testing.assert_array_equal(c[0, :, 0], [4, 12, 20, 28])  # u along x
    np.testing.assert_array_equal(c[:, 0, 1], [4, 12, 20])  # v along y
    np.testing.assert_array_equal(c[2, 1], [12, 20])  # out[y, x] = (8x + 4, 8y + 4)
    np.testing.assert_array_equal(g.cell_centres(1, 2, stride=5), [[[2.5, 2.5], [7.5, 2.5]]])
    assert g.cell_centres(0, 5).shape == (0, 5, 2)
    with pytest.raises(ValueError, match="stride must be a positive"):
        g.cell_centres(2, 2, stride=0)
    with pytest.raises(ValueError, match="non-negative"):
        g.cell_centres(-1, 2)


def test_cell_centres_project_back_onto_their_own_rays():
    # a fronto-parallel plane at z = 2 seen by K: back-projected cell centres re-project to themselves
    K = g.focal_K(50.0, 24, 40)
    np.testing.assert_array_equal(K, [[50, 0, 20], [0, 50, 12], [0, 0, 1]])
    uv = g.cell_centres(3, 5).reshape(-1, 2)
    rays = np.c_[uv, np.ones(len(uv))] @ np.linalg.inv(K).T
    px, z = g.project(2.0 * rays, np.eye(4), K)
    np.testing.assert_allclose(px, uv, atol=1e-12)
    with pytest.raises(ValueError, match="focal length must be a positive"):
        g.focal_K(0.0, 24, 40)


def test_torch_reprojection_matches_the_numpy_projection():
    import torch

    from glace_core.geometry_torch import pixel_rays, reproject

    rng = np.random.default_rng(5)
    c2w = _random_pose(rng)
    w2c = g.invert_pose(c2w)
    K = np.array([[120.0, 0, 40], [0, 110.0, 30], [0, 0, 1]])
    cam = np.c_[rng.uniform(-1, 1, (20, 2)), rng.uniform(1, 5, 20)]
    world = cam @ c2w[:3, :3].T + c2w[:3, 3]
    px_np, z_np = g.project(world, w2c, K)
    p_world = torch.tensor(world.T[None], dtype=torch.float64, requires_grad=True)
    p_cam, px = reproject(p_world, torch.tensor(w2c[None, :3]), torch.tensor(K[None]), 0.1)
    np.testing.assert_allclose(px[0].detach().numpy().T, px_np, rtol=1e-5)
    np.testing.assert_allclose(p_cam[0, 2].detach().numpy(), z_np, rtol=1e-5)
    px.sum().backward()  # differentiable
    assert p_world.grad is not None and torch.isfinite(p_world.grad).all()
    rays = pixel_rays(px.detach(), torch.tensor(np.linalg.inv(K)[None]))
    np.testing.assert_allclose((rays * p_cam[:, 2:].detach())[0].numpy().T, cam, rtol=1e-4, atol=1e-5)
    _, behind = reproject(torch.tensor([[[0.0], [0.0], [-1.0]]]), torch.eye(4)[None, :3], torch.tensor(K[None]), 0.1)
    assert torch.isfinite(behind).all()  # z clamped: finite pixels behind the camera
    with pytest.raises(ValueError, match=r"world_to_cam must be \(1, 3, 4\)"):
        reproject(torch.zeros(1, 3, 2), torch.eye(4)[None], torch.tensor(K[None]), 0.1)


def test_check_K_refuses_implausible_intrinsics_for_the_image():
    from glace_core.geometry import check_K

    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    assert check_K(K, image_size=(480, 640)) is not None
    cases = [((0, 0), 1e-300, "fx"), ((1, 1), 1e9, "fy"), ((0, 2), 5000.0, "cx"), ((1, 2), -400.0, "cy")]
    for (r, c), value, name in cases:
        K2 = K.copy()
        K2[r, c] = value
        with pytest.raises(ValueError, match=f"{name} = .* implausible for a 640x480 image"):
            check_K(K2, image_size=(480, 640))
        check_K(K2)  # without the image size only the structural checks apply
