"""The relocalizer's behaviour, shared by the plain node and the lifecycle node.

:class:`RelocalizerMixin` goes in front of ``rclpy.node.Node`` (``relocalizer_node``) or
``rclpy.lifecycle.LifecycleNode`` (``relocalizer_lifecycle``). Its steps follow the ROS 2
lifecycle: ``_configure`` loads and warms the map, ``_activate`` creates the subscriptions,
publishers, timers and the ``~/localize`` service and starts the worker, ``_deactivate`` removes
them, ``_cleanup`` frees the map. The plain node runs configure and activate in its constructor.

Per frame (worker thread, ``glace_ros.frame_worker``): decode the image, pair it with its
CameraInfo (``camera_info_sync``), localise it (``glace_core.localizer``), read odometry and the
robot's frames from TF (``tf_output``), apply the quality gate (``output_policy``) and publish
(``relocalizer_outputs``). Bad input is logged (throttled), counted in /diagnostics
(``node_diagnostics``) and skipped; the node keeps running.
"""
from __future__ import annotations

import gc
import math
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from glace_core.localizer import LocalizationError, Localizer
from glace_core.preprocess import resized_shape
from glace_ros.camera_info import (CameraInfoError, camera_info_image_size, has_distortion, intrinsics_for_image,
                                   intrinsics_from_camera_info)
from glace_ros.camera_info_sync import CameraInfoSync
from glace_ros.frame_worker import LatestFrameWorker
from glace_ros.image_conversion import ImageConversionError, decode_for_localization
from glace_ros.node_diagnostics import NodeStats, diagnostic_status
from glace_ros.output_policy import gate_cause
from glace_ros.pose_messages import pose_to_text
from glace_ros.qos import image_qos, pose_qos, reliable_image_qos, tf_qos, tf_static_qos
from glace_ros.relocalizer_outputs import RelocalizerOutputs
from glace_ros.relocalizer_params import compressed_topic
from glace_ros.ros_parameters import ParameterWatcher, declare_parameters
from glace_ros.stamps import stamp_to_ns
from glace_ros.tf_output import StaleOdometryError, TfConflictError, TfOutput

__all__ = ["StartupError", "RelocalizerMixin"]

THROTTLE_S = 5.0  # seconds between repeated warnings of one kind
DIAGNOSTICS_PERIOD_S = 1.0
DECODE_PIXELS_FACTOR = 16  # compressed images may decode to at most this x max_input_pixels


class StartupError(RuntimeError):
    """The node cannot start (missing/corrupt map, bad parameters); the message names the cause."""


