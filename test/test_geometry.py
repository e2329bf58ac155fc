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
    with pytest.raises(ValueError, match="same length"):
        g.accuracy_table([0.1], [1, 2])
    with pytest.raises(ValueError, match="at least one"):
        g.accuracy_table([], [])
