"""Camera poses -> geometry_msgs / tf2_msgs / sensor_msgs messages, and the REP-105 odom-mode transform.

Poses are camera-to-world 4x4 float64 in OpenCV optical axes (DEVELOPERS.md): the map->camera
transform of TF, with the camera frame an optical frame (x right, y down, z forward). Quaternions
are (x, y, z, w) as in geometry_msgs.

REP-105 odom mode: instead of map->camera the node publishes map->odom, computed from its own
map_T_camera and the odom_T_camera it looks up in TF, so that map->odom->...->camera reproduces
the relocalised pose: map_T_odom = map_T_camera · inverse(odom_T_camera).

The TF tree that answers lookups is :class:`glace_ros.tf_graph.TfGraph`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from glace_core import geometry
from glace_ros.stamps import ns_to_time, stamp_to_ns

__all__ = [
    "rotation_matrix_to_quaternion", "quaternion_to_rotation_matrix",
    "matrix_to_pose", "pose_to_matrix", "pose_to_text", "matrix_to_transform", "transform_to_matrix",
    "pose_stamped_from_matrix", "pose_with_covariance_from_matrix", "transform_stamped_from_matrix",
    "map_to_odom", "point_cloud2_from_scene_coordinates",
    "point_cloud2_to_xyz",
]


# --------------------------------------------------------------------------- rotations

def rotation_matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion in ROS order (x, y, z, w), w >= 0
    (``glace_core.geometry.rotation_matrix_to_quaternion``, reordered)."""
    return geometry.rotation_matrix_to_quaternion(R)[[1, 2, 3, 0]]


def quaternion_to_rotation_matrix(q: np.ndarray) -> np.ndarray:
    """(4,) quaternion in ROS order (x, y, z, w), any non-zero norm -> (3, 3) rotation."""
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ValueError(f"quaternion must be 4 finite values (x, y, z, w) with non-zero norm, got {q}")
    return geometry.quaternion_to_rotation_matrix(q[[3, 0, 1, 2]])


# --------------------------------------------------------------------------- geometry_msgs

def matrix_to_pose(T: np.ndarray):
    """(4, 4) rigid transform -> geometry_msgs/Pose."""
    from geometry_msgs.msg import Point, Pose, Quaternion

    T = geometry.validate_pose(T, "pose")
    x, y, z, w = rotation_matrix_to_quaternion(T[:3, :3])
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)))


def pose_to_text(T: np.ndarray) -> str:
    """A (4, 4) pose as readable text: position in m and roll/pitch/yaw (fixed axes) in degrees."""
    T = geometry.validate_pose(T, "pose")
    R = T[:3, :3]
    roll, pitch = math.atan2(R[2, 1], R[2, 2]), math.asin(max(-1.0, min(1.0, -R[2, 0])))
    yaw = math.atan2(R[1, 0], R[0, 0])
    x, y, z = T[:3, 3]
    return (f"x {x:.3f} y {y:.3f} z {z:.3f} m, roll {math.degrees(roll):.1f} pitch {math.degrees(pitch):.1f} "
            f"yaw {math.degrees(yaw):.1f} deg")


def pose_to_matrix(pose: Any) -> np.ndarray:
    """geometry_msgs/Pose -> (4, 4) float64."""
    o, p = pose.orientation, pose.position
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation_matrix([o.x, o.y, o.z, o.w])
    T[:3, 3] = (p.x, p.y, p.z)
    return T


def matrix_to_transform(T: np.ndarray):
    """(4, 4) rigid transform -> geometry_msgs/Transform."""
    from geometry_msgs.msg import Quaternion, Transform, Vector3

    T = geometry.validate_pose(T, "transform")
    x, y, z, w = rotation_matrix_to_quaternion(T[:3, :3])
    return Transform(translation=Vector3(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                     rotation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)))


def transform_to_matrix(transform: Any) -> np.ndarray:
    """geometry_msgs/Transform -> (4, 4) float64 parent_T_child."""
    r, t = transform.rotation, transform.translation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation_matrix([r.x, r.y, r.z, r.w])
    T[:3, 3] = (t.x, t.y, t.z)
    return T


def _header(stamp: Any, frame_id: str):
    from std_msgs.msg import Header

    if not hasattr(stamp, "sec"):
        stamp = ns_to_time(stamp_to_ns(stamp))
    return Header(stamp=stamp, frame_id=frame_id)


def pose_stamped_from_matrix(camera_to_world: np.ndarray, stamp: Any, frame_id: str = "map"):
    """(4, 4) camera-to-map pose -> geometry_msgs/PoseStamped in ``frame_id``."""
    from geometry_msgs.msg import PoseStamped

    return PoseStamped(header=_header(stamp, frame_id), pose=matrix_to_pose(camera_to_world))