class RelocalizerMixin:
    """See the module docstring; ``self`` is an rclpy Node or LifecycleNode."""

    def _declare(self) -> None:
        self.stats = NodeStats()
        self.localizer: Localizer | None = None
        self.outputs: RelocalizerOutputs | None = None
        self._worker: LatestFrameWorker | None = None
        self._entities: list = []
        self._swap_lock = threading.Lock()
        self._requests: list[Future] = []
        self._requests_lock = threading.Lock()
        try:
            params = declare_parameters(self)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self._watcher = ParameterWatcher(self, params, {"map_path": self._check_new_map}, lambda _: None)
        self.image_topic = compressed_topic(params.image_topic) if params.use_compressed else params.image_topic

    @property
    def params(self):
        return self._watcher.params

    @property
    def pose_pub(self):
        return None if self.outputs is None else self.outputs.pose

    # ------------------------------------------------------------------ lifecycle steps

    def _load(self, map_path: str) -> Localizer:
        p = self.params
        localizer = Localizer.load(map_path, p.encoder_path or None, p.device, p.global_checkpoint or None,
                                   tuple(p.global_resolution))
        h = localizer.resolution(p.image_resolution)
        localizer.warm_up(h, h * 4 // 3, p.localizer_options())  # a 4:3 camera at the network resolution
        return localizer

    def _configure(self) -> None:
        p = self.params
        if p.tf_mode == "camera" and p.tf_child_frame in {p.map_frame, p.odom_frame, p.base_frame, p.camera_frame}:
            raise StartupError(f"tf_child_frame {p.tf_child_frame!r} is one of the robot's frames: tf_mode 'camera' "
                               "must publish map -> a frame of its own (it would give that frame a second parent)")
        try:
            self.localizer = self._load(p.map_path)
        except Exception as exc:  # noqa: BLE001 - every loading failure is fatal, with its message
            raise StartupError(f"cannot load the relocalization model (map_path={p.map_path!r}, encoder_path="
                               f"{p.encoder_path!r}, global_checkpoint={p.global_checkpoint!r}): "
                               f"{type(exc).__name__}: {exc}") from exc
        if self.localizer.zero_global_reason:
            self.get_logger().warning(
                f"the map's head takes a {self.localizer.global_channels}-d global descriptor but global_checkpoint "
                "is empty: using zero global features, which lowers accuracy; set global_checkpoint to the "
                "R2Former checkpoint (CVPR23_DeitS_Rerank.pth)")
        self.tf = TfOutput(p.tf_mode, p.map_frame, p.odom_frame, p.tf_child_frame, p.transform_tolerance,
                           p.odom_tolerance)
        self.camera_infos = CameraInfoSync(p.camera_info_tolerance)
        # what is loaded now lives as long as the node: keep it out of the cyclic collector's full
        # passes, which otherwise walk every tensor and module object every few hundred frames
        gc.collect()
        gc.freeze()

    def _activate(self) -> None:
        p = self.params
        self.outputs = RelocalizerOutputs(self, p, self.tf)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", pose_qos(10))
        qos = reliable_image_qos() if p.image_qos == "reliable" else image_qos()
        kind = CompressedImage if p.use_compressed else Image
        self._entities = [
            self.create_subscription(kind, self.image_topic, self._on_image, qos),
            self.create_subscription(CameraInfo, p.camera_info_topic, self._on_camera_info, qos),
            self.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), tf_qos()),
            self.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), tf_static_qos()),
            self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics),
            self.create_service(Trigger, "~/localize", self._on_localize,
                                callback_group=MutuallyExclusiveCallbackGroup()),
        ]
        self._wake = self.create_guard_condition(lambda: None, callback_group=ReentrantCallbackGroup())
        self._republish_stop = threading.Event()
        self._republisher = None
        if p.tf_mode == "odom":  # a thread of its own, as slam_toolbox's: the rate holds when the executor is busy
            self._republisher = threading.Thread(target=self._republish_loop, args=(1.0 / p.transform_publish_rate,),
                                                 name="glace-map-to-odom", daemon=True)
            self._republisher.start()
        self._worker = LatestFrameWorker(self._process, self._internal_error, "glace-relocalizer-worker",
                                         p.frame_queue)
        enc = getattr(self.localizer.encoder, "encoder_id", getattr(self.localizer.encoder, "name", "?"))
        keyframes = self.localizer.keyframes
        refinement = (f"keyframe refinement {'on' if p.keyframe_refinement else 'off (parameter)'} "
                      f"({len(keyframes)} keyframes)" if keyframes is not None else
                      "no keyframe refinement (the map has no keyframes file; glace-keyframes writes one)")
        self.get_logger().info(f"localizing against {p.map_path} (encoder {enc}, device {self.localizer.device}); "
                               f"images from {self.image_topic}, intrinsics from {p.camera_info_topic}; "
                               f"tf_mode {p.tf_mode}; {refinement}")

    def _deactivate(self) -> None:
        if getattr(self, "_republisher", None) is not None:
            self._republish_stop.set()
            self._republisher.join(5.0)
            self._republisher = None
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        for entity in self._entities:
            {"Subscription": self.destroy_subscription, "Timer": self.destroy_timer,
             "Service": self.destroy_service}[type(entity).__name__](entity)
        self._entities = []
        if getattr(self, "_wake", None) is not None:
            self.destroy_guard_condition(self._wake)
            self._wake = None
        self._answer_requests(False, "the relocalizer was deactivated")
        if self.outputs is not None:
            self.outputs.destroy()
            self.destroy_publisher(self.diag_pub)
            self.outputs = None

    def _cleanup(self) -> None:
        self.localizer = None

    # ------------------------------------------------------------------ parameters and services

    def _check_new_map(self, value: str) -> str | None:
        """Load the map named by a new ``map_path``; swap it in, or say why not (the old map stays)."""
        if self.localizer is None or value == self.params.map_path:
            return None  # not configured yet (the lifecycle node loads at configure), or unchanged
        try:
            loaded = self._load(value)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old map, with its reason
            self.get_logger().error(f"map_path {value!r} refused, keeping {self.params.map_path!r}: {exc}")
            return f"cannot load map {value!r} ({type(exc).__name__}: {exc}); the current map is kept"
        with self._swap_lock:
            self.localizer = loaded
        self.get_logger().info(f"now localizing against {value}")
        return None

    async def _on_localize(self, request, response):
        """~/localize: localize the next frame (also in on_demand mode), publish its pose and
        /initialpose; answers with the pose, or failure after localize_timeout."""
        future = Future()
        with self._requests_lock:
            self._requests.append(future)
        if self.outputs is not None:
            self.outputs.request_initialpose()
        timer = threading.Timer(self.params.localize_timeout, self._answer_requests,
                                (False, f"no frame localized within localize_timeout {self.params.localize_timeout:g} s "
                                        f"({self.stats.last_error or 'no image received'})", future))
        timer.start()
        success, message = await future
        timer.cancel()
        response.success, response.message = success, message
        return response

    def _answer_requests(self, success: bool, message: str, only: Future | None = None) -> None:
        with self._requests_lock:
            chosen = [f for f in self._requests if only is None or f is only]
            self._requests = [f for f in self._requests if f not in chosen]
        for future in chosen:
            if not future.done():
                future.set_result((success, message))
        if chosen and getattr(self, "_wake", None) is not None:
            self._wake.trigger()

    def _requested(self) -> bool:
        with self._requests_lock:
            return bool(self._requests)

    # ------------------------------------------------------------------ callbacks (executor thread)

    def _on_image(self, msg) -> None:
        if self.params.on_demand and not self._requested():
            self.stats.image_received(False)
            return
        worker = self._worker
        if worker is not None:
            self.stats.image_received(worker.put((msg, time.monotonic())))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics_from_camera_info(msg)
            camera_info_image_size(msg)
        except (CameraInfoError, ValueError, TypeError) as exc:
            self._warn("camera_info", f"ignoring CameraInfo on {self.params.camera_info_topic}: {exc}")
            return
        if has_distortion(msg):
            self.get_logger().warning("CameraInfo has distortion coefficients: the node assumes rectified images "
                                      "(subscribe to image_rect)", once=True)
        self.camera_infos.add(msg)

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        try:
            self.tf.add(msg, static)
        except ValueError as exc:
            self._warn("bad_tf", f"ignoring transforms on {'/tf_static' if static else '/tf'}: {exc}")

    def _republish_loop(self, period: float) -> None:
        """Republish the latest map -> odom every ``period`` s (on a fixed schedule) until deactivated."""
        due = time.monotonic()
        while not self._republish_stop.wait(max(0.0, due - time.monotonic())):
            due += period
            if due < time.monotonic():  # overrun (a stalled process): skip the missed ticks
                due = time.monotonic() + period
            try:
                self._publish_odom_tf()
            except Exception as exc:  # noqa: BLE001 - the broadcaster must keep going
                self.get_logger().error(f"map -> odom broadcast failed: {exc}", throttle_duration_sec=THROTTLE_S)

    def _publish_odom_tf(self) -> None:
        try:
            self.outputs.publish_tf(self.tf.odom_message(self.get_clock().now().nanoseconds))
            self.stats.wait("tf", None)
        except TfConflictError as exc:
            self.stats.wait("tf", str(exc))
            self.get_logger().error(str(exc), throttle_duration_sec=THROTTLE_S)

    def publish_diagnostics(self) -> None:
        status = diagnostic_status(self.stats, f"{self.get_fully_qualified_name()}: relocalization", self.image_topic,
                                   self.params.map_path)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    # ------------------------------------------------------------------ worker thread

    def _warn(self, cause: str, text: str) -> None:
        self.stats.reject(cause, text)
        self.get_logger().warning(text, throttle_duration_sec=THROTTLE_S)

    def _internal_error(self, exc: Exception) -> None:
        self.stats.reject("internal", f"{type(exc).__name__}: {exc}")
        self.get_logger().error(f"unexpected error on a frame (skipped): {type(exc).__name__}: {exc}",
                                throttle_duration_sec=THROTTLE_S)

    def _process(self, item) -> None:
        """One frame, counted as processed once its outputs are out (or it was skipped)."""
        msg, received = item
        stats = None
        try:
            stats = self._localize_and_publish(msg, received)
        finally:
            self.stats.frame_done(*(stats or (None, None, None)))

    def _warm_up_for(self, localizer: Localizer, shape: tuple[int, int], K, options) -> None:
        """The first image of a new size or focal length (another camera, or a changed
        image_resolution/precision) builds every head's graph before it is localized, once, and
        says which network input the camera gets."""
        began = time.monotonic()
        if localizer.warm_up_once(*shape, K, options):
            res = localizer.frame_resolution(K, *shape, options)
            self.get_logger().info(
                f"first {shape[1]}x{shape[0]} image with focal length {math.sqrt(K[0, 0] * K[1, 1]):.1f} px: network "
                f"input {'x'.join(map(str, resized_shape(*shape, res)))} (the map's: {localizer.trained_resolution} px"
                f"{f', focal {localizer.map_focal:.1f} px' if localizer.map_focal else ''}); built its graphs in "
                f"{time.monotonic() - began:.2f} s")

    def _localize_and_publish(self, msg, received: float):
        """One frame; returns (processing s, inliers) for the statistics, or None when skipped early."""
        p, stop = self.params, self._worker.stopping
        try:
            image = decode_for_localization(msg, DECODE_PIXELS_FACTOR * p.max_input_pixels)
        except ImageConversionError as exc:
            return self._warn("image", f"skipping an image on {self.image_topic}: {exc}")
        frame_id = str(msg.header.frame_id)
        camera_frame, stamp_ns = p.camera_frame or frame_id, stamp_to_ns(msg.header.stamp)
        match = self.camera_infos.match(msg.header.stamp, frame_id, stop)
        if match is None:
            return self._warn("no_camera_info", f"skipping an image: no valid CameraInfo received yet for frame "
                                                f"{frame_id!r} on {p.camera_info_topic}")
        try:
            K = intrinsics_for_image(match.msg, image.shape[:2])
            with self._swap_lock:
                localizer = self.localizer
            options = p.localizer_options()
            self._warm_up_for(localizer, image.shape[:2], K, options)
            loc = localizer.localize(image, K, options=options)
        except (CameraInfoError, LocalizationError, ValueError) as exc:
            return self._warn("input", f"skipping an image: {exc}")
        stats = (loc.timings["total"], loc.inlier_count, loc.mapping_view_distance_m)
        if not loc.success or loc.covariance is None:
            self._warn("ransac_failed", f"RANSAC found no pose for the image at {stamp_ns * 1e-9:.3f} s "
                                        f"({loc.inlier_count} inliers of {loc.num_cells} cells)")
            return stats
        odom_T_camera = predicted = None
        if camera_frame and p.tf_mode == "odom":
            try:
                odom_T_camera = self.tf.odom_T(camera_frame, stamp_ns, stop)
                self.stats.wait("map_to_odom", None)
                predicted = self.tf.predicted(odom_T_camera)
            except StaleOdometryError as exc:
                self._warn("stale_odom", f"no map -> {p.odom_frame} correction from the image at "
                                         f"{stamp_ns * 1e-9:.3f} s: {exc}")
            except LookupError as exc:
                self.stats.wait("map_to_odom", f"publishing poses only: no {p.odom_frame} -> {camera_frame!r} "
                                               f"transform on /tf yet ({exc})")
        elif camera_frame:
            try:
                predicted = self.tf.lookup(p.map_frame, camera_frame, stamp_ns)
            except LookupError:
                predicted = None
        forced = self._requested()
        cause = gate_cause(loc.inlier_count, loc.num_cells, loc.covariance, p.gate_limits(), loc.camera_to_world,
                           None if forced else predicted)
        if cause is not None:
            self._warn(cause[0], f"not publishing the pose of the image at {stamp_ns * 1e-9:.3f} s: {cause[1]}")
            return stats
        self._publish(msg.header.stamp, camera_frame, loc, odom_T_camera, predicted)
        self.stats.pose_published(time.monotonic() - received)
        self._answer_requests(True, f"localized the image at {stamp_ns * 1e-9:.3f} s: "
                                    f"{pose_to_text(loc.camera_to_world)} ({loc.inlier_count} inliers)")
        return stats

    def _publish(self, stamp, camera_frame: str, loc, odom_T_camera, predicted) -> None:
        p = self.params
        base_T_camera = camera_transform = None
        if camera_frame:
            try:
                base_T_camera = self.tf.lookup(p.base_frame, camera_frame, stamp_to_ns(stamp))
                self.stats.wait("base_pose", None)
            except LookupError as exc:
                self.stats.wait("base_pose", f"no {p.base_frame} -> {camera_frame!r} transform on /tf ({exc})")
        try:
            if p.tf_mode == "camera":
                camera_transform = self.tf.camera_message(loc.camera_to_world, stamp)
            elif odom_T_camera is not None:
                self.tf.update(loc.camera_to_world, odom_T_camera)
                camera_transform = self.tf.odom_message(self.get_clock().now().nanoseconds)
        except TfConflictError as exc:
            self.stats.wait("tf", str(exc))
            self.get_logger().error(str(exc), throttle_duration_sec=THROTTLE_S)
        self.outputs.publish(stamp, loc, base_T_camera, predicted, camera_transform)
