"""The relocalizer in a robot's TF tree (REP-105), on a live rclpy graph.

A URDF-style static chain base_link -> camera_link -> camera_optical_frame on /tf_static and 50 Hz
odometry odom -> base_link on /tf (the robot drives at constant speed and turn rate, so odometry
interpolates exactly), images stamped with the current time: what a robot gives the node.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections import defaultdict

import numpy as np
import pytest
from tf2_msgs.msg import TFMessage

from glace_core.geometry import invert_pose
from glace_ros.image_conversion import numpy_to_image
from glace_ros.pose_messages import pose_to_matrix, transform_stamped_from_matrix, transform_to_matrix
from glace_ros.stamps import stamp_to_ns

from relocalizer_graph import RelocalizerGraph

pytestmark = pytest.mark.ros

CAMERA = "camera_optical_frame"
SPEED, TURN = 0.4, 0.3  # m/s along x of odom, rad/s about z


def _rot_z(a):
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


BASE_T_LINK = np.eye(4)
BASE_T_LINK[:3, 3] = [0.25, 0.0, 0.6]
LINK_T_OPTICAL = np.eye(4)
LINK_T_OPTICAL[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # REP-103 body -> optical axes
BASE_T_CAMERA = BASE_T_LINK @ LINK_T_OPTICAL


class Robot:
    """Static URDF chain and 50 Hz odometry published by the tester node of a RelocalizerGraph."""

    def __init__(self, graph: RelocalizerGraph, speed: float = SPEED, turn: float = TURN):
        self.graph, self.t0, self.speed, self.turn = graph, time.time_ns(), speed, turn
        self._stop = threading.Event()
        graph.tf_static_pub.publish(TFMessage(transforms=[
            transform_stamped_from_matrix(BASE_T_LINK, 0, "base_link", "camera_link"),
            transform_stamped_from_matrix(LINK_T_OPTICAL, 0, "camera_link", CAMERA)]))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def odom_T_base(self, stamp_ns: int) -> np.ndarray:
        t = (stamp_ns - self.t0) * 1e-9
        T = np.eye(4)
        T[:3, :3] = _rot_z(self.turn * t)
        T[:3, 3] = [self.speed * t, 0.0, 0.0]
        return T

    def _run(self):
        while not self._stop.is_set():
            now = time.time_ns()
            self.graph.tf_pub.publish(TFMessage(transforms=[
                transform_stamped_from_matrix(self.odom_T_base(now), now, "odom", "base_link")]))
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join(2.0)


_count = iter(range(10_000))


@pytest.fixture
def robot_graph(context, tiny_scene):
    made = []

    def make(robot: bool = True, still: bool = False, **params):
        ns = f"robot{os.getpid()}_{next(_count)}"
        base = {"map_path": str(tiny_scene.map_path), "encoder_path": tiny_scene.encoder,
                "image_resolution": tiny_scene.resolution, "min_inlier_count": tiny_scene.min_inliers}
        g = RelocalizerGraph(context, ns, {**base, **params})
        r = (Robot(g, 0.0, 0.0) if still else Robot(g)) if robot else None
        made.append((g, r))
        assert g.wait_matched()
        return g, r

    yield make
    for g, r in made:
        if r is not None:
            r.stop()
        g.close()


def _send(g, frame, stamp_ns=None):
    stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
    h, w = frame.rgb.shape[:2]
    return stamp_ns, g.localize_lockstep(numpy_to_image(frame.rgb, "rgb8"), frame.K, h, w, stamp_ns, CAMERA)


def _parents(transforms) -> dict[str, set[str]]:
    parents = defaultdict(set)
    for ts, _ in transforms:
        parents[ts.child_frame_id.lstrip("/")].add(ts.header.frame_id.lstrip("/"))
    return parents


def _map_to_odom(g, after: float | None = None):
    with g.lock:
        return [(ts, t) for ts, t in g.tf if ts.header.frame_id == "map" and ts.child_frame_id == "odom"
                and (after is None or t > after)]


def test_defaults_fit_a_urdf_tree(robot_graph, tiny_scene):
    """Default parameters: map -> odom only, republished at >= 80 % of 20 Hz and after images stop;
    map -> odom . odom -> camera at the image stamp = ~/pose; ~/base_pose = pose . base_T_camera^-1;
    no /initialpose; no frame gets a second parent."""
    g, robot = robot_graph()
    good = [i for i, p in enumerate(tiny_scene.offline_poses) if p is not None
            and tiny_scene.offline_inliers[i] >= tiny_scene.min_inliers]
    checked = 0
    for i in good[:4]:
        stamp, pose = _send(g, tiny_scene.frames[i])
        assert pose is not None
        assert g.wait_for(lambda: stamp in g.base_poses, 5.0)
        time.sleep(0.15)  # the timer republishes this frame's correction
        map_T_odom = transform_to_matrix(_map_to_odom(g)[-1][0].transform)
        map_T_camera = pose_to_matrix(pose.pose)
        odom_T_camera = robot.odom_T_base(stamp) @ BASE_T_CAMERA
        np.testing.assert_allclose(map_T_odom @ odom_T_camera, map_T_camera, atol=1e-6)
        map_T_base = pose_to_matrix(g.base_poses[stamp].pose.pose)
        np.testing.assert_allclose(map_T_base, map_T_camera @ invert_pose(BASE_T_CAMERA), atol=1e-6)
        cov = np.array(g.base_poses[stamp].pose.covariance).reshape(6, 6)
        assert np.all(np.linalg.eigvalsh(cov) > 0) and g.base_poses[stamp].header.frame_id == "map"
        checked += 1
    assert checked >= 2
    stopped = time.monotonic()
    time.sleep(2.0)
    after = _map_to_odom(g, stopped + 0.5)
    rate = len(after) / 1.5
    assert rate >= 0.8 * 20.0, f"map -> odom at {rate:.1f} Hz after the images stopped"
    newest = max(stamp_to_ns(ts.header.stamp) for ts, _ in after)
    assert newest > time.time_ns() - int(0.2e9), "map -> odom is not future-dated from now"
    parents = _parents(g.tf)
    assert all(len(p) == 1 for p in parents.values()), dict(parents)
    assert parents["odom"] == {"map"} and CAMERA not in parents or parents[CAMERA] == {"camera_link"}
    assert not g.initialposes


def test_stale_odometry_and_bad_tf_never_stop_pose_output(robot_graph, tiny_scene):
    g, robot = robot_graph()
    frame = tiny_scene.frames[tiny_scene.good_frame]
    nan_T = np.eye(4)
    bad = transform_stamped_from_matrix(nan_T, time.time_ns(), "odom", "base_link")
    bad.transform.translation.x = float("nan")
    g.tf_pub.publish(TFMessage(transforms=[bad]))
    stamp, pose = _send(g, frame)
    assert pose is not None, "a NaN in an odom TF message stopped the pose output"
    robot.stop()
    time.sleep(0.5)  # odometry is now 0.5 s older than the next image (odom_tolerance 0.1 s)
    before = _map_to_odom(g)[-1][0]
    stamp, pose = _send(g, frame)
    assert pose is not None, "~/pose must still come without fresh odometry"
    assert g.wait_for(lambda: int(g.diagnostics.get("rejected_stale_odom", 0)) >= 1, 5.0), g.diagnostics
    after = _map_to_odom(g)[-1][0]
    np.testing.assert_allclose(transform_to_matrix(after.transform), transform_to_matrix(before.transform),
                               atol=1e-12)  # no correction from a frame without odometry
    assert int(g.diagnostics.get("rejected_bad_tf", 0)) >= 1


def test_without_odometry_poses_only_and_diagnostics_say_why(robot_graph, tiny_scene):
    g, _ = robot_graph(robot=False)
    stamp, pose = _send(g, tiny_scene.frames[tiny_scene.good_frame])
    assert pose is not None
    assert g.wait_for(lambda: "waiting_map_to_odom" in g.diagnostics, 5.0), g.diagnostics
    assert g.diagnostics["_level"] == "1" and "odom" in g.diagnostics["waiting_map_to_odom"]
    assert not _map_to_odom(g)


def test_camera_mode_refuses_a_frame_with_a_parent(robot_graph, tiny_scene):
    g, _ = robot_graph(tf_mode="camera", tf_child_frame=CAMERA)
    stamp, pose = _send(g, tiny_scene.frames[tiny_scene.good_frame])
    assert pose is not None
    assert g.wait_for(lambda: "already has the parent" in g.diagnostics.get("waiting_tf", ""), 5.0), g.diagnostics
    with g.lock:
        assert not [ts for ts, _ in g.tf if ts.header.frame_id == "map" and ts.child_frame_id == CAMERA]
    g2, _ = robot_graph(tf_mode="camera")  # the default child frame is a frame of its own
    stamp, pose = _send(g2, tiny_scene.frames[tiny_scene.good_frame])
    assert g2.wait_for(lambda: any(ts.child_frame_id == "glace_camera" for ts, _ in g2.tf), 5.0)


def _good(tiny_scene):
    return [i for i, p in enumerate(tiny_scene.offline_poses) if p is not None
            and tiny_scene.offline_inliers[i] >= tiny_scene.min_inliers]


def test_initialpose_once(robot_graph, tiny_scene):
    g, _ = robot_graph(initialpose_mode="once")
    for i in _good(tiny_scene)[:3]:
        assert _send(g, tiny_scene.frames[i])[1] is not None
    time.sleep(0.3)
    assert len(g.initialposes) == 1


def test_initialpose_on_jump(robot_graph, tiny_scene):
    """/initialpose is a global topic: one graph per test, so no other node's messages are counted."""
    good = _good(tiny_scene)
    g2, _ = robot_graph(still=True, initialpose_mode="on_jump", initialpose_jump_distance=0.05,
                        initialpose_jump_angle=2.0)
    for i in [good[0], good[0], good[-1]]:  # the same frame twice (no jump), then another place
        assert _send(g2, tiny_scene.frames[i])[1] is not None
    time.sleep(0.3)
    far = np.linalg.norm(tiny_scene.offline_poses[good[0]][:3, 3] - tiny_scene.offline_poses[good[-1]][:3, 3])
    assert len(g2.initialposes) == (2 if far > 0.05 else 1)
