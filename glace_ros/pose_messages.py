"""Camera poses -> geometry_msgs / tf2_msgs / sensor_msgs messages, and a small TF buffer.

Poses are camera-to-world 4x4 float64 in OpenCV optical axes (DEVELOPERS.md): the map->camera
transform of TF, with the camera frame an optical frame (x right, y down, z forward). Quaternions
are (x, y, z, w) as in geometry_msgs.

REP-105 odom mode: instead of map->camera the node publishes map->odom, computed from its own
map_T_camera and the odom_T_camera it looks up in TF, so that map->odom->...->camera reproduces
the relocalised pose: map_T_odom = map_T_camera · inverse(odom_T_camera).

tf2_ros does not install from pip, so :class:`TfBuffer` is a minimal buffer fed with TFMessages from
/tf and /tf_static that answers chained lookups.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from typing import Any

import numpy as np

from glace_core import geometry
from glace_ros.camera_info import stamp_to_ns

__all__ = [
    "rotation_matrix_to_quaternion", "quaternion_to_rotation_matrix", "invert_rigid",
    "matrix_to_pose", "pose_to_matrix", "matrix_to_transform", "transform_to_matrix",
    "pose_stamped_from_matrix", "pose_with_covariance_from_matrix", "transform_stamped_from_matrix",
    "covariance_from_ransac", "map_to_odom", "TfBuffer", "point_cloud2_from_scene_coordinates",
    "point_cloud2_to_xyz",
]


# --------------------------------------------------------------------------- rotations

def _check_matrix(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must be a (4, 4) rigid transform, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name} has non-finite entries")
    R = T[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > 1e-3 or np.linalg.det(R) < 0:
        raise ValueError(f"{name}[:3, :3] is not a rotation (max |RᵀR - I| = {err:.2e}, "
                         f"det = {np.linalg.det(R):.3f})")
    return T


def rotation_matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion in ROS order (x, y, z, w), w >= 0
    (``glace_core.geometry.rotation_matrix_to_quaternion``, reordered)."""
    return geometry.rotation_matrix_to_quaternion(R)[[1, 2, 3, 0]]


