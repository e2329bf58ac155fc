"""Rosbag2 -> DSAC*-layout scene: images, intrinsics and poses interpolated to the image stamps.

A robot with SLAM records images, CameraInfo and its trajectory (a PoseStamped/Odometry topic, or
TF: map → odom → base_link → camera_optical, static and dynamic edges mixed). This module reads such
a bag and writes its frames as a DSAC*-layout split (rgb/, poses/, calibration/) that every
glace_core tool reads, so a 2000-frame 640×480 bag costs disk (PNG files), not RAM.

- Image stamps are the images' header stamps; the pose of each image is the trajectory
  interpolated at that stamp (lerp + slerp, :mod:`glace_core.pose_interpolation`). TF chains are
  interpolated edge by edge and composed (:class:`glace_ros.tf_graph.TfGraph`); static edges are
  constant.
- Intrinsics come from the CameraInfo nearest in stamp (within ``camera_info_tolerance_s``, else
  the nearest overall, logged), converted to our pixel convention
  (:func:`glace_ros.camera_info.intrinsics_for_image`).
- Frames without an interpolable pose (before the first / after the last pose sample, or in a gap
  longer than ``max_pose_gap_s``) or without any CameraInfo are skipped and counted.
- Depth (optional, ``depth_topic``): an RGB-D camera's depth registered to the image (e.g.
  ``aligned_depth_to_color``), 16UC1 mm or 32FC1 m, Image or compressedDepth. Each image takes the
  depth message nearest in stamp within ``depth_tolerance_s``, written to ``depth/`` (16-bit mm);
  an image without one gets an all-zero (unknown) depth file, so depth/ pairs with rgb/, and is
  counted. It feeds ``glace-train --use_depth``.
  Depth messages are held only for a short window, so memory does not grow with the bag.

The camera frame of the poses must be an optical frame (x right, y down, z forward), as the
frame_id of the images normally is. ``glace-train --bag`` (:mod:`glace_ros.train_from_bag`) runs
this before training.
"""
from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from glace_core.pose_interpolation import PoseTrajectory
from glace_ros.bag_io import BagError, BagReader
from glace_ros.pose_messages import pose_to_matrix, transform_to_matrix
from glace_ros.stamps import stamp_to_ns
from glace_ros.tf_graph import TfGraph

logger = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
              "nav_msgs/msg/Odometry", "geometry_msgs/msg/TransformStamped")


# --------------------------------------------------------------------------- topics

def resolve_topic(bag: BagReader, topic: str | None, msgtypes: tuple[str, ...], what: str,
                  exclude: tuple[str | None, ...] = ()) -> str:
    """``topic`` checked against the bag, or the bag's only topic of one of ``msgtypes`` (other than
    those in ``exclude``) when None.

    Raises BagError naming the bag and listing its topics when the topic is missing, has another
    type, or (``topic`` None) when zero or several candidates exist.
    """
    have = bag.topics
    if topic is None:
        candidates = sorted(t for t, m in have.items() if m in msgtypes and t not in exclude)
        if len(candidates) != 1:
            listing = ", ".join(f"{t} ({m})" for t, m in sorted(have.items())) or "none"
            raise BagError(f"bag {bag.path}: cannot choose the {what} topic ({len(candidates)} candidates of "
                           f"type {' or '.join(msgtypes)}); pass it explicitly. Topics: {listing}")
        return candidates[0]
    bag.require_topics([topic])
    if have[topic] not in msgtypes:
        raise BagError(f"bag {bag.path}: {what} topic {topic} has type {have[topic]}, expected "
                       f"{' or '.join(msgtypes)}")
    return topic


# --------------------------------------------------------------------------- poses

def _pose_of(msg, msgtype: str) -> np.ndarray:
    if msgtype == "geometry_msgs/msg/PoseStamped":
        return pose_to_matrix(msg.pose)
    if msgtype in ("geometry_msgs/msg/PoseWithCovarianceStamped", "nav_msgs/msg/Odometry"):
        return pose_to_matrix(msg.pose.pose)
    return transform_to_matrix(msg.transform)  # TransformStamped


