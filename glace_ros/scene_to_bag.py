"""`glace-scene-to-bag`: write a DSAC*-layout scene split as a rosbag2 a robot could have recorded.

Per frame it writes, all with the same header stamp:
- the image (sensor_msgs/Image rgb8, or sensor_msgs/CompressedImage jpeg/png with --compressed)
- sensor_msgs/CameraInfo (ROS pixel convention: the centre of the top-left pixel is (0, 0))
- the ground-truth camera-to-world pose as geometry_msgs/PoseStamped on /ground_truth/pose
- the same pose as TF map → camera_gt on /tf (tf2_msgs/TFMessage)

Stamps start at --start-time and advance by 1/--rate seconds; the bag's receive times equal
the stamps. No ROS install is needed (rosbags library).
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glace_ros.bag_io import STORAGE_FORMATS, BagError, BagWriter, ns_to_rosbags_time
from glace_ros.pose_messages import rotation_matrix_to_quaternion

logger = logging.getLogger(__name__)


@dataclass
class SceneToBagOptions:
    split: str = "test"  # which split of the scene to write
    storage: str = "mcap"  # mcap or sqlite3
    compressed: bool = False  # write CompressedImage instead of Image
    compressed_format: str = "jpeg"  # jpeg (lossy, small) or png (lossless)
    rate: float = 10.0  # frames per second of the stamps
    start_time: float = 1_700_000_000.0  # stamp of the first frame, seconds
    image_topic: str = "/camera/image_raw"  # "/compressed" is appended with --compressed
    camera_info_topic: str = "/camera/camera_info"
    gt_topic: str = "/ground_truth/pose"
    map_frame: str = "map"
    camera_frame: str = "camera_optical_frame"  # frame_id of images and CameraInfo
    gt_child_frame: str = "camera_gt"  # TF child frame of the ground-truth pose
    depth_topic: str = ""  # non-empty: the split's depth/ as 16UC1 (mm) Images registered to the images
    overwrite: bool = False


def _header(types, stamp_ns: int, frame_id: str):
    return types["std_msgs/msg/Header"](stamp=ns_to_rosbags_time(types, stamp_ns), frame_id=frame_id)


def camera_info_message(types, header, K: np.ndarray, height: int, width: int):
    """A rosbags CameraInfo for intrinsics ``K`` in our convention (pixel centres at i+0.5)."""
    fx, fy = float(K[0, 0]), float(K[1, 1])
    cx, cy = float(K[0, 2]) - 0.5, float(K[1, 2]) - 0.5  # to ROS/OpenCV: pixel centres at integers
    k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64)
    p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64)
    return types["sensor_msgs/msg/CameraInfo"](
        header=header, height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64), k=k, r=np.eye(3).reshape(-1), p=p,
        binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def image_message(types, header, rgb: np.ndarray):
    """A rosbags sensor_msgs/Image (rgb8) of an (H, W, 3) uint8 array."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return types["sensor_msgs/msg/Image"](
        header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
        data=np.frombuffer(rgb.tobytes(), dtype=np.uint8))


def compressed_message(types, header, rgb: np.ndarray, fmt: str):
    """A rosbags sensor_msgs/CompressedImage of an (H, W, 3) uint8 RGB array (jpeg or png)."""
    import cv2

    ext = {"jpeg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise ValueError(f"compressed format must be jpeg or png, got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return types["sensor_msgs/msg/CompressedImage"](
        header=header, format=f"rgb8; {fmt} compressed bgr8", data=np.frombuffer(buf.tobytes(), dtype=np.uint8))


def pose_message(types, cam_to_world: np.ndarray):
    """A rosbags geometry_msgs/Pose of a camera-to-world 4×4."""
    qx, qy, qz, qw = rotation_matrix_to_quaternion(cam_to_world[:3, :3])
    t = cam_to_world[:3, 3]
    return types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        orientation=types["geometry_msgs/msg/Quaternion"](x=float(qx), y=float(qy), z=float(qz), w=float(qw)))


