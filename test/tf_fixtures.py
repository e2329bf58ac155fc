"""A small TF bag for the TF graph and bag tool tests: map->odom (1 Hz, slow drift),
odom->base_link (10 Hz) and base_link->camera_optical (static), plus a /pose topic, over 0..2 s."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from glace_ros import scene_to_bag as s2b
from glace_ros.bag_io import BagWriter


def pose(rotvec, t) -> np.ndarray:
    """(4, 4) rigid transform from a rotation vector and a translation."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def tf_message(types, parent, child, stamp_ns, T):
    """A rosbags tf2_msgs/TFMessage with one transform."""
    return s2b.tf_message(types, s2b._header(types, stamp_ns, parent), child, T)


def write_tf_bag(path, storage="mcap") -> np.ndarray:
    """Write the bag; returns base_link_T_camera_optical."""
    base_cam = pose([-np.pi / 2, 0, 0], [0.2, 0, 0.5])
    with BagWriter(path, storage=storage) as bag:
        types = bag.types
        bag.write("/tf_static", tf_message(types, "base_link", "camera_optical", 0, base_cam),
                  "tf2_msgs/msg/TFMessage", 1)
        for k in range(3):  # t = 0, 1, 2 s
            t = k * 1_000_000_000
            bag.write("/tf", tf_message(types, "map", "odom", t, pose([0, 0, 0.1 * k], [0.05 * k, 0, 0])),
                      "tf2_msgs/msg/TFMessage", t + 1)
        for k in range(21):  # 0 .. 2 s at 10 Hz
            t = k * 100_000_000
            bag.write("/tf", tf_message(types, "odom", "base_link", t,
                                        pose([0, 0, 0.05 * k], [0.1 * k, 0.02 * k, 0])),
                      "tf2_msgs/msg/TFMessage", t + 2)
            header = s2b._header(types, t, "map")
            bag.write("/pose", types["geometry_msgs/msg/PoseStamped"](
                header=header, pose=s2b.pose_message(types, pose([0, 0.01 * k, 0], [k, 0, 0]))),
                "geometry_msgs/msg/PoseStamped", t + 3)
    return base_cam


def expected_map_T_camera(t_s: float, base_cam: np.ndarray) -> np.ndarray:
    """map_T_camera_optical of the bag at t_s seconds (every edge is linear in t: lerp/slerp exact)."""
    map_odom = pose([0, 0, 0.1 * t_s], [0.05 * t_s, 0, 0])
    k = t_s * 10
    odom_base = pose([0, 0, 0.05 * k], [0.1 * k, 0.02 * k, 0])
    return map_odom @ odom_base @ base_cam
