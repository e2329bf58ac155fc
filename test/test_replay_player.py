"""glace_ros.replay_player against the live relocalizer node (in-process graph, tiny scene).

The player publishes real serialised messages through a reliable link; a ``LossyPublisher`` loses
one chosen image once, as a transport would, to show that lockstep re-sends it.
"""
from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, Image

from glace_ros.image_conversion import numpy_to_image
from glace_ros.qos import pose_qos, reliable_image_qos
from glace_ros.replay_player import BagPlayer, Recorder

from relocalizer_graph import RelocalizerGraph, camera_info_msg, header

pytestmark = pytest.mark.ros
_count = iter(range(1000))
NO_GATE = {"min_inlier_count": 0, "max_position_stddev": 0.0, "max_rotation_stddev": 0.0}


class LossyPublisher:
    """A publisher that loses its ``lose``-th message (0-based) once."""

    def __init__(self, publisher, lose: int | None):
        self.publisher, self.lose, self.calls = publisher, lose, 0

    def publish(self, data):
        lost = self.calls == self.lose
        self.calls += 1
        if not lost:
            self.publisher.publish(data)


@pytest.fixture
def player_setup(context, tiny_scene):
    graphs = []

    def make(mode: str, lose: int | None = None):
        ns = f"player{os.getpid()}_{next(_count)}"
        g = RelocalizerGraph(context, ns, {"map_path": str(tiny_scene.map_path), "encoder_path": tiny_scene.encoder,
                                           "image_resolution": tiny_scene.resolution, "image_qos": "reliable",
                                           "frame_queue": 4, **NO_GATE})
        graphs.append(g)
        t = g.tester
        image_pub = t.create_publisher(Image, g.params["image_topic"], reliable_image_qos(10))
        info_pub = t.create_publisher(CameraInfo, g.params["camera_info_topic"], reliable_image_qos(10))
        recorder = Recorder(f"{ns}/{g.node.get_name()}")
        t.create_subscription(PoseStamped, f"/{ns}/{g.node.get_name()}/pose", recorder.on_pose, pose_qos(100))
        t.create_subscription(DiagnosticArray, "/diagnostics", recorder.on_diagnostics, pose_qos(10))
        deadline = time.monotonic() + 30
        while image_pub.get_subscription_count() == 0 or info_pub.get_subscription_count() == 0:
            assert time.monotonic() < deadline, "the node's reliable subscriptions did not match"
            time.sleep(0.05)
        time.sleep(0.5)
        pubs = {g.params["image_topic"]: LossyPublisher(image_pub, lose), g.params["camera_info_topic"]: info_pub}
        player = BagPlayer(pubs, g.params["image_topic"], g.params["camera_info_topic"], recorder, lambda: True,
                           mode, frame_timeout=60.0, resend_timeout=2.5)
        return g, player, recorder

    yield make
    for g in graphs:
        g.close()


def _messages(tiny_scene, g):
    """Bag-like messages (CameraInfo then image per frame) and the image stamps."""
    msgs, stamps = [], {}
    for i, frame in enumerate(tiny_scene.frames):
        stamp = (i + 1) * 10 ** 8
        h, w = frame.rgb.shape[:2]
        info = camera_info_msg(frame.K, h, w, stamp, "cam")
        image = numpy_to_image(frame.rgb, "rgb8")
        image.header = header(stamp, "cam")
        msgs.append(SimpleNamespace(topic=g.params["camera_info_topic"], data=serialize_message(info),
                                    timestamp_ns=stamp))
        image_msg = SimpleNamespace(topic=g.params["image_topic"], data=serialize_message(image), timestamp_ns=stamp)
        stamps[id(image_msg)] = stamp
        msgs.append(image_msg)
    return msgs, lambda m: stamps[id(m)]


def _localizable(tiny_scene):
    return {(i + 1) * 10 ** 8 for i, p in enumerate(tiny_scene.offline_poses) if p is not None}


def test_lockstep_resends_a_lost_image(player_setup, tiny_scene):
    g, player, recorder = player_setup("lockstep", lose=2)
    messages, stamp_of = _messages(tiny_scene, g)
    frames = player.play(messages, stamp_of)
    assert len(frames) == len(tiny_scene.frames)
    assert player.resent == 1 and frames[2].resends == 1
    assert _localizable(tiny_scene) <= set(recorder.answers), "a frame was lost for good"


def test_as_fast_as_possible_loses_nothing(player_setup, tiny_scene):
    g, player, recorder = player_setup("fast")
    messages, stamp_of = _messages(tiny_scene, g)
    player.play(messages, stamp_of)
    assert player.resent == 0
    assert _localizable(tiny_scene) <= set(recorder.answers)
    assert g.wait_for(lambda: int(g.diagnostics.get("frames_processed", 0)) == len(tiny_scene.frames), 10.0)
    assert g.diagnostics["frames_dropped"] == "0"


def test_the_node_environment_carries_images_and_sleeping_openmp_from_a_bare_shell(tmp_path):
    """What glace-replay-eval gives the node it starts, whatever the caller's shell set: the package's
    shared-memory transport profile and passive OpenMP (as scripts/env.sh and the launch file); a
    value the caller set is kept."""
    from glace_ros.replay_node import PROFILE_NAME, ros_environment

    bare = ros_environment({"PATH": os.environ.get("PATH", "")})
    assert bare["OMP_WAIT_POLICY"] == "PASSIVE"
    assert bare["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert bare["FASTDDS_DEFAULT_PROFILES_FILE"].endswith(PROFILE_NAME)
    assert os.path.isdir(bare["ROS_LOG_DIR"])
    own = ros_environment({"OMP_WAIT_POLICY": "ACTIVE", "ROS_LOG_DIR": str(tmp_path)})
    assert own["OMP_WAIT_POLICY"] == "ACTIVE" and own["ROS_LOG_DIR"] == str(tmp_path)
