"""A live rclpy graph around one RelocalizerNode, for the node tests.

``RelocalizerGraph`` starts the node in-process (its own namespace and topics) plus a tester node
that publishes images, CameraInfo and TF and records what the relocalizer publishes, all spun by a
SingleThreadedExecutor each in a background thread. Use a context from :func:`make_context`, whose DDS
domain id is derived from the process id, so parallel test sessions do not hear each other.
"""
from __future__ import annotations

import os
import threading
import time
from collections import defaultdict

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from glace_ros.qos import image_qos, pose_qos, tf_qos, tf_static_qos
from glace_ros.relocalizer_node import RelocalizerNode
from glace_ros.stamps import stamp_to_ns


def session_domain_id() -> int:
    """A DDS domain id for this process (1..200), unless ROS_DOMAIN_ID is set."""
    if os.environ.get("ROS_DOMAIN_ID"):
        return int(os.environ["ROS_DOMAIN_ID"])
    return 1 + os.getpid() % 200


def make_context() -> rclpy.Context:
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=session_domain_id())
    return context


def header(stamp_ns: int, frame_id: str) -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000
    return h


def camera_info_msg(K: np.ndarray, height: int, width: int, stamp_ns: int, frame_id: str) -> CameraInfo:
    """CameraInfo for K in our pixel convention (centre of pixel i at i + 0.5): ROS's cx = ours - 0.5."""
    K = np.asarray(K, dtype=np.float64)
    k = K.copy()
    k[0, 2] -= 0.5
    k[1, 2] -= 0.5
    msg = CameraInfo(header=header(stamp_ns, frame_id), height=int(height), width=int(width),
                     distortion_model="plumb_bob")
    msg.k = k.reshape(9).tolist()
    msg.d = [0.0] * 5
    msg.r = np.eye(3).reshape(9).tolist()
    p = np.zeros((3, 4))
    p[:, :3] = k
    msg.p = p.reshape(12).tolist()
    return msg


