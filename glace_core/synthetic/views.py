"""Camera views in a synthetic room: building a pose (``look_at``, the loop's pose formula), turning
it, checking it (free space, nothing nearer than 0.3 m) and measuring test views against training
views. Shared by the trajectories (``trajectory``, ``tour``) and the test displacement."""
from __future__ import annotations

import numpy as np
import torch

from glace_core.synthetic.camera import Camera
from glace_core.synthetic.room import Room, one_torch_thread

WALL_CLEARANCE = 0.5
BOX_CLEARANCE = 0.35
MIN_VIEW_DEPTH = 0.3
TURNS = (0.0, 0.3, -0.3, 0.6, -0.6, 0.9, -0.9, 1.2, -1.2, 1.5, -1.5)  # yaw turns (rad) tried for a valid view


def look_at(position: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world (4, 4) float64 at ``position`` (3,) looking at ``target`` (3,), world z up,
    OpenCV axes (x right, y down, z forward), rolled by ``roll`` radians about the optical axis."""
    fwd = np.asarray(target, np.float64) - np.asarray(position, np.float64)
    norm = np.linalg.norm(fwd)
    if norm < 1e-9:
        raise ValueError("look_at: target equals position")
    fwd /= norm
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-6:
        raise ValueError("look_at: the view direction is vertical")
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c, s = np.cos(roll), np.sin(roll)
    x, y = c * right + s * down, -s * right + c * down
    pose = np.eye(4)
    pose[:3, :3] = np.stack((x, y, fwd), 1)
    pose[:3, 3] = position
    return pose


def yaw_rotate(pose: np.ndarray, angle: float) -> np.ndarray:
    """The camera-to-world ``pose`` (4, 4) turned by ``angle`` radians about the world z axis
    through its own position (positive: to the left, seen from above)."""
    c, s = np.cos(angle), np.sin(angle)
    out = pose.copy()
    out[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ pose[:3, :3]
    return out


def nearest_view_distances(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each test pose (M, 4, 4): the distance (M,) in metres to the nearest training pose
    (N, 4, 4) by position, and the rotation angle (M,) in degrees between the two."""
    dist = np.linalg.norm(test[:, None, :3, 3] - train[None, :, :3, 3], axis=-1)
    nearest = dist.argmin(1)
    rel = np.einsum("mji,mjk->mik", train[nearest, :3, :3], test[:, :3, :3])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return dist[np.arange(len(test)), nearest], np.degrees(np.arccos(cos))


def is_free(room: Room, xy: np.ndarray) -> np.ndarray:
    """(M,) bool: floor points xy (M, 2) clear of walls and furniture."""
    return room.free(xy, WALL_CLEARANCE, BOX_CLEARANCE)


def view_ok(room: Room, pose: np.ndarray, probe: torch.Tensor) -> bool:
    """Whether the probe rays (P, 3) from ``pose`` all hit a surface, none nearer than MIN_VIEW_DEPTH
    and half of them farther than 0.8 m."""
    with one_torch_thread():  # a tiny product: a thread pool only slows it down
        dirs = probe @ torch.from_numpy(pose[:3, :3]).T
    t, q, _, _ = room.intersect(torch.from_numpy(pose[:3, 3]), dirs)
    return bool((q >= 0).all() and t.min() > MIN_VIEW_DEPTH and t.median() > 0.8)


def probe_rays(camera: Camera) -> torch.Tensor:
    rays = camera.rays()
    rows = np.linspace(0, camera.height - 1, 6).astype(int)
    cols = np.linspace(0, camera.width - 1, 8).astype(int)
    return torch.from_numpy(rays[np.ix_(rows, cols)].reshape(-1, 3))


def loop_pose(room, params, theta, d_pos=(0.0, 0.0, 0.0), d_ang=(0.0, 0.0, 0.0), probe=None):
    """The loop pose at ``theta``; with ``probe`` rays, the nominal yaw is turned by the smallest of
    ±0.3, ±0.6, ... rad that gives a valid view (None when none does)."""
    if probe is not None:
        for turn in TURNS:
            pose = loop_pose(room, params, theta, d_pos, (d_ang[0] + turn, d_ang[1], d_ang[2]))
            if view_ok(room, pose, probe):
                return pose
        return None
    cx, cy, ax, ay, eps, ph = params
    rad = 1.0 + eps * np.sin(2 * theta + ph[0])
    pos = np.array([cx + ax * rad * np.cos(theta), cy + ay * rad * np.sin(theta),
                    1.35 + 0.2 * np.sin(3 * theta + ph[1])]) + np.asarray(d_pos)
    yaw = theta + 0.7 * np.sin(2 * theta + ph[2]) + d_ang[0]
    pitch = -0.12 + 0.18 * np.sin(3 * theta + ph[3]) + d_ang[1]
    roll = 0.05 * np.sin(5 * theta + ph[4]) + d_ang[2]
    fwd = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
    return look_at(pos, pos + fwd, roll)
