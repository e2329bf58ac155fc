"""The "loop" trajectory of a building: a tour that makes one loop in each room (the single-room
loop: around the room centre, looking outwards) and walks from room to room through the
corridors, looking ahead, turning smoothly between the two.

Room 0's loop ends at its exit; a middle room's loop starts at its entrance, goes round once and
on to its exit; the last room's loop goes round once. A walk goes from the loop straight to 1 m in
front of the doorway, through the corridor, and from 1 m inside the next room to its loop.
Training frames are spread evenly along the tour's length, test frames half-way between them
(with the loop's small test offsets), so both cover every room.
"""
from __future__ import annotations

import numpy as np

from glace_core.synthetic.building import approach_point, doors
from glace_core.synthetic.camera import Camera
from glace_core.synthetic.room import Room
from glace_core.synthetic.views import BOX_CLEARANCE, TURNS, WALL_CLEARANCE, look_at, loop_pose, probe_rays, view_ok

_BLEND_M = 1.0  # metres over which a walk turns from the loop's view to the walking direction


def _wrap(angle):
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class _Loop:
    """A room loop from theta0 to theta1 (``loop_pose`` parameters)."""

    def __init__(self, room: Room, params, theta0: float, theta1: float):
        self.room, self.params, self.theta = room, params, (theta0, theta1)
        pts = np.array([self.position(u) for u in np.linspace(0, 1, 101)])
        self.length = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())

    def _theta(self, u):
        return self.theta[0] + u * (self.theta[1] - self.theta[0])

    def position(self, u: float) -> np.ndarray:
        return loop_pose(self.room, self.params, self._theta(u))[:3, 3]

    def pose(self, u, d_pos, d_ang, probe):
        return loop_pose(self.room, self.params, self._theta(u), d_pos, d_ang, probe)

    def free_points(self) -> np.ndarray:
        return np.array([self.position(u)[:2] for u in np.linspace(0, 1, 97)])


class _Walk:
    """A walk along floor points (P, 2) from one loop pose to another."""

    def __init__(self, room: Room, points: np.ndarray, start: np.ndarray, end: np.ndarray):
        self.room, self.points = room, points
        self.cum = np.concatenate(([0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))))
        self.length = float(self.cum[-1])
        self.z = (start[2, 3], end[2, 3])
        self.ends = [(np.arctan2(p[1, 2], p[0, 2]), np.arcsin(np.clip(p[2, 2], -1, 1))) for p in (start, end)]

    def _at(self, s):
        s = np.clip(s, 0.0, self.length)
        return np.array([np.interp(s, self.cum, self.points[:, k]) for k in range(2)])

    def pose(self, u, d_pos, d_ang, probe):
        s = u * self.length
        ahead = self._at(s + 0.4) - self._at(s - 0.4)
        heading = np.arctan2(ahead[1], ahead[0])
        w0, w1 = 1.0 - _smoothstep(s / _BLEND_M), 1.0 - _smoothstep((self.length - s) / _BLEND_M)
        yaw = heading + w0 * _wrap(self.ends[0][0] - heading) + w1 * _wrap(self.ends[1][0] - heading) + d_ang[0]
        pitch = -0.05 + w0 * (self.ends[0][1] + 0.05) + w1 * (self.ends[1][1] + 0.05) + d_ang[1]
        pos = np.array([*self._at(s), self.z[0] + u * (self.z[1] - self.z[0])]) + np.asarray(d_pos)
        for turn in (TURNS if probe is not None else (0.0,)):
            fwd = np.array([np.cos(yaw + turn) * np.cos(pitch), np.sin(yaw + turn) * np.cos(pitch), np.sin(pitch)])
            pose = look_at(pos, pos + fwd, d_ang[2])
            if probe is None or view_ok(self.room, pose, probe):
                return pose
        return None

    def free_points(self) -> np.ndarray:
        return np.array([self._at(s) for s in np.arange(0.0, self.length, 0.1)])


def _segments(room: Room, rng: np.random.Generator, shrink: float) -> list | None:
    rooms = [a for a in room.areas if a.open_axis < 0]
    corridors = [a for a in room.areas if a.open_axis >= 0]
    loops = []
    for i, area in enumerate(rooms):
        lo, span = np.asarray(area.lo), np.asarray(area.hi) - np.asarray(area.lo)
        params = (lo[0] + span[0] * rng.uniform(0.35, 0.65), lo[1] + span[1] * rng.uniform(0.35, 0.65),
                  shrink * rng.uniform(0.15, 0.3) * span[0], shrink * rng.uniform(0.15, 0.3) * span[1],
                  rng.uniform(0.0, 0.2), rng.uniform(0, 2 * np.pi, 5))
        def angle(door):
            return np.arctan2((door[1] - params[1]) / params[3], (door[0] - params[0]) / params[2])

        entry = doors(area, [corridors[i - 1]])[0][:2] if i > 0 else None
        exit_ = doors(area, [corridors[i]])[0][:2] if i < len(corridors) else None
        t_out = angle(exit_[1]) if exit_ else None
        t_in = angle(entry[1]) if entry else t_out
        sweep = 2 * np.pi + (((t_out - t_in) % (2 * np.pi)) if entry and exit_ else 0.0)
        loops.append((_Loop(room, params, t_in, t_in + sweep), entry, exit_))
    segments = [loops[0][0]]
    for (loop_a, _, exit_a), (loop_b, entry_b, _) in zip(loops[:-1], loops[1:]):
        start, end = loop_a.pose(1.0, (0, 0, 0), (0, 0, 0), None), loop_b.pose(0.0, (0, 0, 0), (0, 0, 0), None)
        points = np.array([start[:2, 3], approach_point(*exit_a), exit_a[1], entry_b[1], approach_point(*entry_b),
                           end[:2, 3]])
        segments += [_Walk(room, points, start, end), loop_b]
    if not all(room.free(seg.free_points(), WALL_CLEARANCE, BOX_CLEARANCE).all() for seg in segments):
        return None
    return segments


def tour_trajectory(room: Room, camera: Camera, n_train: int, n_test: int, rng: np.random.Generator,
                    tries: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, 4, 4), (n_test, 4, 4) camera-to-world poses along a tour of every room of a building."""
    if not room.areas:
        raise ValueError("tour_trajectory needs a building (room.areas)")
    probe = probe_rays(camera)
    for attempt in range(tries):
        segments = _segments(room, rng, 1.0 - 0.6 * attempt / tries)
        if segments is None:
            continue
        starts = np.concatenate(([0.0], np.cumsum([seg.length for seg in segments])))

        def pose_at(s, d_pos=(0.0, 0.0, 0.0), d_ang=(0.0, 0.0, 0.0)):
            k = int(np.clip(np.searchsorted(starts, s, side="right") - 1, 0, len(segments) - 1))
            return segments[k].pose((s - starts[k]) / segments[k].length, d_pos, d_ang, probe)

        total = starts[-1]
        between = np.floor((np.arange(n_test) + 0.5) * n_train / max(n_test, 1)) + 0.5
        train = [pose_at(total * k / n_train) for k in range(n_train)]
        test = [pose_at(total * b / n_train, rng.uniform(-0.05, 0.05, 3), np.radians(rng.uniform(-3, 3, 3)))
                for b in between]
        poses = train + test
        if all(p is not None for p in poses) and room.free(np.array([p[:2, 3] for p in poses]), WALL_CLEARANCE,
                                                           BOX_CLEARANCE).all():
            return np.array(train).reshape(-1, 4, 4), np.array(test).reshape(-1, 4, 4)
    raise RuntimeError(f"no collision-free tour found in {tries} tries ({len(room.areas)} areas)")