def read_pose_topic(bag: BagReader, topic: str, max_gap_s: float | None = None) -> PoseTrajectory:
    """The camera-to-world trajectory on ``topic`` (PoseStamped, PoseWithCovarianceStamped,
    Odometry or TransformStamped), stamped by the messages' header stamps."""
    msgtype = bag.topics.get(topic)
    if msgtype not in POSE_TYPES:
        bag.require_topics([topic])
        raise BagError(f"bag {bag.path}: pose topic {topic} has type {msgtype}, expected one of {', '.join(POSE_TYPES)}")
    stamps, poses = [], []
    for m in bag.messages([topic]):
        msg = bag.deserialize(m)
        stamps.append(stamp_to_ns(msg.header.stamp))
        poses.append(_pose_of(msg, msgtype))
    if not poses:
        raise BagError(f"bag {bag.path}: pose topic {topic} has no messages")
    gap = None if max_gap_s is None else int(round(max_gap_s * 1e9))
    return PoseTrajectory(np.array(stamps, np.int64), np.stack(poses), gap)


# --------------------------------------------------------------------------- intrinsics

class CameraInfoTrack:
    """The CameraInfo messages of a topic, matched to images by stamp."""

    def __init__(self, bag: BagReader, topic: str, tolerance_s: float = 0.05):
        from glace_ros.camera_info import intrinsics_from_camera_info, camera_info_image_size

        self.bag, self.topic = bag.path, topic
        self.tolerance_ns = int(round(tolerance_s * 1e9))
        stamps, entries = [], []
        for m in bag.messages([topic]):
            msg = bag.deserialize(m)
            stamps.append(stamp_to_ns(msg.header.stamp))
            entries.append((intrinsics_from_camera_info(msg), camera_info_image_size(msg)))
        order = np.argsort(np.array(stamps, np.int64), kind="stable")
        self.stamps_ns = np.array(stamps, np.int64)[order]
        self.entries = [entries[i] for i in order]
        self.inexact = 0  # matches outside the tolerance

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, stamp_ns: int, image_hw: tuple[int, int]) -> np.ndarray | None:
        """K (3, 3) in our convention for an image of ``image_hw`` (H, W) at ``stamp_ns``: the
        nearest CameraInfo in stamp (None when the topic has none). Raises CameraInfoError when its
        size differs from the image's."""
        from glace_ros.camera_info import check_image_matches

        if not self.entries:
            return None
        j = int(np.searchsorted(self.stamps_ns, stamp_ns))
        best = min((k for k in (j - 1, j) if 0 <= k < len(self.entries)),
                   key=lambda k: abs(int(self.stamps_ns[k]) - stamp_ns))
        if abs(int(self.stamps_ns[best]) - stamp_ns) > self.tolerance_ns:
            self.inexact += 1
        K, hw = self.entries[best]
        check_image_matches(hw, image_hw)
        return K


# --------------------------------------------------------------------------- conversion

@dataclass
class BagSource:
    """Where a bag keeps the images, intrinsics and poses of a mapping run."""

    image_topic: str | None = None  # Image or CompressedImage; None: the bag's only one
    camera_info_topic: str | None = None  # None: the bag's only CameraInfo topic
    pose_topic: str | None = None  # PoseStamped/PoseWithCovarianceStamped/Odometry/TransformStamped
    tf_frames: tuple[str, str] | None = None  # (map frame, camera optical frame) looked up in TF
    max_pose_gap_s: float = 0.5  # trajectory gaps longer than this are not interpolated across
    camera_info_tolerance_s: float = 0.05  # CameraInfo further than this in stamp is logged
    every_nth: int = 1  # keep every n-th image
    depth_topic: str | None = None  # depth registered to the image (16UC1 mm / 32FC1 m); None: no depth
    depth_tolerance_s: float = 0.02  # a depth message further than this in stamp is not the image's

    def validate(self) -> None:
        if (self.pose_topic is None) == (self.tf_frames is None):
            raise ValueError("give exactly one pose source: pose_topic or tf_frames (MAP CAMERA)")
        if self.tf_frames is not None and len(self.tf_frames) != 2:
            raise ValueError(f"tf_frames must be (MAP, CAMERA), got {self.tf_frames!r}")
        if not self.max_pose_gap_s > 0:
            raise ValueError(f"max_pose_gap_s must be > 0, got {self.max_pose_gap_s}")
        if self.every_nth < 1:
            raise ValueError(f"every_nth must be >= 1, got {self.every_nth}")
        if not self.depth_tolerance_s >= 0:
            raise ValueError(f"depth_tolerance_s must be >= 0, got {self.depth_tolerance_s}")


