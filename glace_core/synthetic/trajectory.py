"""Camera trajectories inside a synthetic room: camera-to-world poses (OpenCV axes).

- ``loop``: a smooth closed loop around the room centre, looking outwards at walls and furniture
  with slow yaw/pitch/height oscillations; test frames sit between training frames along the same
  loop with small position and angle offsets.
- ``random``: positions drawn uniformly from the free space, each looking at a random point of a
  wall, the floor or a furniture box; train and test are drawn from the same distribution.

Every pose keeps clear of walls (0.5 m) and furniture (0.35 m) and sees nothing closer than 0.3 m
(checked by casting a coarse grid of rays).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from glace_core.synthetic.camera import Camera
from glace_core.synthetic.room import Room

_logger = logging.getLogger(__name__)

TRAJECTORIES = ("loop", "random")
WALL_CLEARANCE = 0.5
BOX_CLEARANCE = 0.35
MIN_VIEW_DEPTH = 0.3


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


def _free(room: Room, xy: np.ndarray) -> np.ndarray:
    """(M,) bool: floor points xy (M, 2) clear of walls and furniture."""
    xy = np.atleast_2d(xy)
    ok = np.all((xy >= WALL_CLEARANCE) & (xy <= room.size[:2] - WALL_CLEARANCE), axis=1)
    for box in room.boxes:
        ok &= box.footprint_distance(xy) >= BOX_CLEARANCE
    return ok


def _view_ok(room: Room, pose: np.ndarray, probe: torch.Tensor) -> bool:
    t, q, _, _ = room.intersect(torch.from_numpy(pose[:3, 3]), probe @ torch.from_numpy(pose[:3, :3]).T)
    return bool((q >= 0).all() and t.min() > MIN_VIEW_DEPTH and t.median() > 0.8)


def _probe(camera: Camera) -> torch.Tensor:
    rays = camera.rays()
    rows = np.linspace(0, camera.height - 1, 6).astype(int)
    cols = np.linspace(0, camera.width - 1, 8).astype(int)
    return torch.from_numpy(rays[np.ix_(rows, cols)].reshape(-1, 3))


def _loop_pose(room, params, theta, d_pos=(0.0, 0.0, 0.0), d_ang=(0.0, 0.0, 0.0), probe=None):
    """The loop pose at ``theta``; with ``probe`` rays, the nominal yaw is turned by the smallest of
    ±0.3, ±0.6, ... rad that gives a valid view (None when none does)."""
    if probe is not None:
        for turn in (0.0, 0.3, -0.3, 0.6, -0.6, 0.9, -0.9, 1.2, -1.2, 1.5, -1.5):
            pose = _loop_pose(room, params, theta, d_pos, (d_ang[0] + turn, d_ang[1], d_ang[2]))
            if _view_ok(room, pose, probe):
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


def loop_trajectory(room: Room, camera: Camera, n_train: int, n_test: int, rng: np.random.Generator,
                    tries: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, 4, 4), (n_test, 4, 4) camera-to-world poses along one closed loop."""
    probe = _probe(camera)
    for attempt in range(tries):
        shrink = 1.0 - 0.6 * attempt / tries
        params = (room.size[0] * rng.uniform(0.35, 0.65), room.size[1] * rng.uniform(0.35, 0.65),
                  shrink * rng.uniform(0.15, 0.3) * room.size[0], shrink * rng.uniform(0.15, 0.3) * room.size[1],
                  rng.uniform(0.0, 0.2), rng.uniform(0, 2 * np.pi, 5))
        start = rng.uniform(0, 2 * np.pi)
        train_theta = start + 2 * np.pi * np.arange(n_train) / max(n_train, 1)
        between = np.floor((np.arange(n_test) + 0.5) * n_train / max(n_test, 1)) + 0.5  # half-way between train frames
        test_theta = start + 2 * np.pi * between / max(n_train, 1)
        centres = [_loop_pose(room, params, th)[:2, 3] for th in np.linspace(0, 2 * np.pi, 97)]
        if not _free(room, np.array(centres)).all():
            continue
        train = [_loop_pose(room, params, th, probe=probe) for th in train_theta]
        test = [_loop_pose(room, params, th, rng.uniform(-0.05, 0.05, 3), np.radians(rng.uniform(-3, 3, 3)), probe)
                for th in test_theta]
        poses = train + test
        if all(p is not None for p in poses) and _free(room, np.array([p[:2, 3] for p in poses])).all():
            return np.array(train).reshape(-1, 4, 4), np.array(test).reshape(-1, 4, 4)
    raise RuntimeError(f"no collision-free loop found in {tries} tries (room {room.size.round(2)} m, "
                       f"{len(room.boxes)} boxes)")


def _random_pose(room: Room, rng: np.random.Generator, probe: torch.Tensor, tries: int = 1000) -> np.ndarray:
    areas = np.linalg.norm(np.cross(room.U, room.V), axis=1)
    weights = np.where(np.array([n == "ceiling" for n in room.names]), 0.0, areas)
    weights = np.where(np.array([n == "floor" for n in room.names]), 0.3 * weights, weights)
    weights /= weights.sum()
    for _ in range(tries):
        xy = rng.uniform(WALL_CLEARANCE, room.size[:2] - WALL_CLEARANCE)
        if not _free(room, xy)[0]:
            continue
        pos = np.array([xy[0], xy[1], rng.uniform(1.0, 1.8)])
        q = rng.choice(len(weights), p=weights)
        target = room.P0[q] + rng.uniform(0.1, 0.9) * room.U[q] + rng.uniform(0.1, 0.9) * room.V[q]
        fwd = target - pos
        dist = np.linalg.norm(fwd)
        if dist < 1.0 or abs(fwd[2]) / dist > np.sin(np.radians(50)):
            continue
        pose = look_at(pos, target, np.radians(rng.uniform(-8, 8)))
        if _view_ok(room, pose, probe):
            return pose
    raise RuntimeError(f"no valid random pose found in {tries} tries (room {room.size.round(2)} m)")


def random_trajectory(room: Room, camera: Camera, n_train: int, n_test: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, 4, 4), (n_test, 4, 4) independent poses from one distribution over the room."""
    probe = _probe(camera)
    train = [_random_pose(room, rng, probe) for _ in range(n_train)]
    test = [_random_pose(room, rng, probe) for _ in range(n_test)]
    return np.array(train).reshape(-1, 4, 4), np.array(test).reshape(-1, 4, 4)


def make_trajectory(kind: str, room: Room, camera: Camera, n_train: int, n_test: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Train and test poses for trajectory ``kind`` ("loop" or "random")."""
    if kind == "loop":
        return loop_trajectory(room, camera, n_train, n_test, rng)
    if kind == "random":
        return random_trajectory(room, camera, n_train, n_test, rng)
    raise ValueError(f"trajectory must be one of {TRAJECTORIES}, got {kind!r}")
