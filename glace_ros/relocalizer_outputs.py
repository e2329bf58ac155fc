"""What the relocalizer publishes for a localized frame, and its publishers.

- ``~/pose`` (PoseStamped) and ``~/pose_with_covariance``: the camera's optical frame in
  ``map_frame``, stamped with the image stamp.
- ``~/base_pose`` (PoseWithCovarianceStamped): ``base_frame`` in ``map_frame``,
  ``map_T_base = map_T_camera . inverse(base_T_camera)``, its covariance carried from the camera by
  the adjoint of the lever arm (``glace_core.pose_covariance.transform_pose_covariance``): what
  robot_localization's ``poseN`` input expects.
- ``/initialpose`` (Nav2 AMCL): ``~/base_pose`` when the ``InitialPosePolicy`` says so (it needs
  base_frame -> camera in TF); the publisher is created when the mode is not ``off`` or at the
  first ``~/localize`` request.
- ``/tf``: map -> tf_child_frame at the image stamp in tf_mode ``camera``; map -> odom in tf_mode
  ``odom`` (also republished by the node's timer, ``glace_ros.tf_output``).
- ``~/scene_coordinates`` (PointCloud2) when ``publish_point_cloud`` is set.
"""
from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from sensor_msgs.msg import PointCloud2
from tf2_msgs.msg import TFMessage

from glace_core.geometry import invert_pose
from glace_core.localizer import Localization
from glace_core.pose_covariance import transform_pose_covariance
from glace_ros.output_policy import InitialPosePolicy
from glace_ros.pose_messages import (point_cloud2_from_scene_coordinates, pose_stamped_from_matrix,
                                     pose_with_covariance_from_matrix)
from glace_ros.qos import pose_qos, tf_qos
from glace_ros.relocalizer_params import RelocalizerParams
from glace_ros.tf_output import TfOutput

__all__ = ["RelocalizerOutputs", "base_pose_with_covariance"]

MATCH_WAIT_S = 2.0  # how long a just-created /initialpose publisher waits for its subscribers


def base_pose_with_covariance(map_T_camera: np.ndarray, covariance: np.ndarray,
                              base_T_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(map_T_base (4, 4), its (36,) covariance) from the camera's pose and covariance."""
    camera_T_base = invert_pose(base_T_camera)
    map_T_base = map_T_camera @ camera_T_base
    lever = map_T_camera[:3, :3] @ camera_T_base[:3, 3]
    return map_T_base, transform_pose_covariance(covariance, lever)


class RelocalizerOutputs:
    """The publishers of one active relocalizer (created on activation, destroyed on deactivation)."""

    def __init__(self, node, params: RelocalizerParams, tf: TfOutput):
        self.node, self.params, self.tf = node, params, tf
        out = pose_qos(10)
        self.pose = node.create_publisher(PoseStamped, "~/pose", out)
        self.pose_cov = node.create_publisher(PoseWithCovarianceStamped, "~/pose_with_covariance", out)
        self.base_pose = node.create_publisher(PoseWithCovarianceStamped, "~/base_pose", out)
        self.tf_pub = node.create_publisher(TFMessage, "/tf", tf_qos()) if params.tf_mode != "none" else None
        self.cloud = (node.create_publisher(PointCloud2, "~/scene_coordinates", out)
                      if params.publish_point_cloud else None)
        self.initialpose = None
        self.policy = InitialPosePolicy(params.initialpose_mode, params.initialpose_jump_distance,
                                        params.initialpose_jump_angle)
        if params.initialpose_mode != "off":
            self._initialpose_publisher()

    def _initialpose_publisher(self):
        if self.initialpose is None:
            self.initialpose = self.node.create_publisher(PoseWithCovarianceStamped, "/initialpose", pose_qos(10))
            self._initialpose_since = time.monotonic()
        return self.initialpose

    def _send_initialpose(self, msg) -> None:
        """Publish on /initialpose; a publisher created moments ago (at a ``~/localize`` request)
        first waits up to MATCH_WAIT_S for AMCL's subscription to match, so the message is not lost."""
        pub = self._initialpose_publisher()
        deadline = self._initialpose_since + MATCH_WAIT_S
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        pub.publish(msg)

    def request_initialpose(self) -> None:
        """The next published base pose also goes to /initialpose (``~/localize``)."""
        self._initialpose_publisher()
        self.policy.request()

    def publish_tf(self, transform) -> None:
        if self.tf_pub is not None and transform is not None:
            self.tf_pub.publish(TFMessage(transforms=[transform]))

    def publish(self, stamp, loc: Localization, base_T_camera: np.ndarray | None,
                predicted_map_T_camera: np.ndarray | None, camera_transform=None) -> bool:
        """Publish one localized frame (``camera_transform``: the /tf message of camera mode, sent
        first). Returns whether /initialpose was sent."""
        p, T = self.params, loc.camera_to_world
        self.publish_tf(camera_transform)
        self.pose.publish(pose_stamped_from_matrix(T, stamp, p.map_frame))
        self.pose_cov.publish(pose_with_covariance_from_matrix(T, stamp, loc.covariance, p.map_frame))
        sent = False
        if base_T_camera is not None:
            map_T_base, cov = base_pose_with_covariance(T, loc.covariance, base_T_camera)
            base_msg = pose_with_covariance_from_matrix(map_T_base, stamp, cov, p.map_frame)
            self.base_pose.publish(base_msg)
            predicted = (None if predicted_map_T_camera is None
                         else predicted_map_T_camera @ invert_pose(base_T_camera))
            if self.policy.should_send(map_T_base, predicted):
                self._send_initialpose(base_msg)
                sent = True
        if self.cloud is not None:
            xyz = loc.scene_coordinates.reshape(3, -1).T
            xyz = np.ascontiguousarray(xyz[np.all(np.isfinite(xyz), axis=1)], dtype=np.float32)
            header = pose_stamped_from_matrix(np.eye(4), stamp, p.map_frame).header
            self.cloud.publish(point_cloud2_from_scene_coordinates(xyz, header))
        return sent

    def destroy(self) -> None:
        for pub in (self.pose, self.pose_cov, self.base_pose, self.tf_pub, self.cloud, self.initialpose):
            if pub is not None:
                self.node.destroy_publisher(pub)