class RelocalizerGraph:
    """The relocalizer node (namespace ``ns``) + a tester node, spinning in a background thread.

    params: node parameters; the image/info topics default to /<ns>/camera/... so that tests do not
    share topics. Recorded outputs: ``poses`` (stamp ns -> (PoseStamped, monotonic arrival)),
    ``poses_cov``, ``tf`` (list of TransformStamped with arrival), ``diagnostics`` (latest key/value
    dict), ``clouds``, ``initialposes``.
    """

    def __init__(self, context: rclpy.Context, ns: str, params: dict, compressed: bool = False,
                 node_class=RelocalizerNode):
        self.ns = ns
        params = {"image_topic": f"/{ns}/camera/image_raw", "camera_info_topic": f"/{ns}/camera/camera_info",
                  **params}
        self.params = params
        overrides = [Parameter(k, value=list(v) if isinstance(v, tuple) else v) for k, v in params.items()]
        self.node = node_class(context=context, namespace=ns, parameter_overrides=overrides)
        self.tester = rclpy.create_node(f"tester_{ns}", context=context, namespace=ns)
        t = self.tester
        image_topic = self.node.image_topic
        self.image_pub = t.create_publisher(CompressedImage if compressed else Image, image_topic, image_qos(50))
        self.info_pub = t.create_publisher(CameraInfo, params["camera_info_topic"], image_qos(50))
        self.tf_pub = t.create_publisher(TFMessage, "/tf", tf_qos())
        self.tf_static_pub = t.create_publisher(TFMessage, "/tf_static", tf_static_qos())
        self.lock = threading.Condition()
        self.poses: dict[int, tuple[PoseStamped, float]] = {}
        self.pose_order: list[int] = []
        self.poses_cov: dict[int, PoseWithCovarianceStamped] = {}
        self.tf: list[tuple[object, float]] = []
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_count = 0
        self.clouds: dict[int, PointCloud2] = {}
        self.initialposes: dict[int, PoseWithCovarianceStamped] = {}
        self.base_poses: dict[int, PoseWithCovarianceStamped] = {}
        self.published_at: dict[int, float] = {}
        node_ns = f"/{ns}/{self.node.get_name()}"
        t.create_subscription(PoseStamped, f"{node_ns}/pose", self._on_pose, pose_qos(100))
        t.create_subscription(PoseWithCovarianceStamped, f"{node_ns}/pose_with_covariance",
                              lambda m: self._store(self.poses_cov, m), pose_qos(100))
        t.create_subscription(PoseWithCovarianceStamped, f"{node_ns}/base_pose",
                              lambda m: self._store(self.base_poses, m), pose_qos(100))
        t.create_subscription(PointCloud2, f"{node_ns}/scene_coordinates", lambda m: self._store(self.clouds, m),
                              pose_qos(10))
        t.create_subscription(PoseWithCovarianceStamped, "/initialpose",
                              lambda m: self._store(self.initialposes, m), pose_qos(10))
        t.create_subscription(TFMessage, "/tf", self._on_tf, tf_qos())
        t.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, pose_qos(10))
        # Each node gets a SingleThreadedExecutor of its own, as `rclpy.spin` gives the node in production.
        # Not one MultiThreadedExecutor for both: while a callback of a mutually exclusive group runs, its
        # wait set stays ready and rclpy's MultiThreadedExecutor loops on it at 100 % of a core, holding
        # the GIL; the node's map -> odom republisher thread then starved for up to a second (measured on
        # a 2-core VM: 3-14 Hz instead of 20 in half the runs of test_defaults_fit_a_urdf_tree).
        self.executors = [SingleThreadedExecutor(context=context), SingleThreadedExecutor(context=context)]
        self.executors[0].add_node(self.node)
        self.executors[1].add_node(t)
        self._spin_error: BaseException | None = None
        self._threads = [threading.Thread(target=self._spin, args=(e,), daemon=True) for e in self.executors]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ recording

    def _spin(self, executor):
        try:
            executor.spin()
        except BaseException as exc:  # noqa: BLE001 - reported by spinning()
            self._spin_error = exc

    def spinning(self) -> bool:
        """Both executor threads are alive (a callback exception would have ended one)."""
        return all(t.is_alive() for t in self._threads) and self._spin_error is None

    def _store(self, table: dict, msg) -> None:
        with self.lock:
            table[stamp_to_ns(msg.header.stamp)] = msg
            self.lock.notify_all()

    def _on_pose(self, msg: PoseStamped) -> None:
        now = time.monotonic()
        with self.lock:
            stamp = stamp_to_ns(msg.header.stamp)
            self.poses[stamp] = (msg, now)
            self.pose_order.append(stamp)
            self.lock.notify_all()

    def _on_tf(self, msg: TFMessage) -> None:
        now = time.monotonic()
        with self.lock:
            self.tf.extend((ts, now) for ts in msg.transforms)
            self.lock.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        mine = f"/{self.ns}/{self.node.get_name()}: relocalization"
        for status in msg.status:
            if status.name == mine:
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}
                    self.diagnostics["_level"] = str(int.from_bytes(status.level, "little")
                                                     if isinstance(status.level, bytes) else status.level)
                    self.diagnostics_count += 1
                    self.lock.notify_all()

    def wait_for(self, predicate, timeout: float = 120.0) -> bool:
        """Wait until ``predicate()`` is true (checked under the lock on every message)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(min(left, 0.2))
        return True

    def wait_matched(self, timeout: float = 30.0) -> bool:
        """Wait until the node's subscriptions see our publishers and we see its pose publisher."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pose_pub = self.node.pose_pub
            if (self.image_pub.get_subscription_count() > 0 and self.info_pub.get_subscription_count() > 0
                    and pose_pub is not None and pose_pub.get_subscription_count() > 0):
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------------ publishing

    def publish_frame(self, image_msg, K: np.ndarray | None, height: int, width: int, stamp_ns: int,
                      frame_id: str = "camera_optical_frame") -> None:
        """Publish the CameraInfo (if K is given) then the image, both with ``stamp_ns``."""
        if K is not None:
            self.info_pub.publish(camera_info_msg(K, height, width, stamp_ns, frame_id))
        image_msg.header = header(stamp_ns, frame_id)
        with self.lock:
            self.published_at[stamp_ns] = time.monotonic()
        self.image_pub.publish(image_msg)

    def processed(self) -> int:
        with self.node.stats.lock:
            return self.node.stats.processed

    def localize_lockstep(self, image_msg, K, height, width, stamp_ns, frame_id="camera_optical_frame",
                          timeout: float = 120.0) -> PoseStamped | None:
        """Publish one frame and wait until the node has processed it; its PoseStamped or None."""
        before = self.processed()
        self.publish_frame(image_msg, K, height, width, stamp_ns, frame_id)
        done = self.wait_for(lambda: self.processed() > before, timeout)
        if not done:
            raise TimeoutError(f"the node did not process the frame at {stamp_ns} within {timeout} s")
        # the pose is published before `processed` is counted; allow for the delivery
        self.wait_for(lambda: stamp_ns in self.poses, 2.0)
        with self.lock:
            entry = self.poses.get(stamp_ns)
        return None if entry is None else entry[0]

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown(timeout_sec=5.0)
        for thread in self._threads:
            thread.join(timeout=10.0)
        self.node.destroy_node()
        self.tester.destroy_node()


def group_tf(transforms, parent: str, child: str) -> dict[int, object]:
    """stamp ns -> TransformStamped for the recorded transforms parent -> child."""
    out = defaultdict(list)
    for ts, _ in transforms:
        if ts.header.frame_id == parent and ts.child_frame_id == child:
            out[stamp_to_ns(ts.header.stamp)].append(ts)
    return {k: v[-1] for k, v in out.items()}
