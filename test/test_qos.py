"""glace_ros.qos: the profiles the node's topics use."""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

from glace_ros.qos import image_qos, pose_qos, tf_qos, tf_static_qos


def test_profiles():
    img = image_qos()
    assert img.reliability == ReliabilityPolicy.BEST_EFFORT and img.durability == DurabilityPolicy.VOLATILE
    assert img.history == HistoryPolicy.KEEP_LAST and img.depth == 5 and image_qos(1).depth == 1
    assert pose_qos().reliability == ReliabilityPolicy.RELIABLE and pose_qos().durability == DurabilityPolicy.VOLATILE
    assert tf_qos().depth == 100 and tf_qos().reliability == ReliabilityPolicy.RELIABLE
    static = tf_static_qos()
    assert static.durability == DurabilityPolicy.TRANSIENT_LOCAL and static.reliability == ReliabilityPolicy.RELIABLE
