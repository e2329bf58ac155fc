"""Which poses the relocalizer publishes, and when it sends /initialpose (no ROS here).

- :func:`gate_cause`: the quality gate. A localization is held back (and the cause counted in
  /diagnostics) when it has too few inliers or too low an inlier ratio, when its covariance says it
  is too uncertain, or when it jumps too far from the pose odometry predicts. Limits of 0 are off.
- :class:`InitialPosePolicy`: /initialpose re-initialises AMCL's particle filter, so it is sent
  ``off`` (never), ``once`` (the first good pose after start or after a ``~/localize`` request) or
  ``on_jump`` (when the estimate departs from the odometry-predicted pose by more than the jump
  limits, and once when nothing predicts the pose yet).

Poses are camera-to-world / base-to-map (4, 4) float64.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from glace_core.geometry import pose_errors

__all__ = ["INITIALPOSE_MODES", "GateLimits", "gate_cause", "pose_jump", "InitialPosePolicy"]

INITIALPOSE_MODES = ("off", "once", "on_jump")


@dataclass(frozen=True)
class GateLimits:
    """Limits of the quality gate (0: that check is off)."""

    min_inlier_count: int = 0
    min_inlier_ratio: float = 0.0  # inliers / network cells
    max_position_stddev: float = 0.0  # m, the largest position standard deviation of the covariance
    max_rotation_stddev: float = 0.0  # degrees, the largest rotation standard deviation
    max_jump_distance: float = 0.0  # m, from the odometry-predicted pose
    max_jump_angle: float = 0.0  # degrees, from the odometry-predicted pose


def pose_jump(estimate: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(distance m, angle degrees) between two (4, 4) poses."""
    t, r = pose_errors(estimate, predicted)
    return float(t), float(r)


def gate_cause(inlier_count: int, num_cells: int, covariance: np.ndarray | None, limits: GateLimits,
               estimate: np.ndarray | None = None, predicted: np.ndarray | None = None) -> tuple[str, str] | None:
    """None when the pose passes, else (cause, reason): cause one of ``few_inliers``,
    ``low_inlier_ratio``, ``uncertain``, ``jump``; the reason is a sentence with the numbers.
    ``covariance`` (36,) ROS order; ``estimate``/``predicted`` (4, 4) for the jump check (skipped
    when ``predicted`` is None)."""
    if inlier_count < limits.min_inlier_count:
        return "few_inliers", f"{inlier_count} inliers < min_inlier_count {limits.min_inlier_count}"
    ratio = inlier_count / max(num_cells, 1)
    if ratio < limits.min_inlier_ratio:
        return "low_inlier_ratio", f"inlier ratio {ratio:.3f} < min_inlier_ratio {limits.min_inlier_ratio:g}"
    if covariance is not None and (limits.max_position_stddev or limits.max_rotation_stddev):
        var = np.diag(np.asarray(covariance, dtype=np.float64).reshape(6, 6))
        pos, rot = math.sqrt(max(var[:3].max(), 0.0)), math.degrees(math.sqrt(max(var[3:].max(), 0.0)))
        if limits.max_position_stddev and pos > limits.max_position_stddev:
            return "uncertain", f"position stddev {pos:.3f} m > max_position_stddev {limits.max_position_stddev:g}"
        if limits.max_rotation_stddev and rot > limits.max_rotation_stddev:
            return "uncertain", f"rotation stddev {rot:.2f} deg > max_rotation_stddev {limits.max_rotation_stddev:g}"
    if predicted is not None and estimate is not None and (limits.max_jump_distance or limits.max_jump_angle):
        dist, angle = pose_jump(estimate, predicted)
        if (limits.max_jump_distance and dist > limits.max_jump_distance) or \
                (limits.max_jump_angle and angle > limits.max_jump_angle):
            return "jump", (f"{dist:.2f} m / {angle:.1f} deg from the odometry-predicted pose (max_jump_distance "
                            f"{limits.max_jump_distance:g} m, max_jump_angle {limits.max_jump_angle:g} deg)")
    return None


class InitialPosePolicy:
    """Decides, pose by pose, whether /initialpose is sent (thread-safe)."""

    def __init__(self, mode: str, jump_distance: float, jump_angle: float):
        if mode not in INITIALPOSE_MODES:
            raise ValueError(f"initialpose_mode must be one of {INITIALPOSE_MODES}, got {mode!r}")
        self.mode, self.jump_distance, self.jump_angle = mode, float(jump_distance), float(jump_angle)
        self._sent = False
        self._requested = False
        self._lock = threading.Lock()

    def request(self) -> None:
        """The next published pose is sent whatever the mode (``~/localize``)."""
        with self._lock:
            self._requested = True

    def should_send(self, estimate: np.ndarray, predicted: np.ndarray | None) -> bool:
        """Whether this published pose goes to /initialpose; marks it sent when True."""
        with self._lock:
            send = self._requested
            if self.mode == "once":
                send = send or not self._sent
            elif self.mode == "on_jump":
                if predicted is None:
                    send = send or not self._sent
                else:
                    dist, angle = pose_jump(estimate, predicted)
                    send = send or dist > self.jump_distance or angle > self.jump_angle
            if send:
                self._sent, self._requested = True, False
            return send