def tf_message(types, header, child_frame: str, cam_to_world: np.ndarray):
    """A rosbags tf2_msgs/TFMessage with one transform header.frame_id → child_frame."""
    pose = pose_message(types, cam_to_world)
    transform = types["geometry_msgs/msg/Transform"](
        translation=types["geometry_msgs/msg/Vector3"](x=pose.position.x, y=pose.position.y, z=pose.position.z),
        rotation=pose.orientation)
    stamped = types["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id=child_frame, transform=transform)
    return types["tf2_msgs/msg/TFMessage"](transforms=[stamped])


def depth_message(types, header, depth_m: np.ndarray):
    """A rosbags sensor_msgs/Image (16UC1, millimetres, 0 = unknown) of an (H, W) depth in metres."""
    from glace_core.dataset import depth_to_mm

    mm = np.ascontiguousarray(depth_to_mm(depth_m), dtype="<u2")
    h, w = mm.shape
    return types["sensor_msgs/msg/Image"](
        header=header, height=h, width=w, encoding="16UC1", is_bigendian=0, step=2 * w,
        data=np.frombuffer(mm.tobytes(), dtype=np.uint8))


def scene_to_bag(scene: str | Path, out: str | Path, options: SceneToBagOptions | None = None) -> int:
    """Write one split of a DSAC*-layout scene as a rosbag2 at ``out``; returns the frame count."""
    from glace_core.dataset import SceneSplit

    opt = options or SceneToBagOptions()
    if opt.rate <= 0 or not np.isfinite(opt.rate):
        raise ValueError(f"rate must be a positive number of frames per second, got {opt.rate}")
    split = SceneSplit(scene, opt.split)
    if opt.depth_topic and not split.has_depth:
        raise ValueError(f"--depth-topic {opt.depth_topic}: split {opt.split} of {scene} has no depth/ folder")
    image_topic = opt.image_topic + ("/compressed" if opt.compressed and not opt.image_topic.endswith("/compressed") else "")
    period_ns = int(round(1e9 / opt.rate))
    start_ns = int(round(opt.start_time * 1e9))
    from tqdm import tqdm

    with BagWriter(out, storage=opt.storage, overwrite=opt.overwrite) as bag:
        types = bag.types
        for i in tqdm(range(len(split)), desc=f"writing {Path(out).name}", unit="frame", disable=None):
            frame = split[i]
            rgb = split.load_rgb(i)
            stamp = start_ns + i * period_ns
            cam_header = _header(types, stamp, opt.camera_frame)
            # CameraInfo first: a subscriber pairing by stamp then has it before the image
            bag.write(opt.camera_info_topic, camera_info_message(types, cam_header, frame.K, *rgb.shape[:2]),
                      "sensor_msgs/msg/CameraInfo", stamp)
            if opt.compressed:
                bag.write(image_topic, compressed_message(types, cam_header, rgb, opt.compressed_format),
                          "sensor_msgs/msg/CompressedImage", stamp)
            else:
                bag.write(image_topic, image_message(types, cam_header, rgb), "sensor_msgs/msg/Image", stamp)
            if opt.depth_topic:
                bag.write(opt.depth_topic, depth_message(types, cam_header, split.load_depth_m(i)),
                          "sensor_msgs/msg/Image", stamp)
            map_header = _header(types, stamp, opt.map_frame)
            bag.write(opt.gt_topic, types["geometry_msgs/msg/PoseStamped"](header=map_header, pose=pose_message(types, frame.pose)),
                      "geometry_msgs/msg/PoseStamped", stamp)
            bag.write("/tf", tf_message(types, map_header, opt.gt_child_frame, frame.pose), "tf2_msgs/msg/TFMessage", stamp)
    logger.info("wrote %d frames of %s/%s to %s (%s)", len(split), scene, opt.split, out, opt.storage)
    return len(split)


def build_parser() -> argparse.ArgumentParser:
    d = SceneToBagOptions()
    p = argparse.ArgumentParser(
        prog="glace-scene-to-bag", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("scene", help="DSAC*-layout scene folder")
    p.add_argument("out", help="output rosbag2 folder (must not exist unless --overwrite)")
    p.add_argument("--split", default=d.split, help="scene split to write")
    p.add_argument("--storage", default=d.storage, choices=STORAGE_FORMATS, help="rosbag2 storage plugin")
    p.add_argument("--compressed", action="store_true", help="write sensor_msgs/CompressedImage")
    p.add_argument("--compressed-format", default=d.compressed_format, choices=("jpeg", "png"), help="codec with --compressed")
    p.add_argument("--rate", type=float, default=d.rate, help="frame rate of the stamps, Hz")
    p.add_argument("--start-time", type=float, default=d.start_time, help="stamp of the first frame, seconds")
    p.add_argument("--image-topic", default=d.image_topic, help="image topic (/compressed appended with --compressed)")
    p.add_argument("--camera-info-topic", default=d.camera_info_topic, help="CameraInfo topic")
    p.add_argument("--gt-topic", default=d.gt_topic, help="ground-truth PoseStamped topic")
    p.add_argument("--map-frame", default=d.map_frame, help="frame of the ground-truth poses")
    p.add_argument("--camera-frame", default=d.camera_frame, help="frame_id of the images")
    p.add_argument("--gt-child-frame", default=d.gt_child_frame, help="TF child frame of the ground truth")
    p.add_argument("--depth-topic", default=d.depth_topic,
                   help="also write the split's depth/ as 16UC1 Images (mm) on this topic, stamped like the images")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fields = {k: v for k, v in vars(args).items() if k not in ("scene", "out")}
    try:
        n = scene_to_bag(args.scene, args.out, SceneToBagOptions(**fields))
    except (BagError, ValueError, FileNotFoundError) as exc:
        print(f"glace-scene-to-bag: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} frames to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
