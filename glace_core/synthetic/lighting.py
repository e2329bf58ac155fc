"""Baked lighting of the synthetic rooms: ambient light with ambient occlusion plus point lights
with hard shadows, on a grid over each quad, multiplied into the texture atlas.

``Lighting`` holds one set of lights. The mapping (train) lighting is ``default_lighting`` (the
room's ceiling lights, neutral-to-warm tints); ``changed_lighting`` draws another one for the test
split: lights elsewhere (ceiling lights moved, a low lamp beside a wall, so shading and shadows
fall in other directions), a brighter or dimmer level and a warmer or cooler colour temperature.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Tints of the mapping lights, cycled over the lights (today's three).
TINTS = np.array([[1.0, 0.95, 0.85], [0.9, 0.95, 1.0], [1.0, 1.0, 0.95]])
AMBIENT = 0.45  # ambient level of the mapping lighting
GAIN = 0.7  # direct light of one lamp at distance 0 (falls off as 1 / (1 + (d / 3 m)^2))
LIGHT_RANGE = 12.0  # metres; a light fades out over the last 1.5 m (a room's diagonal is at most 10.4 m)

#: Approximate RGB tints of light at a colour temperature (kelvin) as seen by a camera white-balanced
#: for about 5000 K, interpolated in mired (1e6 / K).
_KELVIN = np.array([2700.0, 3500.0, 4500.0, 5500.0, 6500.0, 8000.0])
_KELVIN_RGB = np.array([[1.00, 0.78, 0.55], [1.00, 0.86, 0.70], [1.00, 0.94, 0.86], [1.00, 1.00, 0.96],
                        [0.93, 0.97, 1.00], [0.84, 0.91, 1.00]])


@dataclass(frozen=True)
class Lighting:
    """Point lights ``positions`` (K, 3) with RGB ``tints`` (K, 3), an RGB ``ambient`` (3,) level and
    the direct ``gain`` of every light."""

    positions: np.ndarray
    tints: np.ndarray
    ambient: np.ndarray
    gain: float = GAIN

    def to_json(self) -> dict:
        return {"positions": self.positions.tolist(), "tints": self.tints.tolist(),
                "ambient": self.ambient.tolist(), "gain": self.gain}


def kelvin_rgb(kelvin: float) -> np.ndarray:
    """(3,) RGB tint (max 1) of light at ``kelvin`` (2700-8000, clamped)."""
    mired = 1e6 / np.clip(float(kelvin), _KELVIN[0], _KELVIN[-1])
    xs = 1e6 / _KELVIN[::-1]  # increasing
    return np.array([np.interp(mired, xs, _KELVIN_RGB[::-1, c]) for c in range(3)])


def default_lighting(lights: np.ndarray) -> Lighting:
    """The mapping lighting of a room with ceiling lights ``lights`` (K, 3)."""
    lights = np.asarray(lights, np.float64)
    return Lighting(lights, TINTS[np.arange(len(lights)) % len(TINTS)], np.full(3, AMBIENT), GAIN)


def _spaces(room) -> list[tuple[np.ndarray, np.ndarray, float, bool]]:
    """(lo (2,), hi (2,), height, is_room) of every room and corridor (the whole box for one room)."""
    if not room.areas:
        return [(np.zeros(2), np.asarray(room.size[:2], float), float(room.size[2]), True)]
    return [(np.asarray(a.lo, float), np.asarray(a.hi, float), a.height, a.open_axis < 0) for a in room.areas]


def changed_lighting(room, rng: np.random.Generator) -> Lighting:
    """Another lighting of ``room`` (same geometry): per room 1-2 ceiling lights at new places and
    a lamp 1.3-1.9 m high, 0.35-0.6 m from a wall (clear of furniture); per corridor one light
    moved along it; everything 0.5-0.7× or 1.3-1.5× as bright, at 2700-3200 K or 6500-8000 K."""
    positions = []
    for lo, hi, height, is_room in _spaces(room):
        span = hi - lo
        if not is_room:
            axis = int(np.argmax(span))
            p = (lo + hi) / 2
            p[axis] = lo[axis] + rng.uniform(0.25, 0.75) * span[axis]
            positions.append([p[0], p[1], height - 0.15])
            continue
        for _ in range(int(rng.integers(1, 3))):
            xy = lo + rng.uniform(0.2, 0.8, 2) * span
            positions.append([xy[0], xy[1], height - 0.25])
        for _ in range(100):  # the lamp: beside a wall, not inside a piece of furniture
            wall, inset, along = int(rng.integers(4)), rng.uniform(0.35, 0.6), rng.uniform(0.15, 0.85)
            axis = wall // 2
            xy = lo + along * span
            xy[axis] = lo[axis] + inset if wall % 2 == 0 else hi[axis] - inset
            z = rng.uniform(1.3, 1.9)
            if all(box.footprint_distance(xy[None])[0] > 0.15 or box.height < z - 0.15 for box in room.boxes):
                positions.append([xy[0], xy[1], z])
                break
    scale = rng.uniform(0.5, 0.7) if rng.random() < 0.5 else rng.uniform(1.3, 1.5)
    kelvin = rng.uniform(2700, 3200) if rng.random() < 0.5 else rng.uniform(6500, 8000)
    tint = kelvin_rgb(kelvin)
    positions = np.array(positions, np.float64)
    return Lighting(positions, np.tile(tint, (len(positions), 1)), AMBIENT * scale * tint, GAIN * scale)


def _hemisphere(n: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k cosine-weighted unit directions (k, 3) around the unit normal n."""
    a = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    t1 = np.cross(n, a)
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(n, t1)
    u1, u2 = rng.random(k), rng.random(k)
    rad, phi = np.sqrt(u1), 2 * np.pi * u2
    return (rad * np.cos(phi))[:, None] * t1 + (rad * np.sin(phi))[:, None] * t2 + np.sqrt(1 - u1)[:, None] * n


