"""sensor_msgs/CameraInfo -> the project's 3x3 intrinsics, validated, plus a stamp-matched cache.

Pixel convention. ROS (REP-104, like OpenCV) puts the *centre* of the top-left pixel at (0, 0);
this project (DEVELOPERS.md) puts the top-left *corner* at (0, 0), so pixel i has its centre at
i + 0.5. The same physical principal point therefore reads

    cx_ours = cx_ros + 0.5,    cy_ours = cy_ros + 0.5.

ROI and binning (REP-104). ``k`` belongs to the full-resolution sensor image (width x height).
``roi`` (in full-resolution pixels; all zero = the full image) crops it, and ``binning_x/y``
(0 or 1 = none) then divides it, so the published image is (roi.height // binning_y,
roi.width // binning_x). The intrinsics of that image are, in our corner convention,

    cx = (cx_full - roi.x_offset) / binning_x,   fx = fx_full / binning_x   (y likewise),

which is exact: a binned pixel u covers full-resolution corners [b·u, b·u + b), so corner
coordinates simply divide by b (in ROS's centre convention the same step reads
cx' = (cx - (b - 1)/2) / b; image_geometry's cx / b is off by (b - 1)/(2b) pixels).
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from glace_ros.stamps import stamp_to_ns

__all__ = [
    "CameraInfoError", "intrinsics_from_camera_info", "camera_info_image_size", "check_image_matches",
    "intrinsics_for_image", "has_distortion", "CacheMatch", "CameraInfoCache",
]


class CameraInfoError(ValueError):
    """A CameraInfo that cannot give valid intrinsics, or that does not fit the image."""


def _roi_and_binning(msg: Any) -> tuple[int, int, int, int, int, int]:
    """(x_offset, y_offset, roi_w, roi_h, binning_x, binning_y), validated against width/height."""
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise CameraInfoError(f"CameraInfo width/height must be positive, got {width}x{height} (frame "
                              f"{msg.header.frame_id!r})")
    roi = msg.roi
    x0, y0, rw, rh = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if (x0, y0, rw, rh) == (0, 0, 0, 0):
        rw, rh = width, height
    elif rw <= 0 or rh <= 0 or x0 + rw > width or y0 + rh > height:
        raise CameraInfoError(
            f"CameraInfo roi (x_offset={x0}, y_offset={y0}, width={rw}, height={rh}) is empty or outside "
            f"the {width}x{height} sensor image")
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    if rw // bx == 0 or rh // by == 0:
        raise CameraInfoError(f"CameraInfo binning {bx}x{by} leaves no pixels of the {rw}x{rh} roi")
    return x0, y0, rw, rh, bx, by


def camera_info_image_size(msg: Any) -> tuple[int, int]:
    """(height, width) of the images this CameraInfo describes, after roi and binning."""
    _, _, rw, rh, bx, by = _roi_and_binning(msg)
    return rh // by, rw // bx


def intrinsics_from_camera_info(msg: Any) -> np.ndarray:
    """sensor_msgs/CameraInfo -> (3, 3) float64 K of the published image, in our pixel convention.

    Uses fx, fy, cx, cy and the skew of ``k``, or the left 3x3 of ``p`` when ``k`` is all zero.
    Applies the +0.5 centre-to-corner shift, then roi and binning (see the module docstring).
    Raises CameraInfoError naming the problem: zero/negative/non-finite focal length, non-finite
    principal point, zero width/height, a bad roi or binning.
    """
    frame = msg.header.frame_id
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    source = "k"
    if not np.any(k):
        k = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)[:, :3]
        source = "p"
    fx, fy, cx, cy, skew = k[0, 0], k[1, 1], k[0, 2], k[1, 2], k[0, 1]
    for name, value in (("fx", fx), ("fy", fy)):
        if not math.isfinite(value) or value <= 0:
            raise CameraInfoError(f"CameraInfo focal length {name} = {value} (from {source}) must be finite "
                                  f"and > 0 (frame {frame!r})")
    for name, value in (("cx", cx), ("cy", cy), ("skew", skew)):
        if not math.isfinite(value):
            raise CameraInfoError(f"CameraInfo {name} = {value} (from {source}) is not finite (frame {frame!r})")
    x0, y0, _, _, bx, by = _roi_and_binning(msg)
    K = np.eye(3)
    K[0, 0], K[1, 1] = fx / bx, fy / by
    K[0, 1] = skew / bx
    K[0, 2] = (cx + 0.5 - x0) / bx
    K[1, 2] = (cy + 0.5 - y0) / by
    return K


def check_image_matches(info_hw: tuple[int, int], image_hw: tuple[int, int], frame_id: str = "") -> None:
    """Raise CameraInfoError unless the image's (H, W) equals the CameraInfo's (after roi/binning)."""
    info_hw, image_hw = tuple(int(v) for v in info_hw), tuple(int(v) for v in image_hw[:2])
    if info_hw != image_hw:
        raise CameraInfoError(
            f"image is {image_hw[1]}x{image_hw[0]} (WxH) but its CameraInfo{f' ({frame_id!r})' if frame_id else ''} "
            f"describes {info_hw[1]}x{info_hw[0]} (after roi and binning); intrinsics would be wrong")


def intrinsics_for_image(msg: Any, image_hw: tuple[int, int]) -> np.ndarray:
    """K (3, 3) for an image of size ``image_hw`` (H, W), after checking the sizes agree."""
    check_image_matches(camera_info_image_size(msg), image_hw, msg.header.frame_id)
    return intrinsics_from_camera_info(msg)


def has_distortion(msg: Any) -> bool:
    """True when the CameraInfo has non-zero distortion coefficients (the image is not rectified)."""
    d = np.asarray(msg.d, dtype=np.float64)
    return bool(d.size and np.any(d != 0))


@dataclass(frozen=True)
class CacheMatch:
    """A cached CameraInfo for an image: ``exact`` when its stamp is within tolerance."""

    msg: Any
    exact: bool
    dt_s: float  # info stamp - image stamp


class CameraInfoCache:
    """Recent CameraInfo messages per frame_id, for pairing with images by stamp.

    Memory is bounded: ``max_entries`` messages per frame_id and ``max_frames`` frame_ids (the one
    updated longest ago is dropped). Thread-safe (callbacks may run in a multi-threaded executor).
    """

    def __init__(self, tolerance_s: float = 0.05, max_entries: int = 32, max_frames: int = 16):
        if not (tolerance_s >= 0 and math.isfinite(tolerance_s)):
            raise ValueError(f"tolerance_s must be finite and >= 0, got {tolerance_s}")
        if max_entries < 1 or max_frames < 1:
            raise ValueError(f"max_entries and max_frames must be >= 1, got {max_entries}, {max_frames}")
        self.tolerance_ns = int(round(tolerance_s * 1e9))
        self.max_entries, self.max_frames = int(max_entries), int(max_frames)
        self._by_frame: OrderedDict[str, deque[tuple[int, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, msg: Any) -> None:
        """Store a CameraInfo under its header.frame_id and header.stamp."""
        frame = str(msg.header.frame_id)
        with self._lock:
            entries = self._by_frame.get(frame)
            if entries is None:
                entries = self._by_frame[frame] = deque(maxlen=self.max_entries)
                while len(self._by_frame) > self.max_frames:
                    self._by_frame.popitem(last=False)
            self._by_frame.move_to_end(frame)
            entries.append((stamp_to_ns(msg.header.stamp), msg))

    def match(self, stamp: Any, frame_id: str) -> CacheMatch | None:
        """The CameraInfo nearest ``stamp`` within tolerance (exact), else the latest received for
        ``frame_id`` (not exact), else None."""
        t = stamp_to_ns(stamp)
        with self._lock:
            entries = self._by_frame.get(str(frame_id))
            if not entries:
                return None
            best_ns, best = min(entries, key=lambda e: abs(e[0] - t))
            if abs(best_ns - t) <= self.tolerance_ns:
                return CacheMatch(best, True, (best_ns - t) * 1e-9)
            last_ns, last = entries[-1]
            return CacheMatch(last, False, (last_ns - t) * 1e-9)

    def lookup(self, stamp: Any, frame_id: str) -> Any | None:
        """The CameraInfo for an image with ``stamp`` and ``frame_id``; see :meth:`match`."""
        found = self.match(stamp, frame_id)
        return None if found is None else found.msg

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_frame.values())