def pose_with_covariance_from_matrix(camera_to_world: np.ndarray, stamp: Any, covariance: np.ndarray,
                                     frame_id: str = "map"):
    """(4, 4) pose + (36,) or (6, 6) covariance -> geometry_msgs/PoseWithCovarianceStamped."""
    from geometry_msgs.msg import PoseWithCovariance, PoseWithCovarianceStamped

    cov = np.asarray(covariance, dtype=np.float64)
    if cov.size != 36 or not np.all(np.isfinite(cov)):
        raise ValueError(f"covariance must be 36 finite values (6x6), got shape {cov.shape}")
    return PoseWithCovarianceStamped(
        header=_header(stamp, frame_id),
        pose=PoseWithCovariance(pose=matrix_to_pose(camera_to_world), covariance=cov.reshape(36).tolist()))


def transform_stamped_from_matrix(parent_T_child: np.ndarray, stamp: Any, parent_frame: str, child_frame: str):
    """(4, 4) parent_T_child -> geometry_msgs/TransformStamped (header.frame_id = parent)."""
    from geometry_msgs.msg import TransformStamped

    return TransformStamped(header=_header(stamp, parent_frame), child_frame_id=child_frame,
                            transform=matrix_to_transform(parent_T_child))


# --------------------------------------------------------------------------- REP-105 odom mode

def map_to_odom(map_T_camera: np.ndarray, odom_T_camera: np.ndarray) -> np.ndarray:
    """map_T_odom (4, 4) such that map_T_odom · odom_T_camera = map_T_camera."""
    map_T_camera = geometry.validate_pose(map_T_camera, "map_T_camera")
    odom_T_camera = geometry.validate_pose(odom_T_camera, "odom_T_camera")
    return map_T_camera @ geometry.invert_pose(odom_T_camera)


# --------------------------------------------------------------------------- point clouds

def point_cloud2_from_scene_coordinates(xyz: np.ndarray, header: Any, rgb: np.ndarray | None = None):
    """(N, 3) float32 points (+ optional (N, 3) uint8 RGB) -> sensor_msgs/PointCloud2 for RViz.

    Fields x, y, z (FLOAT32) and, with colours, rgb (FLOAT32 holding 0x00RRGGBB, RViz's packing).
    One row (height 1, width N); ``is_dense`` is False when any point is non-finite.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must be (N, 3), got {xyz.shape}")
    n = xyz.shape[0]
    names = ["x", "y", "z"] + (["rgb"] if rgb is not None else [])
    formats = ["<f4", "<f4", "<f4", "<u4"][: len(names)]  # rgb: the float's bit pattern, written as uint32
    record = np.zeros(n, dtype=np.dtype({"names": names, "formats": formats}))
    for i, axis in enumerate("xyz"):
        record[axis] = xyz[:, i]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (n, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (N, 3) uint8 matching xyz (N = {n}), got {rgb.shape} {rgb.dtype}")
        packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
        record["rgb"] = packed
    msg = PointCloud2(header=header, height=1, width=n, is_bigendian=False,
                      point_step=record.dtype.itemsize, row_step=record.dtype.itemsize * n,
                      is_dense=bool(np.all(np.isfinite(xyz))))
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate(names)]
    msg.data = record.tobytes()
    return msg


def point_cloud2_to_xyz(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 with FLOAT32 x, y, z (and optionally packed rgb) -> ((N, 3) float32, (N, 3) uint8 | None)."""
    from sensor_msgs.msg import PointField

    fields = {f.name: f for f in msg.fields}
    for axis in "xyz":
        if axis not in fields or fields[axis].datatype != PointField.FLOAT32:
            raise ValueError(f"PointCloud2 has no FLOAT32 field {axis!r} (fields: {sorted(fields)})")
    order = ">" if msg.is_bigendian else "<"
    n = int(msg.width) * int(msg.height)
    formats = {name: (order + ("u4" if name == "rgb" else "f4"), fields[name].offset)
               for name in fields if name in ("x", "y", "z", "rgb")}
    dtype = np.dtype({"names": list(formats), "formats": [f for f, _ in formats.values()],
                      "offsets": [o for _, o in formats.values()], "itemsize": int(msg.point_step)})
    record = np.frombuffer(bytes(msg.data), dtype=dtype, count=n)
    xyz = np.stack([record[a] for a in "xyz"], axis=1).astype(np.float32)
    rgb = None
    if "rgb" in formats:
        packed = record["rgb"].astype(np.uint32)
        rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    return xyz, rgb
