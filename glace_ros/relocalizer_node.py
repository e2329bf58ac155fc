"""The relocalizer node: camera images + CameraInfo in, map-frame poses out.

Run it with ``glace-relocalizer --ros-args -p map_path:=MAP.pt`` (or ``ros2 run glace_ros relocalizer``
/ ``ros2 launch glace_ros relocalizer.launch.py map_path:=...``). Parameters:
``glace_ros.relocalizer_params`` and ``config/relocalizer.yaml``. The managed (lifecycle) variant is
``glace_ros.relocalizer_lifecycle``; both share ``glace_ros.relocalizer.RelocalizerMixin``.

Topics (``~`` is the node's name, ``glace_relocalizer`` by default):

- in: ``image_topic`` (sensor_msgs/Image, or CompressedImage with ``use_compressed``) and
  ``camera_info_topic`` (QoS ``image_qos``); /tf and /tf_static (odometry, the robot's frames).
- out (reliable): ``~/pose`` (PoseStamped) and ``~/pose_with_covariance`` (the camera's optical
  frame), ``~/base_pose`` (``base_frame``, for robot_localization), stamped with the image's stamp
  in ``map_frame``; /tf per ``tf_mode`` (REP-105 map -> odom by default); /diagnostics (1 Hz);
  /initialpose per ``initialpose_mode``; ``~/scene_coordinates`` (PointCloud2) on request.
- service: ``~/localize`` (std_srvs/Trigger): localize the next frame, publish /initialpose.

A missing or corrupt map at start-up is a fatal error naming the file (exit code 1).
"""
from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from glace_ros.relocalizer import RelocalizerMixin, StartupError
from glace_ros.relocalizer_params import NODE_NAME, yaml_document

__all__ = ["RelocalizerNode", "StartupError", "main", "run_node"]

USAGE = """usage: {prog} --ros-args [--params-file FILE] [-p NAME:=VALUE ...] [-r __node:=NAME]

The GLACE relocalizer node{extra}. Parameters, with their defaults (the content of
config/relocalizer.yaml):

"""


class RelocalizerNode(RelocalizerMixin, Node):
    """The relocalizer, configured and active from construction; ``kwargs`` go to ``rclpy.node.Node``."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self._declare()
            self._configure()
            self._activate()
        except Exception:
            self.destroy_node()
            raise

    def destroy_node(self):
        if hasattr(self, "_entities"):
            self._deactivate()
        return super().destroy_node()


def run_node(node_class, args=None, prog: str = "glace-relocalizer", extra: str = "") -> int:
    """``main`` of a relocalizer node class: --help, init, spin, clean shutdown; the exit code."""
    argv = list(sys.argv[1:] if args is None else args)
    user_args = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in user_args or "--help" in user_args:
        print(USAGE.format(prog=prog, extra=extra) + yaml_document(), end="")
        return 0
    rclpy.init(args=args)
    node, code = None, 0
    try:
        node = node_class()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def main(args=None) -> int:
    """Console script ``glace-relocalizer`` / ``ros2 run glace_ros relocalizer``; returns the exit code."""
    return run_node(RelocalizerNode, args, extra=" (also `ros2 run glace_ros relocalizer`)")


if __name__ == "__main__":
    sys.exit(main())