@dataclass
class BagConversion:
    """What :func:`bag_to_scene` wrote and skipped."""

    scene: Path
    split: str
    written: int = 0
    images: int = 0
    skipped_no_pose: int = 0
    skipped_no_camera_info: int = 0
    camera_info_inexact: int = 0
    with_depth: int = 0  # written frames that have depth (with a depth topic)
    stamps_ns: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.written} of {self.images} images written to {self.scene / self.split}"
                f"{f' ({self.with_depth} with depth)' if self.with_depth else ''}; skipped "
                f"{self.skipped_no_pose} without an interpolable pose and {self.skipped_no_camera_info} "
                f"without CameraInfo; {self.camera_info_inexact} used a CameraInfo outside the stamp tolerance")


def _decode_rgb(msg, msgtype: str) -> np.ndarray:
    from glace_ros.image_conversion import compressed_to_rgb_u8, image_to_rgb_u8

    return compressed_to_rgb_u8(msg) if msgtype.endswith("CompressedImage") else image_to_rgb_u8(msg)


#: Depth messages older than the newest image by more than this are dropped (bounds memory).
DEPTH_WINDOW_NS = 2_000_000_000


def images_with_depth(bag: BagReader, image_topic: str, depth_topic: str | None, tolerance_ns: int,
                      every_nth: int = 1) -> Iterator[tuple[Any, Any | None]]:
    """``(image message, depth message or None)`` for every ``every_nth`` image on ``image_topic``
    in bag order, deserialised (the others are not). The depth is the message on ``depth_topic``
    nearest in header stamp within ``tolerance_ns``; an image is answered once a depth stamped after
    its tolerance window has been read (depth arrives in stamp order) or the bag ends."""
    counter = itertools.count()
    if depth_topic is None:
        for m in bag.messages([image_topic]):
            if next(counter) % every_nth == 0:
                yield bag.deserialize(m), None
        return
    waiting: deque = deque()  # (stamp, image msg) not yet answered
    depths: deque = deque()  # (stamp, depth msg), increasing stamps
    newest_depth = None

    def answer(stamp: int, image):
        near = [(abs(t - stamp), i) for i, (t, _) in enumerate(depths) if abs(t - stamp) <= tolerance_ns]
        return image, depths[min(near)[1]][1] if near else None

    for m in bag.messages([image_topic, depth_topic]):
        if m.topic != depth_topic and next(counter) % every_nth:
            continue
        msg = bag.deserialize(m)
        stamp = stamp_to_ns(msg.header.stamp)
        if m.topic == depth_topic:
            depths.append((stamp, msg))
            newest_depth = stamp if newest_depth is None else max(newest_depth, stamp)
        else:
            waiting.append((stamp, msg))
        while waiting and newest_depth is not None and newest_depth > waiting[0][0] + tolerance_ns:
            yield answer(*waiting.popleft())
        horizon = (waiting[0][0] if waiting else stamp) - max(tolerance_ns, DEPTH_WINDOW_NS)
        while depths and depths[0][0] < horizon:
            depths.popleft()
    while waiting:
        yield answer(*waiting.popleft())


