"""QoS profiles of the relocalization node's topics (REP-2003 style choices).

- Camera images and camera_info: the sensor-data profile (best effort, keep last, volatile), so a
  slow relocaliser drops stale frames instead of queueing them and it can subscribe to both
  reliable and best-effort publishers; or, with the node's ``image_qos: reliable``, reliable (for
  replay tools that must not lose a frame).
- Poses and /tf: reliable, keep last, volatile.
- /tf_static: reliable, transient local, deep history, as tf2_ros's static broadcaster and
  listener use it, so a late joiner still receives every static transform.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

__all__ = ["image_qos", "reliable_image_qos", "pose_qos", "tf_qos", "tf_static_qos"]


def image_qos(depth: int = 5) -> QoSProfile:
    """Sensor data: best effort, keep last ``depth``, volatile (images and camera_info)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def reliable_image_qos(depth: int = 5) -> QoSProfile:
    """Images for a tool that must not lose frames (``image_qos: reliable``): reliable, keep last
    ``depth``, volatile. It matches reliable publishers only."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def pose_qos(depth: int = 10) -> QoSProfile:
    """Reliable, keep last ``depth``, volatile (PoseStamped, PoseWithCovarianceStamped, clouds)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def tf_qos(depth: int = 100) -> QoSProfile:
    """/tf: reliable, keep last 100, volatile (tf2_ros's defaults)."""
    return pose_qos(depth)


def tf_static_qos(depth: int = 100) -> QoSProfile:
    """/tf_static: reliable, transient local, keep last 100 (tf2_ros's static profile)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
