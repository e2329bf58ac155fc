"""The relocalizer node: camera images + CameraInfo in, map-frame camera poses out.

Run it with ``glace-relocalizer --ros-args -p map_path:=MAP.pt`` (or ``ros2 run glace_ros relocalizer``
/ ``ros2 launch glace_ros relocalizer.launch.py map_path:=...``). Parameters: ``glace_ros.relocalizer_params``
and ``config/relocalizer.yaml``.

Topics (``~`` is the node's name, ``glace_relocalizer`` by default):

- in: ``image_topic`` (sensor_msgs/Image, or CompressedImage with ``use_compressed``) and
  ``camera_info_topic``, both with the sensor-data QoS; /tf and /tf_static (tf_mode "odom" and the
  /initialpose base frame).
- out (reliable): ``~/pose`` (PoseStamped) and ``~/pose_with_covariance``, stamped with the image's
  stamp in ``map_frame``; /tf (tf2_msgs/TFMessage: map -> camera, or REP-105 map -> odom);
  /diagnostics (DiagnosticArray, 1 Hz); optionally /initialpose and ``~/scene_coordinates``
  (PointCloud2).

Threading: the image callback only stores the newest frame in a one-slot buffer (a frame still
waiting there when a newer one arrives is dropped and counted); one worker thread runs the network
and RANSAC and publishes. Latency therefore stays at most about two processing times however fast
images arrive. Bad input (unknown encoding, short data, zero size, bad CameraInfo, no CameraInfo,
size mismatch, failed RANSAC, too few inliers) is logged (throttled), the frame skipped, and the node
keeps running. A missing or corrupt map at start-up is a fatal error naming the file (exit code 1).
"""
from __future__ import annotations

import array
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from glace_ros.camera_info import (CameraInfoCache, CameraInfoError, camera_info_image_size, has_distortion,
                                   intrinsics_for_image, intrinsics_from_camera_info, stamp_to_ns)
from glace_ros.image_conversion import ImageConversionError, channel_order, image_to_gray_u8, image_to_rgb_u8, \
    to_rgb_u8
from glace_ros.pipeline import FrameResult, PipelineError, RansacOptions, RelocalizationPipeline
from glace_ros.pose_messages import (TfBuffer, invert_rigid, map_to_odom, point_cloud2_from_scene_coordinates,
                                     pose_stamped_from_matrix, pose_with_covariance_from_matrix,
                                     transform_stamped_from_matrix)
from glace_ros.qos import image_qos, pose_qos, tf_qos, tf_static_qos
from glace_ros.relocalizer_params import (NODE_NAME, PARAMETERS, PARAMETERS_BY_NAME, RelocalizerParams,
                                          compressed_topic, validate_parameter, yaml_document)

__all__ = ["RelocalizerNode", "StartupError", "main"]

USAGE = """usage: glace-relocalizer --ros-args [--params-file FILE] [-p NAME:=VALUE ...] [-r __node:=NAME]

The GLACE relocalizer node (also `ros2 run glace_ros relocalizer`). Parameters, with their defaults
(the content of config/relocalizer.yaml):

"""
THROTTLE_S = 5.0  # seconds between repeated warnings of one kind
CAMERA_INFO_WAIT_S = 0.2  # how long an image may wait for its CameraInfo (published at the same time)
DIAGNOSTICS_PERIOD_S = 1.0


class StartupError(RuntimeError):
    """The node cannot start (missing/corrupt map, bad parameters); the message names the cause."""


@dataclass
class _Frame:
    msg: object
    received: float  # time.monotonic() when the callback stored it


def _plain(value):
    """rclpy parameter values -> plain Python (integer arrays arrive as array.array)."""
    if isinstance(value, (array.array, np.ndarray)):
        return [int(v) for v in value]
    return value


def _descriptor(spec) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=spec.name, description=spec.description,
                               additional_constraints=spec.constraint_text(), read_only=spec.read_only)
    if spec.minimum is not None and spec.maximum is not None:
        if spec.type_name == "int":
            desc.integer_range = [IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=0)]
        elif spec.type_name == "double":
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.minimum),
                                                            to_value=float(spec.maximum), step=0.0)]
    return desc


