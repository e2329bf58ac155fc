"""Test views away from the mapping path (``--test-offset``, ``--test-yaw``).

Each test pose (made as usual, between the training poses) is moved by ``offset`` metres sideways
and up/down: along cos(e) · side · lateral + sin(e) · up, where lateral is the horizontal
direction of the camera's x axis, side ±1 and the elevation e is drawn in [-30°, 30°]; and it is
turned by ±``yaw`` degrees about the world vertical through its new position. Sides and signs are
drawn per frame; when the moved view would leave the free space (0.5 m from walls, 0.35 m from
furniture, 0.5 m under the ceiling, 0.5 m over the floor) or see a surface nearer than 0.3 m, the
other side and sign are tried, then the offset is shrunk (×0.8, 0.6, ... 0) and, last, the yaw:
those frames are clamped, counted in a warning and listed in ``scene.json``.
"""
from __future__ import annotations

import logging

import numpy as np

from glace_core.synthetic.camera import Camera
from glace_core.synthetic.room import Room
from glace_core.synthetic.views import BOX_CLEARANCE, WALL_CLEARANCE, probe_rays, view_ok, yaw_rotate

_logger = logging.getLogger(__name__)

MAX_ELEVATION_DEG = 30.0
_SCALES = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)


def _valid(room: Room, pose: np.ndarray, probe) -> bool:
    p = pose[:3, 3]
    if not room.free(p[None, :2], WALL_CLEARANCE, BOX_CLEARANCE)[0]:
        return False
    return 0.5 <= p[2] <= room.ceiling(p[None, :2])[0] - 0.5 and view_ok(room, pose, probe)


def _candidates(side: float, sign: float):
    """(offset scale, yaw scale, side, yaw sign) in the order tried: full yaw with shrinking offsets,
    then no offset with shrinking yaw; each with both sides and both signs."""
    flips = ((side, sign), (-side, sign), (side, -sign), (-side, -sign))
    for scale in _SCALES:
        for s, g in flips:
            yield scale, 1.0, s, g
    for yaw_scale in _SCALES[1:]:
        for s, g in flips:
            yield 0.0, yaw_scale, s, g


def displace_test_poses(room: Room, camera: Camera, poses: np.ndarray, offset_m: float, yaw_deg: float,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Moved and turned test poses (M, 4, 4) and what each got, (M, 2): offset (m) and yaw (deg)."""
    if offset_m < 0 or yaw_deg < 0:
        raise ValueError(f"test offset and yaw must be >= 0, got {offset_m} m, {yaw_deg} deg")
    probe = probe_rays(camera)
    out, achieved = [], []
    for pose in np.asarray(poses, np.float64):
        lateral = np.array([pose[0, 0], pose[1, 0], 0.0])
        lateral /= max(np.linalg.norm(lateral), 1e-9)
        elevation = np.radians(rng.uniform(-MAX_ELEVATION_DEG, MAX_ELEVATION_DEG))
        side, sign = rng.choice((-1.0, 1.0), 2)
        found = (pose, 0.0, 0.0)  # scale 0, yaw 0 (the pose itself) when nothing else is valid
        for scale, yaw_scale, s, g in _candidates(side, sign):
            step = scale * offset_m * (np.cos(elevation) * s * lateral + np.sin(elevation) * np.array([0, 0, 1.0]))
            moved = pose.copy()
            moved[:3, 3] += step
            moved = yaw_rotate(moved, g * yaw_scale * np.radians(yaw_deg))
            if _valid(room, moved, probe):
                found = (moved, scale * offset_m, yaw_scale * yaw_deg)
                break
        out.append(found[0])
        achieved.append(found[1:])
    achieved = np.array(achieved, np.float64).reshape(-1, 2)
    clamped = (achieved[:, 0] < offset_m - 1e-9) | (achieved[:, 1] < yaw_deg - 1e-9)
    if clamped.any():
        _logger.warning("test offset/yaw clamped to stay in free space on %d of %d frames (smallest: %.2f m, %.1f deg)",
                        int(clamped.sum()), len(achieved), achieved[:, 0].min(), achieved[:, 1].min())
    return np.array(out).reshape(-1, 4, 4), achieved