def quaternion_to_rotation_matrix(q: np.ndarray) -> np.ndarray:
    """(4,) quaternion in ROS order (x, y, z, w), any non-zero norm -> (3, 3) rotation."""
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ValueError(f"quaternion must be 4 finite values (x, y, z, w) with non-zero norm, got {q}")
    return geometry.quaternion_to_rotation_matrix(q[[3, 0, 1, 2]])


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of a (4, 4) rigid transform: [Rᵀ | -Rᵀt] (``glace_core.geometry.invert_pose``)."""
    return geometry.invert_pose(T)


# --------------------------------------------------------------------------- geometry_msgs

def matrix_to_pose(T: np.ndarray):
    """(4, 4) rigid transform -> geometry_msgs/Pose."""
    from geometry_msgs.msg import Point, Pose, Quaternion

    T = _check_matrix(T, "pose")
    x, y, z, w = rotation_matrix_to_quaternion(T[:3, :3])
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)))


def pose_to_matrix(pose: Any) -> np.ndarray:
    """geometry_msgs/Pose -> (4, 4) float64."""
    o, p = pose.orientation, pose.position
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation_matrix([o.x, o.y, o.z, o.w])
    T[:3, 3] = (p.x, p.y, p.z)
    return T


def matrix_to_transform(T: np.ndarray):
    """(4, 4) rigid transform -> geometry_msgs/Transform."""
    from geometry_msgs.msg import Quaternion, Transform, Vector3

    T = _check_matrix(T, "transform")
    x, y, z, w = rotation_matrix_to_quaternion(T[:3, :3])
    return Transform(translation=Vector3(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                     rotation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)))


def transform_to_matrix(transform: Any) -> np.ndarray:
    """geometry_msgs/Transform -> (4, 4) float64 parent_T_child."""
    r, t = transform.rotation, transform.translation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation_matrix([r.x, r.y, r.z, r.w])
    T[:3, 3] = (t.x, t.y, t.z)
    return T


def _header(stamp: Any, frame_id: str):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    if not hasattr(stamp, "sec"):
        ns = stamp_to_ns(stamp)
        stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    return Header(stamp=stamp, frame_id=frame_id)


def pose_stamped_from_matrix(camera_to_world: np.ndarray, stamp: Any, frame_id: str = "map"):
    """(4, 4) camera-to-map pose -> geometry_msgs/PoseStamped in ``frame_id``."""
    from geometry_msgs.msg import PoseStamped

    return PoseStamped(header=_header(stamp, frame_id), pose=matrix_to_pose(camera_to_world))


def pose_with_covariance_from_matrix(camera_to_world: np.ndarray, stamp: Any, covariance: np.ndarray,
                                     frame_id: str = "map"):
    """(4, 4) pose + (36,) or (6, 6) covariance -> geometry_msgs/PoseWithCovarianceStamped."""
    from geometry_msgs.msg import PoseWithCovariance, PoseWithCovarianceStamped

    cov = np.asarray(covariance, dtype=np.float64)
    if cov.size != 36 or not np.all(np.isfinite(cov)):
        raise ValueError(f"covariance must be 36 finite values (6x6), got shape {cov.shape}")
    return PoseWithCovarianceStamped(
        header=_header(stamp, frame_id),
        pose=PoseWithCovariance(pose=matrix_to_pose(camera_to_world), covariance=cov.reshape(36).tolist()))


def transform_stamped_from_matrix(parent_T_child: np.ndarray, stamp: Any, parent_frame: str, child_frame: str):
    """(4, 4) parent_T_child -> geometry_msgs/TransformStamped (header.frame_id = parent)."""
    from geometry_msgs.msg import TransformStamped

    return TransformStamped(header=_header(stamp, parent_frame), child_frame_id=child_frame,
                            transform=matrix_to_transform(parent_T_child))


# --------------------------------------------------------------------------- covariance

def covariance_from_ransac(inlier_count: int, num_cells: int, mean_inlier_error_px: float, focal_px: float,
                           median_depth_m: float, *, rotation_cam_to_world: np.ndarray | None = None,
                           position_scale: float = 1.0, axial_factor: float = 2.0,
                           min_error_px: float = 0.5, min_inlier_ratio: float = 0.01) -> np.ndarray:
    """6x6 pose covariance (flattened, 36 float64) from a RANSAC result, in ROS's
    PoseWithCovariance order (x, y, z, rot_x, rot_y, rot_z), position in the map frame.

    Model: each inlier constrains the pose with an angular error sigma_px / f, where
    sigma_px = max(mean_inlier_error_px, min_error_px); n inliers average this down by sqrt(n); a
    low inlier ratio r = n / num_cells (clamped to >= min_inlier_ratio) signals an ambiguous or
    partly wrong solution and inflates by 1 / r:

        s         = sigma_px / f / sqrt(n) / r                      (radians)
        std_rot   = s                                              (each axis)
        std_lat   = position_scale · s · median_depth              (camera x, y)
        std_axial = axial_factor · std_lat                         (camera z: depth is the weakest)

    The position block is diag(std_lat², std_lat², std_axial²) rotated into the map frame by
    ``rotation_cam_to_world`` (isotropic with std_axial when it is None). Every variance grows when
    inliers drop or the residual grows; the matrix is finite and positive definite.
    """
    n, total = int(inlier_count), int(num_cells)
    if n < 1 or total < n:
        raise ValueError(f"need 1 <= inlier_count <= num_cells, got inlier_count={n}, num_cells={total}")
    values = dict(mean_inlier_error_px=mean_inlier_error_px, focal_px=focal_px, median_depth_m=median_depth_m,
                  position_scale=position_scale, axial_factor=axial_factor, min_error_px=min_error_px,
                  min_inlier_ratio=min_inlier_ratio)
    for name, value in values.items():
        if not math.isfinite(value) or value < 0 or (value == 0 and name != "mean_inlier_error_px"):
            raise ValueError(f"{name} must be finite and > 0 (>= 0 for the error), got {value}")
    sigma_px = max(float(mean_inlier_error_px), float(min_error_px))
    ratio = max(n / total, float(min_inlier_ratio))
    s = sigma_px / float(focal_px) / math.sqrt(n) / ratio
    std_lat = float(position_scale) * s * float(median_depth_m)
    std_axial = float(axial_factor) * std_lat
    if rotation_cam_to_world is None:
        pos = np.eye(3) * std_axial ** 2
    else:
        R = np.asarray(rotation_cam_to_world, dtype=np.float64)
        if R.shape != (3, 3):
            raise ValueError(f"rotation_cam_to_world must be (3, 3), got {R.shape}")
        pos = R @ np.diag([std_lat ** 2, std_lat ** 2, std_axial ** 2]) @ R.T
        pos = 0.5 * (pos + pos.T)
    cov = np.zeros((6, 6))
    cov[:3, :3] = pos
    cov[3:, 3:] = np.eye(3) * s ** 2
    return cov.reshape(36)


# --------------------------------------------------------------------------- REP-105 odom mode

def map_to_odom(map_T_camera: np.ndarray, odom_T_camera: np.ndarray) -> np.ndarray:
    """map_T_odom (4, 4) such that map_T_odom · odom_T_camera = map_T_camera."""
    map_T_camera = _check_matrix(map_T_camera, "map_T_camera")
    odom_T_camera = _check_matrix(odom_T_camera, "odom_T_camera")
    return map_T_camera @ invert_rigid(odom_T_camera)


class TfBuffer:
    """Transforms heard on /tf and /tf_static, answering chained lookups.

    Each child frame has one parent (a tree, as in tf2). Static edges never expire; a dynamic edge
    keeps the samples of the last ``cache_time_s`` seconds (by message stamp) and a lookup at a
    stamp takes the nearest sample, which must be within ``max_time_gap_s`` of it. Thread-safe.
    """

    def __init__(self, cache_time_s: float = 10.0, max_time_gap_s: float = 0.5):
        if cache_time_s <= 0 or max_time_gap_s < 0:
            raise ValueError(f"cache_time_s must be > 0 and max_time_gap_s >= 0, got {cache_time_s}, {max_time_gap_s}")
        self.cache_ns = int(cache_time_s * 1e9)
        self.max_gap_ns = int(max_time_gap_s * 1e9)
        self._parent: dict[str, str] = {}
        self._static: dict[str, np.ndarray] = {}
        self._dynamic: dict[str, deque[tuple[int, np.ndarray]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _name(frame: str) -> str:
        return str(frame).lstrip("/")

    def set_transform(self, transform_stamped: Any, static: bool = False) -> None:
        """Add one geometry_msgs/TransformStamped (parent = header.frame_id)."""
        parent = self._name(transform_stamped.header.frame_id)
        child = self._name(transform_stamped.child_frame_id)
        if not parent or not child or parent == child:
            raise ValueError(f"transform needs distinct non-empty frames, got parent {parent!r}, child {child!r}")
        T = transform_to_matrix(transform_stamped.transform)
        t = stamp_to_ns(transform_stamped.header.stamp)
        with self._lock:
            self._parent[child] = parent
            if static:
                self._static[child] = T
                self._dynamic.pop(child, None)
                return
            self._static.pop(child, None)
            samples = self._dynamic.setdefault(child, deque())
            if samples and t < samples[-1][0]:  # out of order: insert sorted
                items = list(samples)
                bisect.insort(items, (t, T), key=lambda e: e[0])
                samples.clear()
                samples.extend(items)
            else:
                samples.append((t, T))
            while samples and samples[-1][0] - samples[0][0] > self.cache_ns:
                samples.popleft()

    def add_message(self, msg: Any, static: bool = False) -> None:
        """Add every transform of a tf2_msgs/TFMessage (``static`` for /tf_static)."""
        for ts in msg.transforms:
            self.set_transform(ts, static=static)

    def _edge(self, child: str, t: int | None) -> np.ndarray:
        """parent_T_child at stamp t (None: latest)."""
        if child in self._static:
            return self._static[child]
        samples = self._dynamic[child]
        if t is None:
            return samples[-1][1]
        stamps = [s for s, _ in samples]
        j = bisect.bisect_left(stamps, t)
        best = min((k for k in (j - 1, j) if 0 <= k < len(stamps)), key=lambda k: abs(stamps[k] - t))
        if abs(stamps[best] - t) > self.max_gap_ns:
            raise LookupError(
                f"no {self._parent[child]!r} -> {child!r} transform within {self.max_gap_ns * 1e-9:.3f} s of "
                f"{t * 1e-9:.3f} (have {stamps[0] * 1e-9:.3f} .. {stamps[-1] * 1e-9:.3f})")
        return samples[best][1]

    def _path_to_root(self, frame: str) -> list[str]:
        path = [frame]
        while path[-1] in self._parent:
            path.append(self._parent[path[-1]])
            if len(path) > 1000:
                raise LookupError(f"TF cycle through {frame!r}")
        return path

    def lookup(self, target: str, source: str, stamp: Any = None) -> np.ndarray:
        """target_T_source (4, 4): maps points in ``source`` into ``target`` (tf2's lookupTransform).

        ``stamp`` (Time, int ns, float s or None = latest of each edge). Raises LookupError when the
        frames are not connected or a dynamic edge has no sample near ``stamp``.
        """
        target, source = self._name(target), self._name(source)
        t = None if stamp is None else stamp_to_ns(stamp)
        with self._lock:
            if target == source:
                return np.eye(4)
            up_s, up_t = self._path_to_root(source), self._path_to_root(target)
            common = next((f for f in up_s if f in set(up_t)), None)
            if common is None:
                known = sorted(set(self._parent) | set(self._parent.values()))
                raise LookupError(f"no TF chain between {target!r} and {source!r}; known frames: {known}")
            common_T_source = np.eye(4)
            for child in up_s[: up_s.index(common)]:
                common_T_source = self._edge(child, t) @ common_T_source
            common_T_target = np.eye(4)
            for child in up_t[: up_t.index(common)]:
                common_T_target = self._edge(child, t) @ common_T_target
        return invert_rigid(common_T_target) @ common_T_source


# --------------------------------------------------------------------------- point clouds

def point_cloud2_from_scene_coordinates(xyz: np.ndarray, header: Any, rgb: np.ndarray | None = None):
    """(N, 3) float32 points (+ optional (N, 3) uint8 RGB) -> sensor_msgs/PointCloud2 for RViz.

    Fields x, y, z (FLOAT32) and, with colours, rgb (FLOAT32 holding 0x00RRGGBB, RViz's packing).
    One row (height 1, width N); ``is_dense`` is False when any point is non-finite.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must be (N, 3), got {xyz.shape}")
    n = xyz.shape[0]
    names = ["x", "y", "z"] + (["rgb"] if rgb is not None else [])
    formats = ["<f4", "<f4", "<f4", "<u4"][: len(names)]  # rgb: the float's bit pattern, written as uint32
    record = np.zeros(n, dtype=np.dtype({"names": names, "formats": formats}))
    for i, axis in enumerate("xyz"):
        record[axis] = xyz[:, i]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (n, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (N, 3) uint8 matching xyz (N = {n}), got {rgb.shape} {rgb.dtype}")
        packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
        record["rgb"] = packed
    msg = PointCloud2(header=header, height=1, width=n, is_bigendian=False,
                      point_step=record.dtype.itemsize, row_step=record.dtype.itemsize * n,
                      is_dense=bool(np.all(np.isfinite(xyz))))
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate(names)]
    msg.data = record.tobytes()
    return msg


def point_cloud2_to_xyz(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 with FLOAT32 x, y, z (and optionally packed rgb) -> ((N, 3) float32, (N, 3) uint8 | None)."""
    from sensor_msgs.msg import PointField

    fields = {f.name: f for f in msg.fields}
    for axis in "xyz":
        if axis not in fields or fields[axis].datatype != PointField.FLOAT32:
            raise ValueError(f"PointCloud2 has no FLOAT32 field {axis!r} (fields: {sorted(fields)})")
    order = ">" if msg.is_bigendian else "<"
    n = int(msg.width) * int(msg.height)
    formats = {name: (order + ("u4" if name == "rgb" else "f4"), fields[name].offset)
               for name in fields if name in ("x", "y", "z", "rgb")}
    dtype = np.dtype({"names": list(formats), "formats": [f for f, _ in formats.values()],
                      "offsets": [o for _, o in formats.values()], "itemsize": int(msg.point_step)})
    record = np.frombuffer(bytes(msg.data), dtype=dtype, count=n)
    xyz = np.stack([record[a] for a in "xyz"], axis=1).astype(np.float32)
    rgb = None
    if "rgb" in formats:
        packed = record["rgb"].astype(np.uint32)
        rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    return xyz, rgb
