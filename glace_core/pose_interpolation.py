"""Interpolating a timed sequence of 4×4 poses at query times (lerp translation, slerp rotation).

Used to give every image of a recording the pose of the SLAM/odometry trajectory at the image's
stamp. A query outside the trajectory, or in a gap longer than ``max_gap_ns``, has no pose.

The rotation between two samples is interpolated along the geodesic (slerp on the short arc):
R(α) = R0 · exp(α · log(R0ᵀ R1)), with the relative rotation's angle in [0, π].
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


class PoseTrajectory:
    """A timed pose trajectory, sorted once, answering interpolated queries with :meth:`at`.

    Args:
        stamps_ns: (M,) int64 trajectory stamps (any order; duplicates keep the last pose).
        poses: (M, 4, 4) float rigid poses at those stamps.
        max_gap_ns: a query between two samples further apart than this has no pose (None: any
            gap is bridged).

    Raises:
        ValueError: when ``poses`` is not (M, 4, 4) for the M stamps or holds non-finite values.
    """

    def __init__(self, stamps_ns: np.ndarray, poses: np.ndarray, max_gap_ns: int | None = None):
        stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        poses = np.asarray(poses, dtype=np.float64)
        if poses.shape != (stamps.size, 4, 4):
            raise ValueError(f"poses must be (M, 4, 4) with M = {stamps.size} stamps, got {poses.shape}")
        if not np.all(np.isfinite(poses)):
            raise ValueError("poses contain non-finite values")
        if max_gap_ns is not None and max_gap_ns < 0:
            raise ValueError(f"max_gap_ns must be >= 0 or None, got {max_gap_ns}")
        order = np.argsort(stamps, kind="stable")
        stamps, poses = stamps[order], poses[order]
        keep = np.append(stamps[1:] != stamps[:-1], True)  # last of each run of equal stamps
        self.stamps_ns, self.poses = stamps[keep], poses[keep]
        self.max_gap_ns = max_gap_ns

    def __len__(self) -> int:
        return int(self.stamps_ns.size)

    def at(self, query_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q, 4, 4) float64 poses at the (Q,) int64 ``query_ns`` (NaN where none) and a (Q,) bool
        mask of the valid ones. A query exactly at a sample gets that pose; one outside
        [first, last] or inside a too-long gap gets none."""
        stamps, poses = self.stamps_ns, self.poses
        query = np.asarray(query_ns, dtype=np.int64).reshape(-1)
        out = np.full((query.size, 4, 4), np.nan)
        valid = np.zeros(query.size, dtype=bool)
        if stamps.size == 0 or query.size == 0:
            return out, valid
        j = np.searchsorted(stamps, query, side="left")  # first sample >= query
        exact = (j < stamps.size) & (stamps[np.minimum(j, stamps.size - 1)] == query)
        out[exact], valid[exact] = poses[j[exact]], True

        inside = ~exact & (j > 0) & (j < stamps.size)
        if self.max_gap_ns is not None:
            gap = stamps[np.minimum(j, stamps.size - 1)] - stamps[np.maximum(j - 1, 0)]
            inside &= gap <= self.max_gap_ns
        if inside.any():
            j1 = j[inside]
            j0 = j1 - 1
            alpha = ((query[inside] - stamps[j0]) / (stamps[j1] - stamps[j0]).astype(np.float64))[:, None]
            r0 = Rotation.from_matrix(poses[j0, :3, :3])
            r1 = Rotation.from_matrix(poses[j1, :3, :3])
            delta = (r0.inv() * r1).as_rotvec()  # angle in [0, π]: the short arc
            rot = r0 * Rotation.from_rotvec(alpha * delta)
            interp = np.tile(np.eye(4), (j1.size, 1, 1))
            interp[:, :3, :3] = rot.as_matrix()
            interp[:, :3, 3] = (1.0 - alpha) * poses[j0, :3, 3] + alpha * poses[j1, :3, 3]
            out[inside], valid[inside] = interp, True
        return out, valid


def interpolate_poses(stamps_ns: np.ndarray, poses: np.ndarray, query_ns: np.ndarray,
                      max_gap_ns: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Poses at ``query_ns`` of the trajectory (``stamps_ns`` (M,), ``poses`` (M, 4, 4)).

    Returns (Q, 4, 4) float64 poses (NaN where none) and a (Q,) bool validity mask; see
    :class:`PoseTrajectory`.
    """
    return PoseTrajectory(stamps_ns, poses, max_gap_ns).at(query_ns)
