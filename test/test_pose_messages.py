"""glace_ros.pose_messages: quaternions, pose/TF messages, RANSAC covariance, odom mode, clouds."""
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

from glace_core.geometry import invert_pose
from glace_ros.pose_messages import (
    map_to_odom, matrix_to_pose, matrix_to_transform,
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
    cov = np.diag([0.04, 0.05, 0.06, 0.001, 0.002, 0.003]).reshape(36)
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
    with pytest.raises(ValueError, match="not orthonormal"):
        matrix_to_pose(np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="determinant"):
        matrix_to_pose(np.diag([-1.0, 1.0, 1.0, 1.0]))  # a reflection
    T[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        pose_stamped_from_matrix(T, 0, "map")
    with pytest.raises(ValueError, match="36 finite"):
        pose_with_covariance_from_matrix(np.eye(4), 0, np.eye(5), "map")


def test_serialization_round_trip_of_pose_messages():
    rng = np.random.default_rng(2)
    T = _pose(rng)
    cov = np.diag([0.01, 0.02, 0.03, 0.001, 0.002, 0.003]).reshape(36)
    for msg in (pose_stamped_from_matrix(T, Time(sec=1), "map"),
                pose_with_covariance_from_matrix(T, Time(sec=1), cov, "map"),
                transform_stamped_from_matrix(T, Time(sec=1), "map", "cam")):
        back = deserialize_message(serialize_message(msg), type(msg))
        assert back == msg
    tf = TFMessage(transforms=[transform_stamped_from_matrix(_pose(rng), Time(sec=2), "odom", "base_link")])
    assert deserialize_message(serialize_message(tf), TFMessage) == tf


def test_map_to_odom_composes_back_to_map_to_camera():
    rng = np.random.default_rng(5)
    for _ in range(10):
        map_T_cam, odom_T_cam = _pose(rng), _pose(rng)
        map_T_odom = map_to_odom(map_T_cam, odom_T_cam)
        np.testing.assert_allclose(map_T_odom @ odom_T_cam, map_T_cam, atol=1e-12)
        np.testing.assert_allclose(map_T_odom[:3, :3].T @ map_T_odom[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(invert_pose(map_T_cam) @ map_T_cam, np.eye(4), atol=1e-12)


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
