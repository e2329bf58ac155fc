"""Camera trajectories inside a synthetic room: camera-to-world poses (OpenCV axes).

- ``loop``: a smooth closed loop around the room centre, looking outwards at walls and furniture
  with slow yaw/pitch/height oscillations; test frames sit between training frames along the same
  loop with small position and angle offsets.
- ``random``: positions drawn uniformly from the free space, each looking at a random point of a
  wall, the floor or a furniture box; train and test are drawn from the same distribution.

In a building (``--rooms``), "loop" is a tour of every room (``tour``) and "random" draws from the
free space of all rooms and corridors.

Every pose keeps clear of walls (0.5 m) and furniture (0.35 m) and sees nothing closer than 0.3 m
(checked by casting a coarse grid of rays; ``views`` has the checks and the clearances).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from glace_core.synthetic.camera import Camera
from glace_core.synthetic.room import Room
from glace_core.synthetic.tour import tour_trajectory
from glace_core.synthetic.views import WALL_CLEARANCE, is_free, look_at, loop_pose, probe_rays, view_ok

_logger = logging.getLogger(__name__)

TRAJECTORIES = ("loop", "random")


def loop_trajectory(room: Room, camera: Camera, n_train: int, n_test: int, rng: np.random.Generator,
                    tries: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, 4, 4), (n_test, 4, 4) camera-to-world poses along one closed loop."""
    probe = probe_rays(camera)
    for attempt in range(tries):
        shrink = 1.0 - 0.6 * attempt / tries
        params = (room.size[0] * rng.uniform(0.35, 0.65), room.size[1] * rng.uniform(0.35, 0.65),
                  shrink * rng.uniform(0.15, 0.3) * room.size[0], shrink * rng.uniform(0.15, 0.3) * room.size[1],
                  rng.uniform(0.0, 0.2), rng.uniform(0, 2 * np.pi, 5))
        start = rng.uniform(0, 2 * np.pi)
        train_theta = start + 2 * np.pi * np.arange(n_train) / max(n_train, 1)
        between = np.floor((np.arange(n_test) + 0.5) * n_train / max(n_test, 1)) + 0.5  # half-way between train frames
        test_theta = start + 2 * np.pi * between / max(n_train, 1)
        centres = [loop_pose(room, params, th)[:2, 3] for th in np.linspace(0, 2 * np.pi, 97)]
        if not is_free(room, np.array(centres)).all():
            continue
        train = [loop_pose(room, params, th, probe=probe) for th in train_theta]
        test = [loop_pose(room, params, th, rng.uniform(-0.05, 0.05, 3), np.radians(rng.uniform(-3, 3, 3)), probe)
                for th in test_theta]
        poses = train + test
        if all(p is not None for p in poses) and is_free(room, np.array([p[:2, 3] for p in poses])).all():
            return np.array(train).reshape(-1, 4, 4), np.array(test).reshape(-1, 4, 4)
    raise RuntimeError(f"no collision-free loop found in {tries} tries (room {room.size.round(2)} m, "
                       f"{len(room.boxes)} boxes)")


def _random_pose(room: Room, rng: np.random.Generator, probe: torch.Tensor, tries: int = 1000) -> np.ndarray:
    areas = np.linalg.norm(np.cross(room.U, room.V), axis=1)
    weights = np.where(np.array([n.endswith("ceiling") for n in room.names]), 0.0, areas)
    weights = np.where(np.array([n.endswith("floor") for n in room.names]), 0.3 * weights, weights)
    weights /= weights.sum()
    for _ in range(tries):
        xy = rng.uniform(WALL_CLEARANCE, room.size[:2] - WALL_CLEARANCE)
        if not is_free(room, xy)[0]:
            continue
        pos = np.array([xy[0], xy[1], rng.uniform(1.0, 1.8)])
        q = rng.choice(len(weights), p=weights)
        target = room.P0[q] + rng.uniform(0.1, 0.9) * room.U[q] + rng.uniform(0.1, 0.9) * room.V[q]
        fwd = target - pos
        dist = np.linalg.norm(fwd)
        if dist < 1.0 or abs(fwd[2]) / dist > np.sin(np.radians(50)):
            continue
        pose = look_at(pos, target, np.radians(rng.uniform(-8, 8)))
        if view_ok(room, pose, probe):
            return pose
    raise RuntimeError(f"no valid random pose found in {tries} tries (room {room.size.round(2)} m)")


def random_trajectory(room: Room, camera: Camera, n_train: int, n_test: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, 4, 4), (n_test, 4, 4) independent poses from one distribution over the room."""
    probe = probe_rays(camera)
    train = [_random_pose(room, rng, probe) for _ in range(n_train)]
    test = [_random_pose(room, rng, probe) for _ in range(n_test)]
    return np.array(train).reshape(-1, 4, 4), np.array(test).reshape(-1, 4, 4)


def make_trajectory(kind: str, room: Room, camera: Camera, n_train: int, n_test: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Train and test poses for trajectory ``kind`` ("loop" or "random"). In a building (``room.areas``)
    "loop" is a tour: one loop in each room, walking from room to room through the corridors."""
    if kind == "loop" and room.areas:
        return tour_trajectory(room, camera, n_train, n_test, rng)
    if kind == "loop":
        return loop_trajectory(room, camera, n_train, n_test, rng)
    if kind == "random":
        return random_trajectory(room, camera, n_train, n_test, rng)
    raise ValueError(f"trajectory must be one of {TRAJECTORIES}, got {kind!r}")
