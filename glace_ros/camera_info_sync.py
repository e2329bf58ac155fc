"""Pairing images with their CameraInfo in a live graph, where the two arrive in either order.

A camera driver publishes an image and its CameraInfo with the same stamp, but they travel on two
topics, so the CameraInfo may arrive a little after the image. :class:`CameraInfoSync` keeps the
recent CameraInfo messages (``camera_info.CameraInfoCache``) and, for an image, returns the one
with the matching stamp, waiting up to ``wait_s`` for it while it is still in flight:

- when no CameraInfo was received yet for the image's frame_id, or
- when this camera's CameraInfo stamps have matched its images before (a synchronised driver) and
  the newest one is older than the image.

Otherwise (a driver that publishes CameraInfo at its own rate) the latest one is used at once.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from glace_ros.camera_info import CacheMatch, CameraInfoCache

__all__ = ["CameraInfoSync"]

MAX_SYNCED_FRAMES = 64  # bound of the set of frame_ids known to be synchronised


class CameraInfoSync:
    """Thread-safe: ``add`` runs in the subscription callback, ``match`` in the worker thread."""

    def __init__(self, tolerance_s: float, wait_s: float = 0.2):
        self.cache = CameraInfoCache(tolerance_s)
        self.wait_s = float(wait_s)
        self._cond = threading.Condition()
        self._synced: set[str] = set()

    def add(self, msg: Any) -> None:
        """Store a validated CameraInfo and wake a waiting ``match``."""
        with self._cond:
            self.cache.add(msg)
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake a waiting ``match`` (shutdown)."""
        with self._cond:
            self._cond.notify_all()

    def match(self, stamp: Any, frame_id: str, stop: threading.Event | None = None) -> CacheMatch | None:
        """The CameraInfo match for an image (see the module docstring); None when none arrived."""
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while True:
                found = self.cache.match(stamp, frame_id)
                in_flight = found is None or (not found.exact and frame_id in self._synced and found.dt_s < 0)
                left = deadline - time.monotonic()
                if not in_flight or left <= 0 or (stop is not None and stop.is_set()):
                    break
                self._cond.wait(left)
            if found is not None and found.exact and frame_id not in self._synced:
                if len(self._synced) >= MAX_SYNCED_FRAMES:
                    self._synced.clear()
                self._synced.add(frame_id)
        return found
