"""Helpers shared by the synthetic-scene tests: GL availability, the room back from scene.json and
back-projection of written depth."""
from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest

from glace_core.dataset import SceneSplit
from glace_core.synthetic import Room


@functools.lru_cache(maxsize=1)
def _gl_status() -> tuple[bool, str]:
    from glace_core.synthetic.render_process import gl_available

    return gl_available()  # checked once per test session: it builds a room and starts a renderer


def gl_or_skip():
    ok, reason = _gl_status()
    if not ok:
        if os.environ.get("GLACE_REQUIRE_GL", "") not in ("", "0"):  # make test: setup installed EGL
            pytest.fail(f"GLACE_REQUIRE_GL is set but no GL context can be made: {reason}")
        pytest.skip(reason)


def room_from_json(root) -> Room:
    meta = json.loads((root / "scene.json").read_text())["room"]
    arrays = [np.array([q[k] for q in meta["quads"]]) for k in ("P0", "U", "V")]
    return Room(np.array(meta["size_m"]), [], np.array(meta["lights"]), *arrays, [q["name"] for q in meta["quads"]])


def backproject(split: SceneSplit, i: int, half_pixel: float = 0.5, K: np.ndarray | None = None) -> np.ndarray:
    """World points (M, 3) of frame i's valid depth pixels, pixel centres at (i + half_pixel), with
    the split's K (or ``K``)."""
    depth = split.load_depth_m(i)
    K, pose = split.intrinsics(i) if K is None else K, split.poses[i]
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    x = (u + half_pixel - K[0, 2]) / K[0, 0] * z
    y = (v + half_pixel - K[1, 2]) / K[1, 1] * z
    return np.stack((x, y, z), 1) @ pose[:3, :3].T + pose[:3, 3]


def worst_surface_distance(root, split_name: str) -> float:
    """Largest distance (m) of any back-projected depth pixel of a split to the room's quads."""
    room, split = room_from_json(root), SceneSplit(root, split_name)
    return max(room.distance_to_surfaces(backproject(split, i)).max() for i in range(len(split)))