class _Stats:
    """Counters and recent timings for /diagnostics (updated by callbacks and the worker)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received = self.processed = self.localized = self.dropped = 0
        self.rejected: dict[str, int] = {}
        self.last_inliers = -1
        self.last_error = ""
        self.latency_s: deque[float] = deque(maxlen=20)  # image received -> pose published
        self.processing_s: deque[float] = deque(maxlen=20)  # pipeline time
        self.published_at: deque[float] = deque(maxlen=50)  # monotonic times of published poses

    def reject(self, kind: str, reason: str) -> None:
        with self.lock:
            self.rejected[kind] = self.rejected.get(kind, 0) + 1
            self.last_error = f"{kind}: {reason}"


class RelocalizerNode(Node):
    """GLACE relocalization node; see the module docstring. ``kwargs`` go to ``rclpy.node.Node``."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self._start()
        except Exception:
            self.destroy_node()
            raise

    # ------------------------------------------------------------------ start-up

    def _start(self) -> None:
        for spec in PARAMETERS:
            default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            self.declare_parameter(spec.name, default, _descriptor(spec))
        values = {spec.name: _plain(self.get_parameter(spec.name).value) for spec in PARAMETERS}
        try:
            self.params = RelocalizerParams.from_mapping(values)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        p = self.params

        try:
            self.pipeline = RelocalizationPipeline.load(p.map_path, p.encoder_path, p.device, p.global_checkpoint,
                                                        p.global_resolution)
        except Exception as exc:  # noqa: BLE001 - every loading failure is fatal, with its message
            raise StartupError(f"cannot load the relocalization model (map_path={p.map_path!r}, encoder_path="
                               f"{p.encoder_path!r}, global_checkpoint={p.global_checkpoint!r}): "
                               f"{type(exc).__name__}: {exc}") from exc
        if self.pipeline.global_channels and self.pipeline.descriptor is None:
            self.get_logger().warning(
                f"the map's head takes a {self.pipeline.global_channels}-d global descriptor but global_checkpoint "
                "is empty: using zero global features, which lowers accuracy; set global_checkpoint to the "
                "R2Former checkpoint (CVPR23_DeitS_Rerank.pth)")

        self.stats = _Stats()
        self.camera_infos = CameraInfoCache(p.camera_info_tolerance)
        self._info_cond = threading.Condition()
        self._synced_frames: set[str] = set()  # frame_ids whose CameraInfo stamps have matched an image
        self.tf_buffer = TfBuffer()
        self._slot: _Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()

        out = pose_qos(10)
        self.pose_pub = self.create_publisher(PoseStamped, "~/pose", out)
        self.pose_cov_pub = self.create_publisher(PoseWithCovarianceStamped, "~/pose_with_covariance", out)
        self.initialpose_pub = self.create_publisher(PoseWithCovarianceStamped, "/initialpose", out)
        self.cloud_pub = self.create_publisher(PointCloud2, "~/scene_coordinates", out)
        self.tf_pub = self.create_publisher(TFMessage, "/tf", tf_qos())
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", pose_qos(10))

        if p.use_compressed:
            self.image_topic = compressed_topic(p.image_topic)
            self.create_subscription(CompressedImage, self.image_topic, self._on_image, image_qos())
        else:
            self.image_topic = p.image_topic
            self.create_subscription(Image, self.image_topic, self._on_image, image_qos())
        self.create_subscription(CameraInfo, p.camera_info_topic, self._on_camera_info, image_qos())
        self.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), tf_qos())
        self.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), tf_static_qos())
        self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics)

        self._ransac_pending = None  # pipelined_ransac: the future of the frame whose RANSAC runs now
        self._worker = threading.Thread(target=self._work, name="glace-relocalizer-worker", daemon=True)
        self._worker.start()
        enc = getattr(self.pipeline.encoder, "encoder_id", getattr(self.pipeline.encoder, "name", "?"))
        self.get_logger().info(f"localizing against {p.map_path} (encoder {enc}, device {self.pipeline.device}); "
                               f"images from {self.image_topic}, intrinsics from {p.camera_info_topic}")

    # ------------------------------------------------------------------ parameters

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        for param in parameters:
            if param.name not in PARAMETERS_BY_NAME:
                continue  # rclpy's own (use_sim_time, ...)
            reason = validate_parameter(param.name, _plain(param.value))
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, parameters) -> None:
        changes = {p.name: _plain(p.value) for p in parameters if p.name in PARAMETERS_BY_NAME}
        if changes:
            self.params = self.params.replace(**changes)

    # ------------------------------------------------------------------ callbacks (executor thread)

    def _on_image(self, msg) -> None:
        frame = _Frame(msg, time.monotonic())
        with self._cond:
            dropped = self._slot is not None
            self._slot = frame
            self._cond.notify()
        with self.stats.lock:
            self.stats.received += 1
            self.stats.dropped += int(dropped)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics_from_camera_info(msg)
            camera_info_image_size(msg)
        except (CameraInfoError, ValueError, TypeError) as exc:
            self.stats.reject("camera_info", str(exc))
            self.get_logger().warning(f"ignoring CameraInfo on {self.params.camera_info_topic}: {exc}",
                                   throttle_duration_sec=THROTTLE_S)
            return
        if has_distortion(msg):
            self.get_logger().warning("CameraInfo has distortion coefficients: the node assumes rectified images "
                                   "(subscribe to image_rect)", once=True)
        with self._info_cond:
            self.camera_infos.add(msg)
            self._info_cond.notify_all()

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        own_parent = self.params.map_frame.lstrip("/")
        for ts in msg.transforms:
            if ts.header.frame_id.lstrip("/") == own_parent:
                continue  # our own output (map -> camera / odom): not an input
            try:
                self.tf_buffer.set_transform(ts, static=static)
            except ValueError as exc:
                self.get_logger().warning(f"ignoring a transform on {'/tf_static' if static else '/tf'}: {exc}",
                                       throttle_duration_sec=THROTTLE_S)

    # ------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while self._slot is None and not self._stop.is_set():
                    self._cond.wait(0.2)
                frame, self._slot = self._slot, None
            if frame is None:
                continue
            pending = None
            try:
                pending = self._process(frame)
            except Exception as exc:  # noqa: BLE001 - the node must survive any single frame
                self._internal_error(exc)
            finally:
                if pending is None:
                    self._count_processed()
            if pending is not None:
                # bounded: while this frame's RANSAC is queued, the previous one must finish first
                self._wait_for_ransac()
                self._ransac_pending = pending
        self._wait_for_ransac()

    def _wait_for_ransac(self) -> None:
        pending, self._ransac_pending = self._ransac_pending, None
        if pending is not None:
            pending.result()  # _finish_async never raises (it logs)

    def _count_processed(self) -> None:
        with self.stats.lock:
            self.stats.processed += 1  # after publishing: a frame counted here is done

    def _internal_error(self, exc: Exception) -> None:
        self.stats.reject("internal", f"{type(exc).__name__}: {exc}")
        self.get_logger().error(f"unexpected error on a frame (skipped): {type(exc).__name__}: {exc}",
                                throttle_duration_sec=THROTTLE_S)

    def _decode(self, msg) -> np.ndarray:
        """(H, W, 3) RGB or (H, W) gray uint8 (mono encodings skip the colour conversion)."""
        if isinstance(msg, CompressedImage):
            return to_rgb_u8(msg)
        if channel_order(str(msg.encoding)) == "mono":
            return image_to_gray_u8(msg)
        return image_to_rgb_u8(msg)

    def _process(self, frame: _Frame):
        """Decode, match the CameraInfo and localize one frame; publish its pose. With
        ``pipelined_ransac`` the network pass runs here and RANSAC plus publishing on the pipeline's
        RANSAC thread: the returned future completes when the frame is done (None: done already)."""
        p = self.params
        msg = frame.msg
        log = self.get_logger()
        try:
            image = self._decode(msg)
        except ImageConversionError as exc:
            self.stats.reject("image", str(exc))
            log.warning(f"skipping an image on {self.image_topic}: {exc}", throttle_duration_sec=THROTTLE_S)
            return
        frame_id = str(msg.header.frame_id)
        match = self._camera_info_for(msg.header.stamp, frame_id)
        if match is None:
            self.stats.reject("no_camera_info", f"frame {frame_id!r}")
            log.warning(f"skipping an image: no valid CameraInfo received yet for frame {frame_id!r} on "
                     f"{p.camera_info_topic}", throttle_duration_sec=THROTTLE_S)
            return
        try:
            K = intrinsics_for_image(match.msg, image.shape[:2])
        except (CameraInfoError, ValueError) as exc:
            self.stats.reject("camera_info_mismatch", str(exc))
            log.warning(f"skipping an image: {exc}", throttle_duration_sec=THROTTLE_S)
            return
        if self.pipeline.global_channels and self.pipeline.descriptor is not None and p.global_mode == "off":
            log.warning("global_mode is 'off': the head gets zero global features", once=True)
        ransac = RansacOptions(hypotheses=p.hypotheses, threshold=p.threshold, inlier_alpha=p.inlier_alpha,
                               max_reprojection_error=p.max_reprojection_error, seed=p.seed)
        resolution = p.image_resolution or self.pipeline.trained_resolution
        try:
            if p.pipelined_ransac:
                future = self.pipeline.localize_async(image, K, image_resolution=resolution, ransac=ransac,
                                                      global_mode=p.global_mode, global_every_n=p.global_every_n,
                                                      ensemble_candidates=p.ensemble_candidates)
                return self._chain(future, frame, p, frame_id)
            result = self.pipeline.localize(image, K, image_resolution=resolution, ransac=ransac,
                                            global_mode=p.global_mode, global_every_n=p.global_every_n,
                                            ensemble_candidates=p.ensemble_candidates)
        except PipelineError as exc:
            self.stats.reject("pipeline", str(exc))
            log.warning(f"skipping an image: {exc}", throttle_duration_sec=THROTTLE_S)
            return None
        self._finish(frame, p, frame_id, result)
        return None

    def _chain(self, future, frame: _Frame, p: RelocalizerParams, frame_id: str):
        """A future that completes after ``_finish`` ran for the RANSAC result ``future`` (on the
        RANSAC thread), counting the frame as processed; it never raises."""
        from concurrent.futures import Future

        done: Future = Future()

        def finish(f):
            try:
                self._finish(frame, p, frame_id, f.result())
            except PipelineError as exc:
                self.stats.reject("pipeline", str(exc))
                self.get_logger().warning(f"skipping an image: {exc}", throttle_duration_sec=THROTTLE_S)
            except Exception as exc:  # noqa: BLE001 - as in the worker: the node survives any frame
                self._internal_error(exc)
            finally:
                self._count_processed()
                done.set_result(None)

        future.add_done_callback(finish)
        return done

    def _finish(self, frame: _Frame, p: RelocalizerParams, frame_id: str, result: FrameResult) -> None:
        """Statistics, checks and publishing of one localized frame."""
        msg = frame.msg
        log = self.get_logger()
        with self.stats.lock:
            self.stats.processing_s.append(result.timings["total"])
            self.stats.last_inliers = result.inlier_count
        if not result.success or result.covariance is None:
            self.stats.reject("ransac_failed", f"{result.inlier_count} inliers")
            log.warning(f"RANSAC found no pose for the image at {stamp_to_ns(msg.header.stamp) * 1e-9:.3f} s "
                     f"({result.inlier_count} inliers of {result.num_cells} cells)", throttle_duration_sec=THROTTLE_S)
            return
        if result.inlier_count < p.min_inlier_count:
            self.stats.reject("few_inliers", f"{result.inlier_count} < {p.min_inlier_count}")
            log.warning(f"not publishing a pose with {result.inlier_count} inliers (min_inlier_count "
                     f"{p.min_inlier_count})", throttle_duration_sec=THROTTLE_S)
            return
        self._publish(p, msg.header.stamp, p.camera_frame or frame_id, result)
        now = time.monotonic()
        with self.stats.lock:
            self.stats.localized += 1
            self.stats.latency_s.append(now - frame.received)
            self.stats.published_at.append(now)

    def _camera_info_for(self, stamp, frame_id: str):
        """The CameraInfo match for an image, waiting up to CAMERA_INFO_WAIT_S for one that is still in
        flight: when none was received for ``frame_id`` yet, or when this camera's info stamps have
        matched images before and the newest one is older than the image."""
        deadline = time.monotonic() + CAMERA_INFO_WAIT_S
        with self._info_cond:
            while True:
                match = self.camera_infos.match(stamp, frame_id)
                in_flight = match is None or (not match.exact and frame_id in self._synced_frames and match.dt_s < 0)
                left = deadline - time.monotonic()
                if not in_flight or left <= 0 or self._stop.is_set():
                    break
                self._info_cond.wait(left)
            if match is not None and match.exact and frame_id not in self._synced_frames:
                if len(self._synced_frames) >= 64:  # bounded, like the CameraInfo cache
                    self._synced_frames.clear()
                self._synced_frames.add(frame_id)
        return match

    # ------------------------------------------------------------------ outputs

    def _publish(self, p: RelocalizerParams, stamp, camera_frame: str, result: FrameResult) -> None:
        T = result.camera_to_world
        log = self.get_logger()
        if p.publish_tf:  # TF first: a consumer that looks the pose up in TF on receiving it finds it
            transform = self._tf_output(p, stamp, camera_frame, T)
            if transform is not None:
                self.tf_pub.publish(TFMessage(transforms=[transform]))
        self.pose_pub.publish(pose_stamped_from_matrix(T, stamp, p.map_frame))
        self.pose_cov_pub.publish(pose_with_covariance_from_matrix(T, stamp, result.covariance, p.map_frame))
        if p.publish_initialpose:
            map_T_base = T
            if p.base_frame:
                try:
                    map_T_base = T @ invert_rigid(self.tf_buffer.lookup(p.base_frame, camera_frame, None))
                except LookupError as exc:
                    map_T_base = None
                    self.stats.reject("initialpose_tf", str(exc))
                    log.warning(f"not publishing /initialpose: no transform {p.base_frame} -> {camera_frame}: {exc}",
                             throttle_duration_sec=THROTTLE_S)
            if map_T_base is not None:
                self.initialpose_pub.publish(
                    pose_with_covariance_from_matrix(map_T_base, stamp, result.covariance, p.map_frame))
        if p.publish_point_cloud:
            xyz = result.scene_coordinates.reshape(3, -1).T
            xyz = np.ascontiguousarray(xyz[np.all(np.isfinite(xyz), axis=1)], dtype=np.float32)
            header = pose_stamped_from_matrix(np.eye(4), stamp, p.map_frame).header
            self.cloud_pub.publish(point_cloud2_from_scene_coordinates(xyz, header))

    def _tf_output(self, p: RelocalizerParams, stamp, camera_frame: str, map_T_camera: np.ndarray):
        """The TransformStamped to put on /tf (map -> camera or map -> odom), or None (logged)."""
        log = self.get_logger()
        if not camera_frame:
            self.stats.reject("tf", "empty camera frame")
            log.warning("not publishing TF: the image has no header.frame_id and camera_frame is empty",
                     throttle_duration_sec=THROTTLE_S)
            return None
        if p.tf_mode == "camera":
            return transform_stamped_from_matrix(map_T_camera, stamp, p.map_frame, camera_frame)
        try:
            try:
                odom_T_camera = self.tf_buffer.lookup(p.odom_frame, camera_frame, stamp)
            except LookupError:
                odom_T_camera = self.tf_buffer.lookup(p.odom_frame, camera_frame, None)  # latest
        except LookupError as exc:
            self.stats.reject("tf", str(exc))
            log.warning(f"not publishing map -> {p.odom_frame}: no transform {p.odom_frame} -> {camera_frame} "
                     f"on /tf or /tf_static ({exc})", throttle_duration_sec=THROTTLE_S)
            return None
        future_ns = stamp_to_ns(stamp) + int(round(p.transform_tolerance * 1e9))
        return transform_stamped_from_matrix(map_to_odom(map_T_camera, odom_T_camera), future_ns,
                                             p.map_frame, p.odom_frame)

    def diagnostics_status(self) -> DiagnosticStatus:
        """The node's DiagnosticStatus: counters, rate, latency, inliers, last error."""
        s = self.stats
        now = time.monotonic()
        with s.lock:
            recent = [t for t in s.published_at if now - t <= 10.0]
            rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) >= 2 and recent[-1] > recent[0] else 0.0
            latency = 1e3 * float(np.mean(s.latency_s)) if s.latency_s else float("nan")
            processing = 1e3 * float(np.mean(s.processing_s)) if s.processing_s else float("nan")
            values = {
                "frames_received": s.received, "frames_processed": s.processed, "frames_localized": s.localized,
                "frames_dropped": s.dropped, "frames_rejected": sum(s.rejected.values()),
                "rate_hz": f"{rate:.2f}", "latency_ms": f"{latency:.1f}", "processing_ms": f"{processing:.1f}",
                "inlier_count": s.last_inliers, "last_error": s.last_error,
                **{f"rejected_{k}": v for k, v in sorted(s.rejected.items())},
            }
            if s.received == 0:
                level, message = DiagnosticStatus.WARN, f"no images received on {self.image_topic}"
            elif not recent:
                level, message = DiagnosticStatus.WARN, "no pose published in the last 10 s"
            else:
                level, message = DiagnosticStatus.OK, f"localizing at {rate:.1f} Hz"
        return DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: relocalization",
                                message=message, hardware_id=self.params.map_path,
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    def publish_diagnostics(self) -> None:
        msg = DiagnosticArray(status=[self.diagnostics_status()])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def destroy_node(self):
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            with self._cond:
                self._cond.notify_all()
            worker = getattr(self, "_worker", None)
            if worker is not None and worker is not threading.current_thread():
                worker.join(timeout=30.0)
            pipeline = getattr(self, "pipeline", None)
            if pipeline is not None:
                pipeline.close()  # the RANSAC thread of pipelined_ransac
        return super().destroy_node()


def main(args=None) -> int:
    """Console script ``glace-relocalizer`` / ``ros2 run glace_ros relocalizer``; returns the exit code."""
    argv = list(sys.argv[1:] if args is None else args)
    user_args = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in user_args or "--help" in user_args:
        print(USAGE + yaml_document(), end="")
        return 0
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = RelocalizerNode()
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


if __name__ == "__main__":
    sys.exit(main())
