"""glace_ros.pose_messages: quaternions, pose/TF messages, RANSAC covariance, odom mode, TfBuffer, clouds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped, TransformStamped
from rclpy.serialization import deserialize_message, serialize_message
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from glace_ros.pose_messages import (
    TfBuffer, covariance_from_ransac, invert_rigid, map_to_odom, matrix_to_pose, matrix_to_transform,
    point_cloud2_from_scene_coordinates, point_cloud2_to_xyz, pose_stamped_from_matrix, pose_to_matrix,
    pose_with_covariance_from_matrix, quaternion_to_rotation_matrix, rotation_matrix_to_quaternion,
    transform_stamped_from_matrix, transform_to_matrix)


def _pose(rng):
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.normal(0, 3, 3)
    return T


def _rot(axis, angle):
    return Rotation.from_rotvec(np.asarray(axis, float) / np.linalg.norm(axis) * angle).as_matrix()


def test_quaternion_identity_and_180_degree_rotations():
    np.testing.assert_array_equal(rotation_matrix_to_quaternion(np.eye(3)), [0, 0, 0, 1])
    for axis in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3]):
        q = rotation_matrix_to_quaternion(_rot(axis, math.pi))
        expected = np.append(np.asarray(axis, float) / np.linalg.norm(axis), 0.0)
        assert abs(q[3]) < 1e-12
        assert np.allclose(q, expected, atol=1e-12) or np.allclose(q, -expected, atol=1e-12)
        np.testing.assert_allclose(quaternion_to_rotation_matrix(q), _rot(axis, math.pi), atol=1e-12)
    q = rotation_matrix_to_quaternion(np.diag([1.0, -1.0, -1.0]))  # 180° about x, written by hand
    np.testing.assert_allclose(np.abs(q), [1, 0, 0, 0], atol=1e-15)


def test_quaternion_matches_scipy_for_random_rotations():
    rng = np.random.default_rng(3)
    for R in Rotation.random(200, random_state=rng).as_matrix():
        q = rotation_matrix_to_quaternion(R)
        ref = Rotation.from_matrix(R).as_quat()  # (x, y, z, w)
        ref = -ref if ref[3] < 0 else ref
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(q, ref, atol=1e-10)
        np.testing.assert_allclose(quaternion_to_rotation_matrix(q), R, atol=1e-10)


def test_quaternion_of_slightly_non_orthonormal_matrix_is_normalised():
    R = _rot([0.2, 0.5, -1.0], 2.0) + 1e-5
    q = rotation_matrix_to_quaternion(R)
    assert abs(np.linalg.norm(q) - 1) < 1e-12
    with pytest.raises(ValueError, match="zero or non-finite norm"):
        quaternion_to_rotation_matrix([0, 0, 0, 0])


def test_pose_messages_carry_the_pose_and_header():
    T = _pose(np.random.default_rng(1))
    stamp = Time(sec=10, nanosec=500)
    ps = pose_stamped_from_matrix(T, stamp, "map")
    assert isinstance(ps, PoseStamped) and ps.header.frame_id == "map" and ps.header.stamp.nanosec == 500
    np.testing.assert_allclose(pose_to_matrix(ps.pose), T, atol=1e-12)
    assert ps.pose.position.x == T[0, 3]
    cov = covariance_from_ransac(500, 1200, 1.5, 500.0, 3.0)
    pwc = pose_with_covariance_from_matrix(T, 2.25, cov, "world")
    assert isinstance(pwc, PoseWithCovarianceStamped) and pwc.header.frame_id == "world"
    assert (pwc.header.stamp.sec, pwc.header.stamp.nanosec) == (2, 250_000_000)
    np.testing.assert_array_equal(np.asarray(pwc.pose.covariance), cov)
    np.testing.assert_allclose(pose_to_matrix(pwc.pose.pose), T, atol=1e-12)
    ts = transform_stamped_from_matrix(T, stamp, "map", "camera_optical")
    assert isinstance(ts, TransformStamped) and ts.header.frame_id == "map" and ts.child_frame_id == "camera_optical"
    np.testing.assert_allclose(transform_to_matrix(ts.transform), T, atol=1e-12)
    np.testing.assert_allclose(transform_to_matrix(matrix_to_transform(T)), pose_to_matrix(matrix_to_pose(T)))


def test_bad_pose_matrices_are_rejected():
    T = np.eye(4)
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        matrix_to_pose(T[:3])
    with pytest.raises(ValueError, match="not a rotation"):
        matrix_to_pose(np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="not a rotation"):
        matrix_to_pose(np.diag([-1.0, 1.0, 1.0, 1.0]))  # a reflection
    T[0, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        pose_stamped_from_matrix(T, 0, "map")
    with pytest.raises(ValueError, match="36 finite"):
        pose_with_covariance_from_matrix(np.eye(4), 0, np.eye(5), "map")


def test_serialization_round_trip_of_pose_messages():
    rng = np.random.default_rng(2)
    T = _pose(rng)
    cov = covariance_from_ransac(300, 1000, 2.0, 480.0, 4.0, rotation_cam_to_world=T[:3, :3])
    for msg in (pose_stamped_from_matrix(T, Time(sec=1), "map"),
                pose_with_covariance_from_matrix(T, Time(sec=1), cov, "map"),
                transform_stamped_from_matrix(T, Time(sec=1), "map", "cam")):
        back = deserialize_message(serialize_message(msg), type(msg))
        assert back == msg
    tf = TFMessage(transforms=[transform_stamped_from_matrix(_pose(rng), Time(sec=2), "odom", "base_link")])
    assert deserialize_message(serialize_message(tf), TFMessage) == tf


def _variances(cov):
    return np.diag(np.asarray(cov).reshape(6, 6))


def test_covariance_is_finite_symmetric_positive_definite():
    rng = np.random.default_rng(4)
    for _ in range(20):
        n_cells = int(rng.integers(10, 5000))
        cov = covariance_from_ransac(int(rng.integers(1, n_cells + 1)), n_cells, float(rng.uniform(0, 20)),
                                     float(rng.uniform(100, 2000)), float(rng.uniform(0.1, 50)),
                                     rotation_cam_to_world=Rotation.random(random_state=rng).as_matrix())
        C = cov.reshape(6, 6)
        assert cov.shape == (36,) and np.all(np.isfinite(cov))
        np.testing.assert_allclose(C, C.T, atol=1e-18)
        assert np.linalg.eigvalsh(C).min() > 0
    zero_error = covariance_from_ransac(1000, 1000, 0.0, 500.0, 2.0).reshape(6, 6)
    assert np.linalg.eigvalsh(zero_error).min() > 0  # min_error_px keeps it positive definite


def test_covariance_is_monotone():
    base = dict(inlier_count=400, num_cells=1200, mean_inlier_error_px=2.0, focal_px=500.0, median_depth_m=3.0)
    ref = _variances(covariance_from_ransac(**base))
    worse = [dict(base, inlier_count=200), dict(base, inlier_count=20), dict(base, mean_inlier_error_px=4.0),
             dict(base, focal_px=250.0)]
    for changed in worse:
        assert np.all(_variances(covariance_from_ransac(**changed)) > ref), changed
    deeper = _variances(covariance_from_ransac(**dict(base, median_depth_m=6.0)))
    assert np.all(deeper[:3] > ref[:3]) and np.allclose(deeper[3:], ref[3:])  # depth: position only
    # the same inlier count out of more cells (lower inlier ratio) is less certain
    assert np.all(_variances(covariance_from_ransac(**dict(base, num_cells=4000))) > ref)
    counts = [5, 10, 50, 100, 500, 1200]
    traces = [covariance_from_ransac(**dict(base, inlier_count=n)).reshape(6, 6).trace() for n in counts]
    assert all(a > b for a, b in zip(traces, traces[1:]))


def test_covariance_formula_and_axial_direction():
    cov = covariance_from_ransac(100, 200, 2.0, 400.0, 5.0).reshape(6, 6)
    s = 2.0 / 400.0 / 10.0 / 0.5
    np.testing.assert_allclose(np.diag(cov)[3:], s ** 2)
    np.testing.assert_allclose(np.diag(cov)[:3], (2.0 * s * 5.0) ** 2)  # isotropic with the axial std
    R = _rot([1, 0, 0], math.pi / 2)  # camera z points along world -y
    cov = covariance_from_ransac(100, 200, 2.0, 400.0, 5.0, rotation_cam_to_world=R).reshape(6, 6)
    w, v = np.linalg.eigh(cov[:3, :3])
    np.testing.assert_allclose(np.abs(v[:, -1]), np.abs(R[:, 2]), atol=1e-12)  # largest along the optical axis
    assert w[-1] == pytest.approx(4 * w[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(inlier_count=0), "inlier_count"), (dict(inlier_count=50, num_cells=10), "num_cells"),
    (dict(focal_px=0.0), "focal_px"), (dict(median_depth_m=float("nan")), "median_depth_m"),
    (dict(mean_inlier_error_px=-1.0), "mean_inlier_error_px"),
])
def test_covariance_rejects_bad_inputs(kwargs, match):
    args = dict(inlier_count=10, num_cells=100, mean_inlier_error_px=1.0, focal_px=500.0, median_depth_m=2.0)
    with pytest.raises(ValueError, match=match):
        covariance_from_ransac(**dict(args, **kwargs))


def test_map_to_odom_composes_back_to_map_to_camera():
    rng = np.random.default_rng(5)
    for _ in range(10):
        map_T_cam, odom_T_cam = _pose(rng), _pose(rng)
        map_T_odom = map_to_odom(map_T_cam, odom_T_cam)
        np.testing.assert_allclose(map_T_odom @ odom_T_cam, map_T_cam, atol=1e-12)
        np.testing.assert_allclose(map_T_odom[:3, :3].T @ map_T_odom[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(invert_rigid(map_T_cam) @ map_T_cam, np.eye(4), atol=1e-12)


def _ts(parent, child, T, t_s=0.0):
    return transform_stamped_from_matrix(T, t_s, parent, child)


def test_tf_buffer_chains_static_and_dynamic_edges_for_odom_mode():
    rng = np.random.default_rng(6)
    odom_T_base, base_T_cam, map_T_cam = _pose(rng), _pose(rng), _pose(rng)
    buf = TfBuffer()
    buf.add_message(TFMessage(transforms=[_ts("base_link", "camera_optical", base_T_cam)]), static=True)
    buf.add_message(TFMessage(transforms=[_ts("odom", "base_link", odom_T_base, 100.0)]))
    odom_T_cam = buf.lookup("odom", "camera_optical", 100.0)
    np.testing.assert_allclose(odom_T_cam, odom_T_base @ base_T_cam, atol=1e-12)
    np.testing.assert_allclose(buf.lookup("camera_optical", "odom"), invert_rigid(odom_T_cam), atol=1e-12)
    # odom mode: publish map->odom; the whole chain then reproduces map->camera
    buf.set_transform(_ts("map", "odom", map_to_odom(map_T_cam, odom_T_cam), 100.0))
    np.testing.assert_allclose(buf.lookup("map", "camera_optical", 100.0), map_T_cam, atol=1e-12)
    np.testing.assert_array_equal(buf.lookup("odom", "odom"), np.eye(4))


def test_tf_buffer_siblings_through_common_ancestor_and_slashes():
    rng = np.random.default_rng(7)
    base_T_a, base_T_b = _pose(rng), _pose(rng)
    buf = TfBuffer()
    buf.set_transform(_ts("/base_link", "cam_a", base_T_a), static=True)
    buf.set_transform(_ts("base_link", "/cam_b", base_T_b), static=True)
    np.testing.assert_allclose(buf.lookup("cam_a", "cam_b"), invert_rigid(base_T_a) @ base_T_b, atol=1e-12)


def test_tf_buffer_picks_nearest_sample_and_static_never_expires():
    buf = TfBuffer(cache_time_s=10.0, max_time_gap_s=0.5)
    buf.set_transform(_ts("base", "cam", np.eye(4)), static=True)  # stamp 0, queried much later
    for t in (3.0, 1.0, 2.0):  # out of order
        T = np.eye(4)
        T[0, 3] = t
        buf.set_transform(_ts("odom", "base", T, t))
    assert buf.lookup("odom", "cam", 1.9)[0, 3] == 2.0
    assert buf.lookup("odom", "cam", 1.2)[0, 3] == 1.0
    assert buf.lookup("odom", "cam")[0, 3] == 3.0  # no stamp: latest
    assert buf.lookup("odom", "cam", Time(sec=3, nanosec=400_000_000))[0, 3] == 3.0
    with pytest.raises(LookupError, match="within 0.500 s"):
        buf.lookup("odom", "cam", 5.0)
    later = np.eye(4)
    later[0, 3] = 20.0
    buf.set_transform(_ts("odom", "base", later, 20.0))  # samples older than 10 s are dropped
    with pytest.raises(LookupError, match="have 20.000 .. 20.000"):
        buf.lookup("odom", "base", 3.0)
    assert buf.lookup("base", "cam", 1000.0) is not None


def test_tf_buffer_raises_when_no_chain():
    buf = TfBuffer()
    buf.set_transform(_ts("odom", "base", np.eye(4)))
    buf.set_transform(_ts("map", "other", np.eye(4)), static=True)
    with pytest.raises(LookupError, match="no TF chain between 'odom' and 'camera'"):
        buf.lookup("odom", "camera")
    with pytest.raises(LookupError, match="no TF chain"):
        buf.lookup("base", "other")
    with pytest.raises(ValueError, match="distinct"):
        buf.set_transform(_ts("a", "a", np.eye(4)))


def test_point_cloud_round_trip_with_colours():
    rng = np.random.default_rng(8)
    xyz = rng.normal(0, 5, (257, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (257, 3), dtype=np.uint8)
    header = Header(frame_id="map")
    msg = point_cloud2_from_scene_coordinates(xyz, header, rgb)
    assert isinstance(msg, PointCloud2) and msg.width == 257 and msg.height == 1 and msg.point_step == 16
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and msg.is_dense
    assert len(msg.data) == msg.row_step == 16 * 257
    back = deserialize_message(serialize_message(msg), PointCloud2)
    xyz2, rgb2 = point_cloud2_to_xyz(back)
    np.testing.assert_array_equal(xyz2, xyz)
    np.testing.assert_array_equal(rgb2, rgb)
    # RViz packing: rgb float bits = 0x00RRGGBB
    first = np.frombuffer(bytes(msg.data)[12:16], "<u4")[0]
    assert first == (int(rgb[0, 0]) << 16) | (int(rgb[0, 1]) << 8) | int(rgb[0, 2])


def test_point_cloud_without_colours_and_bad_inputs():
    xyz = np.array([[0, 1, 2], [np.nan, 0, 0]], np.float32)
    msg = point_cloud2_from_scene_coordinates(xyz, Header(frame_id="map"))
    assert msg.point_step == 12 and not msg.is_dense
    out, colours = point_cloud2_to_xyz(msg)
    assert colours is None and np.array_equal(out, xyz, equal_nan=True)
    with pytest.raises(ValueError, match=r"xyz must be \(N, 3\)"):
        point_cloud2_from_scene_coordinates(np.zeros((3, 2), np.float32), Header())
    with pytest.raises(ValueError, match="rgb must be"):
        point_cloud2_from_scene_coordinates(np.zeros((3, 3), np.float32), Header(), np.zeros((3, 3), np.float32))
