"""What the relocalizer puts on /tf, REP-105 style, and the odometry it reads from TF.

``tf_mode``:

- ``odom`` (default): the relocalizer owns map -> odom and nothing else. Each localized frame
  updates the correction ``map_T_odom = map_T_camera(t) . inverse(odom_T_camera(t))``, with
  odom_T_camera looked up at the image stamp t (interpolated between odometry samples, waiting up to
  ``odom_tolerance`` for a sample after t; the newest sample is held when it is at most
  ``odom_tolerance`` older than t, otherwise the frame gives no correction). A timer republishes the
  latest correction at ``transform_publish_rate`` Hz, stamped now + ``transform_tolerance`` (as AMCL
  and slam_toolbox do), so it keeps coming while no image arrives.
- ``camera``: map -> ``tf_child_frame``, a frame of the relocalizer's own that must have no other
  parent (the camera's optical frame normally has one, from robot_state_publisher).
- ``none``: nothing on /tf.

Transforms heard on /tf and /tf_static go into a :class:`glace_ros.tf_graph.TfGraph`, except the
edge this node publishes itself. Thread-safe: TF callbacks call ``add``, the worker and the timer
read.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from glace_ros.pose_messages import map_to_odom, transform_stamped_from_matrix
from glace_ros.stamps import NS_PER_S
from glace_ros.tf_graph import TfGraph

__all__ = ["TF_MODES", "TfConflictError", "StaleOdometryError", "TfOutput"]

TF_MODES = ("odom", "camera", "none")
TF_CACHE_S = 30.0  # seconds of dynamic TF samples kept


class TfConflictError(RuntimeError):
    """The frame this node would publish already has another parent on /tf."""


class StaleOdometryError(LookupError):
    """odom -> camera is known, but not recent enough for the image's stamp."""


class TfOutput:
    """The /tf side of the relocalizer (see the module docstring)."""

    def __init__(self, mode: str, map_frame: str, odom_frame: str, child_frame: str, transform_tolerance_s: float,
                 odom_tolerance_s: float):
        if mode not in TF_MODES:
            raise ValueError(f"tf_mode must be one of {TF_MODES}, got {mode!r}")
        self.mode, self.map_frame, self.odom_frame, self.child_frame = mode, map_frame, odom_frame, child_frame
        self.future_ns = int(round(transform_tolerance_s * NS_PER_S))
        self.odom_tolerance_s = float(odom_tolerance_s)
        self.graph = TfGraph(cache_time_s=TF_CACHE_S, max_gap_s=1.0)
        self._cond = threading.Condition()
        self._map_T_odom: np.ndarray | None = None
        self.published_child = {"odom": odom_frame, "camera": child_frame}.get(mode)

    # ------------------------------------------------------------------ input

    def add(self, msg: Any, static: bool) -> None:
        """Add a TFMessage's transforms, except our own edge; raises ValueError for bad ones (the
        good ones are kept)."""
        own = [ts for ts in msg.transforms if self._is_own(ts)]
        if own:
            msg = type(msg)(transforms=[ts for ts in msg.transforms if not self._is_own(ts)])
        try:
            self.graph.add_message(msg, static=static)
        finally:
            with self._cond:
                self._cond.notify_all()

    def _is_own(self, ts) -> bool:
        return (self.published_child is not None and ts.header.frame_id.strip("/") == self.map_frame
                and ts.child_frame_id.strip("/") == self.published_child)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def odom_T(self, frame: str, stamp_ns: int, stop: threading.Event | None = None) -> np.ndarray:
        """odom_T_frame (4, 4) at ``stamp_ns``, waiting up to ``odom_tolerance`` for the odometry of
        that instant. Raises LookupError (no chain odom -> frame yet) or StaleOdometryError."""
        deadline = time.monotonic() + self.odom_tolerance_s
        with self._cond:
            while True:
                try:
                    return self.graph.lookup(self.odom_frame, frame, stamp_ns)
                except LookupError as exc:
                    if "no TF chain" in str(exc):
                        raise
                    left = deadline - time.monotonic()
                    if left <= 0 or (stop is not None and stop.is_set()):
                        break
                    self._cond.wait(min(left, 0.05))
        try:
            return self.graph.lookup(self.odom_frame, frame, stamp_ns, max_extrapolation_s=self.odom_tolerance_s)
        except LookupError as exc:
            raise StaleOdometryError(f"no {self.odom_frame} -> {frame} transform within odom_tolerance "
                                     f"{self.odom_tolerance_s:g} s of the image stamp ({exc})") from exc

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> np.ndarray:
        """target_T_source from the heard TF (stamp None: latest); raises LookupError."""
        return self.graph.lookup(target, source, stamp_ns)

    # ------------------------------------------------------------------ corrections

    def update(self, map_T_frame: np.ndarray, odom_T_frame: np.ndarray) -> np.ndarray:
        """Store and return map_T_odom = map_T_frame . inverse(odom_T_frame)."""
        correction = map_to_odom(map_T_frame, odom_T_frame)
        with self._cond:
            self._map_T_odom = correction
        return correction

    @property
    def map_T_odom(self) -> np.ndarray | None:
        with self._cond:
            return None if self._map_T_odom is None else self._map_T_odom.copy()

    def predicted(self, odom_T_frame: np.ndarray) -> np.ndarray | None:
        """map_T_frame predicted by the last correction and odometry (None before any correction)."""
        correction = self.map_T_odom
        return None if correction is None else correction @ odom_T_frame

    def check_parent(self) -> None:
        """Raise TfConflictError when the frame we publish has another parent on /tf."""
        if self.published_child is None:
            return
        parent = self.graph.parent_of(self.published_child)
        if parent is not None and parent != self.map_frame:
            raise TfConflictError(
                f"frame {self.published_child!r} already has the parent {parent!r} on /tf: publishing "
                f"{self.map_frame} -> {self.published_child} would give it a second parent and break the TF tree; "
                + ("set tf_child_frame to a frame of its own, or tf_mode to 'odom' or 'none'" if self.mode == "camera"
                   else "set tf_mode to 'none' when another node publishes it"))

    # ------------------------------------------------------------------ messages

    def odom_message(self, now_ns: int):
        """The map -> odom TransformStamped to republish now (future-dated), or None before any
        correction or outside odom mode. Raises TfConflictError."""
        if self.mode != "odom":
            return None
        correction = self.map_T_odom
        if correction is None:
            return None
        self.check_parent()
        return transform_stamped_from_matrix(correction, int(now_ns) + self.future_ns, self.map_frame, self.odom_frame)

    def camera_message(self, map_T_camera: np.ndarray, stamp: Any):
        """map -> tf_child_frame at the image stamp (camera mode). Raises TfConflictError."""
        self.check_parent()
        return transform_stamped_from_matrix(map_T_camera, stamp, self.map_frame, self.child_frame)
