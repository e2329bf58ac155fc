"""glace_ros.qos on a live rclpy graph: which publishers the node's subscriptions hear."""
from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from glace_ros.pose_messages import transform_stamped_from_matrix
from glace_ros.qos import image_qos, pose_qos, reliable_image_qos, tf_static_qos

from relocalizer_graph import make_context

pytestmark = pytest.mark.ros


@pytest.fixture
def graph():
    ctx = make_context()
    node = rclpy.create_node(f"qos_test_{id(ctx)}", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    thread = threading.Thread(target=ex.spin, daemon=True)
    thread.start()
    yield node
    ex.shutdown(timeout_sec=2.0)
    thread.join(5.0)
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def _received(node, topic, pub_qos, sub_qos, msg_type=String, make=lambda i: String(data=str(i)), n=5,
              late_subscriber=False) -> int:
    got = []
    pub = node.create_publisher(msg_type, topic, pub_qos)
    sub = None if late_subscriber else node.create_subscription(msg_type, topic, got.append, sub_qos)
    time.sleep(0.5)
    for i in range(n):
        pub.publish(make(i))
    if late_subscriber:
        time.sleep(0.5)
        sub = node.create_subscription(msg_type, topic, got.append, sub_qos)
    deadline = time.monotonic() + 3.0
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    node.destroy_subscription(sub)
    node.destroy_publisher(pub)
    return len(got)


def test_sensor_data_images_hear_reliable_and_best_effort_cameras(graph):
    best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    assert _received(graph, "/q/reliable_cam", pose_qos(5), image_qos()) == 5
    assert _received(graph, "/q/best_effort_cam", best_effort, image_qos()) == 5


def test_reliable_images_hear_only_reliable_publishers(graph):
    best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    assert _received(graph, "/q/replay", pose_qos(5), reliable_image_qos()) == 5
    assert _received(graph, "/q/best_effort_replay", best_effort, reliable_image_qos()) == 0


def test_tf_static_reaches_a_late_subscriber(graph):
    import numpy as np

    def make(i):
        return TFMessage(transforms=[transform_stamped_from_matrix(np.eye(4), 0, "base_link", f"sensor_{i}")])

    assert _received(graph, "/q/tf_static", tf_static_qos(), tf_static_qos(), TFMessage, make, n=3,
                     late_subscriber=True) == 3
    assert _received(graph, "/q/tf_volatile", pose_qos(), pose_qos(), TFMessage, make, n=3, late_subscriber=True) == 0