def _tiles(gh: int, gw: int, side: int = 12) -> list[np.ndarray]:
    """Flat indices into a (gh, gw) grid, tile by tile of ``side`` × ``side`` cells."""
    grid = np.arange(gh * gw).reshape(gh, gw)
    return [grid[i:i + side, j:j + side].ravel() for i in range(0, gh, side) for j in range(0, gw, side)]


def bake_light(room, q: int, rng: np.random.Generator, lightings: list[Lighting], cell: float = 0.08,
               ao_rays: int = 12) -> list[np.ndarray]:
    """Light factors (gh, gw, 3) float32 over quad ``q`` on a grid of ``cell`` metres, one per
    lighting: ambient with ambient occlusion (hemisphere rays hitting within 0.7 m, shared by all
    lightings) plus point lights with shadows."""
    P0, U, V, n = room.P0[q], room.U[q], room.V[q], room.normals[q]
    gw = max(2, int(np.ceil(np.linalg.norm(U) / cell)))
    gh = max(2, int(np.ceil(np.linalg.norm(V) / cell)))
    r, s = np.meshgrid((np.arange(gh) + 0.5) / gh, (np.arange(gw) + 0.5) / gw, indexing="ij")
    pts = P0 + s.reshape(-1, 1) * U + r.reshape(-1, 1) * V + 1e-4 * n  # (M, 3)
    m = len(pts)
    hemi = _hemisphere(n, ao_rays, rng)
    tiles = _tiles(gh, gw)
    hits = np.zeros((m, ao_rays), bool)
    for idx in tiles:  # tile by tile: tight ray bounds, few quads to test
        t, _, _, _ = room.intersect(torch.from_numpy(np.repeat(pts[idx], ao_rays, 0)),
                                    torch.from_numpy(np.tile(hemi, (len(idx), 1))), max_t=0.7)
        hits[idx] = (t.numpy() < 0.7).reshape(len(idx), ao_rays)
    occluded = hits.mean(1)
    unoccluded = 1.0 - 0.75 * occluded
    out = []
    for lighting in lightings:
        light = unoccluded[:, None] * lighting.ambient[None]
        to_l = lighting.positions[None] - pts[:, None]  # (M, K, 3)
        dist = np.linalg.norm(to_l, axis=-1)
        cosine = np.clip((to_l @ n) / dist, 0, 1)
        visible = np.zeros((m, len(lighting.positions)), bool)
        reach = (cosine > 0) & (dist < LIGHT_RANGE)  # lights behind the quad or out of range add nothing
        for k in np.flatnonzero(reach.any(0)):
            for idx in tiles:
                if reach[idx, k].any():
                    t, _, _, _ = room.intersect(torch.from_numpy(pts[idx]), torch.from_numpy(to_l[idx, k]), max_t=1.0)
                    visible[idx, k] = t.numpy() > 0.999  # t is in units of the light distance
        direct = (lighting.gain * cosine * visible / (1 + (dist / 3.0) ** 2))  # (M, K)
        far = dist > LIGHT_RANGE - 1.5  # fade out over the last 1.5 m (never inside one room)
        direct[far] *= np.clip((LIGHT_RANGE - dist[far]) / 1.5, 0, 1)
        light += direct @ lighting.tints
        out.append(light.reshape(gh, gw, 3).astype(np.float32))
    return out