def bag_to_scene(bag_path: str | Path, scene_root: str | Path, source: BagSource, split: str = "train") -> BagConversion:
    """Write the frames of a bag as the DSAC*-layout split ``scene_root/split``.

    Frame i is named ``frame-{i:06d}`` (order of the bag); its pose is camera-to-world from
    ``source`` interpolated at the image's header stamp; with ``source.depth_topic`` its depth
    goes to ``depth/`` (module docstring). Returns the counts of written and skipped frames (also
    logged). Raises BagError for a damaged bag, missing topics or a depth image that does not
    match its image, and ValueError when no frame has a pose.
    """
    from glace_ros.camera_info import CameraInfoError
    from glace_ros.image_conversion import ImageConversionError, to_depth_m

    source.validate()
    result = BagConversion(Path(scene_root), split)
    with BagReader(bag_path) as bag:
        image_topic = resolve_topic(bag, source.image_topic, IMAGE_TYPES, "image", exclude=(source.depth_topic,))
        info_topic = resolve_topic(bag, source.camera_info_topic, ("sensor_msgs/msg/CameraInfo",), "camera info")
        infos = CameraInfoTrack(bag, info_topic, source.camera_info_tolerance_s)
        if source.pose_topic is not None:
            trajectory = read_pose_topic(bag, source.pose_topic, source.max_pose_gap_s)
            pose_at = lambda t: trajectory.at(np.array([t]))  # noqa: E731
        else:
            graph = TfGraph.from_bag(bag, source.max_pose_gap_s)
            map_frame, camera_frame = source.tf_frames
            try:
                graph.lookup_many(map_frame, camera_frame, np.zeros(0, np.int64))
            except LookupError as exc:
                raise BagError(f"bag {bag.path}: {exc}") from exc
            pose_at = lambda t: graph.lookup_many(map_frame, camera_frame, np.array([t]))  # noqa: E731
        from glace_core.dataset import write_frame

        depth_topic = None
        if source.depth_topic is not None:
            depth_topic = resolve_topic(bag, source.depth_topic, IMAGE_TYPES, "depth")
        msgtype = bag.topics[image_topic]
        for msg, depth_msg in images_with_depth(bag, image_topic, depth_topic,
                                                int(round(source.depth_tolerance_s * 1e9)), source.every_nth):
            result.images += 1
            stamp = stamp_to_ns(msg.header.stamp)
            poses, ok = pose_at(stamp)
            if not ok[0]:
                result.skipped_no_pose += 1
                continue
            try:
                rgb = _decode_rgb(msg, msgtype)
                K = infos.match(stamp, rgb.shape[:2])
            except (ImageConversionError, CameraInfoError) as exc:
                raise BagError(f"bag {bag.path}: image at t={stamp} ns on {image_topic}: {exc}") from exc
            if K is None:
                result.skipped_no_camera_info += 1
                continue
            depth = None if depth_topic is None else np.zeros(rgb.shape[:2], np.float32)  # 0: unknown
            if depth_msg is not None:
                try:
                    depth = to_depth_m(depth_msg)
                except ImageConversionError as exc:
                    raise BagError(f"bag {bag.path}: depth for the image at t={stamp} ns on {depth_topic}: "
                                   f"{exc}") from exc
                if depth.shape != rgb.shape[:2]:
                    raise BagError(f"bag {bag.path}: depth on {depth_topic} is {depth.shape[1]}x{depth.shape[0]}, "
                                   f"its image {rgb.shape[1]}x{rgb.shape[0]}: the depth must be registered to "
                                   "the image (e.g. aligned_depth_to_color)")
                result.with_depth += 1
            write_frame(scene_root, split, f"frame-{result.written:06d}", rgb, poses[0], K, depth)
            result.stamps_ns.append(stamp)
            result.written += 1
        result.camera_info_inexact = infos.inexact
    logger.info("%s: %s", bag_path, result.summary())
    if result.written == 0:
        raise ValueError(f"bag {bag_path}: no image on {image_topic} has a pose "
                         f"({result.skipped_no_pose} without an interpolable pose, "
                         f"{result.skipped_no_camera_info} without CameraInfo)")
    return result
