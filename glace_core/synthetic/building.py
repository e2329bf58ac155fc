"""Buildings (``--rooms N``): 2-6 box rooms in a row or two rows, joined by straight corridors into
a chain, 10-30 m across, with repeated furniture.

Rooms are 4.5-7 × 4.5-7 m and 2.6-3.2 m high; corridors 1.8-2.2 m wide, 2-4 m long and 2.4 m
high, so every doorway has a lintel above it. Rooms are visited in chain order (row 0 left to right,
then row 1 right to left); corridor j joins rooms j and j + 1. ``Room.areas`` lists the rooms in
that order, then the corridors. Furniture comes from a catalogue of 3-5 models (size and albedo
shared): every room holds models 0 and 1 where they fit, then random ones, kept 1.1 m off the
lanes from its doorways to its centre (straight in 1 m, then straight to the centre).
"""
from __future__ import annotations

import numpy as np

from glace_core.synthetic.furniture import Box, box_fits, box_surfaces, free_standing, place_box
from glace_core.synthetic.room import Area, Room

MAX_ROOMS = 6
CORRIDOR_HEIGHT = 2.4
LANE_CLEARANCE = 1.1


def chain_cells(n_rooms: int) -> list[tuple[int, int]]:
    """(row, column) of each room in visiting order: one row up to 3 rooms, else two (snake)."""
    rows = 1 if n_rooms <= 3 else 2
    cols = -(-n_rooms // rows)
    return [(0, c) for c in range(cols)] + [(1, cols - 1 - k) for k in range(n_rooms - cols)]


def wall_quad(a, b, z0: float, z1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A vertical quad from floor point a (2,) to b (2,), z0..z1: visible from the left of a → b."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.array([a[0], a[1], z1]), np.array([b[0] - a[0], b[1] - a[1], 0.0]), np.array([0.0, 0.0, z0 - z1])


def _room_walls(lo, hi, height, openings: dict, prefix: str):
    """Quads and names of a room's four walls (counter-clockwise, facing in), each split around its
    doorway ``openings[side] = (t0, t1)`` (world coordinates along the wall) with a lintel above."""
    (x0, y0), (x1, y1) = lo, hi
    corners = {"y0": ((x0, y0), (x1, y0)), "x1": ((x1, y0), (x1, y1)), "y1": ((x1, y1), (x0, y1)),
               "x0": ((x0, y1), (x0, y0))}
    quads, names = [], []
    for side, (a, b) in corners.items():
        if side not in openings:
            quads.append(wall_quad(a, b, 0.0, height))
            names.append(f"{prefix}wall_{side}")
            continue
        axis = 0 if side[0] == "y" else 1  # the coordinate that varies along the wall
        t0, t1 = sorted(openings[side], key=lambda t: abs(t - a[axis]))
        p0, p1 = list(a), list(a)
        p0[axis], p1[axis] = t0, t1
        quads += [wall_quad(a, p0, 0.0, height), wall_quad(p0, p1, CORRIDOR_HEIGHT, height),
                  wall_quad(p1, b, 0.0, height)]
        names += [f"{prefix}wall_{side}_a", f"{prefix}lintel_{side}", f"{prefix}wall_{side}_b"]
    floor = (np.array([x0, y0, 0.0]), np.array([x1 - x0, 0.0, 0.0]), np.array([0.0, y1 - y0, 0.0]))
    ceiling = (np.array([x0, y1, height]), np.array([x1 - x0, 0.0, 0.0]), np.array([0.0, y0 - y1, 0.0]))
    return quads + [floor, ceiling], names + [f"{prefix}floor", f"{prefix}ceiling"]


def _corridor(area: Area, prefix: str):
    (x0, y0), (x1, y1), h = area.lo, area.hi, area.height
    if area.open_axis == 0:
        walls = [wall_quad((x0, y0), (x1, y0), 0.0, h), wall_quad((x1, y1), (x0, y1), 0.0, h)]
    else:
        walls = [wall_quad((x0, y1), (x0, y0), 0.0, h), wall_quad((x1, y0), (x1, y1), 0.0, h)]
    floor = (np.array([x0, y0, 0.0]), np.array([x1 - x0, 0.0, 0.0]), np.array([0.0, y1 - y0, 0.0]))
    ceiling = (np.array([x0, y1, h]), np.array([x1 - x0, 0.0, 0.0]), np.array([0.0, y0 - y1, 0.0]))
    return walls + [floor, ceiling], [f"{prefix}wall_a", f"{prefix}wall_b", f"{prefix}floor", f"{prefix}ceiling"]


def _layout(n_rooms: int, rng: np.random.Generator) -> tuple[list[Area], list[Area]]:
    """Room and corridor areas of a chain of ``n_rooms`` rooms."""
    cells = chain_cells(n_rooms)
    dims = [(rng.uniform(4.5, 7.0), rng.uniform(4.5, 7.0), rng.uniform(2.6, 3.2)) for _ in cells]
    n_rows, n_cols = max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1
    col_w = [max(d[0] for d, (_, c) in zip(dims, cells) if c == k) for k in range(n_cols)]
    row_h = [max(d[1] for d, (r, _) in zip(dims, cells) if r == k) for k in range(n_rows)]
    col_x = np.concatenate(([0.0], np.cumsum([w + rng.uniform(2.0, 4.0) for w in col_w])))
    row_y = np.concatenate(([0.0], np.cumsum([h + rng.uniform(2.0, 4.0) for h in row_h])))
    rooms = []
    for (lx, ly, lz), (r, c) in zip(dims, cells):
        x0 = col_x[c] + np.clip((col_w[c] - lx) / 2 + rng.uniform(-0.3, 0.3), 0, col_w[c] - lx)
        y0 = row_y[r] + np.clip((row_h[r] - ly) / 2 + rng.uniform(-0.3, 0.3), 0, row_h[r] - ly)
        rooms.append(Area((float(x0), float(y0)), (float(x0 + lx), float(y0 + ly)), float(lz)))
    corridors = []
    for a, b in zip(rooms[:-1], rooms[1:]):
        axis = 0 if abs(a.lo[1] - b.lo[1]) < abs(a.lo[0] - b.lo[0]) else 1  # same row: along x
        first, second = (a, b) if a.lo[axis] < b.lo[axis] else (b, a)
        other = 1 - axis
        width = rng.uniform(1.8, 2.2)
        lo_o = max(first.lo[other], second.lo[other]) + width / 2 + 0.6
        hi_o = min(first.hi[other], second.hi[other]) - width / 2 - 0.6
        centre = rng.uniform(lo_o, hi_o)
        lo, hi = [0.0, 0.0], [0.0, 0.0]
        lo[axis], hi[axis] = first.hi[axis], second.lo[axis]
        lo[other], hi[other] = centre - width / 2, centre + width / 2
        corridors.append(Area((float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1])), CORRIDOR_HEIGHT, axis))
    return rooms, corridors


def doors(room_area: Area, corridors: list[Area]) -> list[tuple[str, np.ndarray, tuple[float, float]]]:
    """The doorways of a room: (wall side "x0"/"x1"/"y0"/"y1", floor point (2,) at the middle of
    the doorway, its extent (t0, t1) along the wall)."""
    out = []
    for c in corridors:
        axis, other = c.open_axis, 1 - c.open_axis
        mid = (c.lo[other] + c.hi[other]) / 2
        if not room_area.lo[other] < mid < room_area.hi[other]:
            continue
        for end, side in ((room_area.lo[axis], "0"), (room_area.hi[axis], "1")):
            if end in (c.lo[axis], c.hi[axis]):
                p = np.zeros(2)
                p[axis], p[other] = end, mid
                out.append(("xy"[axis] + side, p, (c.lo[other], c.hi[other])))
    return out


def approach_point(side: str, door: np.ndarray, depth: float = 1.0) -> np.ndarray:
    """The floor point (2,) ``depth`` metres into the room straight in front of a doorway on ``side``."""
    into = {"x0": (1.0, 0.0), "x1": (-1.0, 0.0), "y0": (0.0, 1.0), "y1": (0.0, -1.0)}[side]
    return np.asarray(door, float) + depth * np.asarray(into)


def _lane(side: str, door: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Floor points (40, 2) of the way in from a doorway: 1 m straight in, then on to ``centre``."""
    inside = approach_point(side, door)
    t = np.linspace(0.0, 1.0, 20)[:, None]
    return np.concatenate((door + t * (inside - door), inside + t * (centre - inside)))


def _furnish(rooms: list[Area], corridors: list[Area], rng: np.random.Generator) -> list[Box]:
    n_models = int(rng.integers(3, 6))
    models = [((float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.15, 0.35))), float(rng.uniform(0.4, 2.0)))
              for _ in range(n_models)]
    boxes: list[Box] = []
    for area in rooms:
        lo = np.asarray(area.lo)
        size = np.asarray(area.hi) - lo
        lanes = np.concatenate([_lane(side, d, lo + size / 2) for side, d, _ in doors(area, corridors)]) - lo
        wanted = [0, 1] + [int(m) for m in rng.integers(n_models, size=int(rng.integers(1, 4)))]
        local: list[Box] = []
        for m in wanted:
            half, height = models[m]
            for _ in range(40):
                box = place_box(size, half, height, rng, free_ok=not free_standing(local, size), model=m)
                if box_fits(box, size, local) and box.footprint_distance(lanes).min() >= LANE_CLEARANCE:
                    local.append(box)
                    break
        boxes += [Box((b.centre[0] + lo[0], b.centre[1] + lo[1]), b.half, b.height, b.yaw, b.model) for b in local]
    return boxes


def building_geometry(n_rooms: int, rng: np.random.Generator, texels_per_m: float) -> Room:
    """The geometry of a random building of ``n_rooms`` (2-6) rooms (no textures yet)."""
    if not 2 <= n_rooms <= MAX_ROOMS:
        raise ValueError(f"a building has 2 to {MAX_ROOMS} rooms, got {n_rooms}")
    rooms, corridors = _layout(n_rooms, rng)
    boxes = _furnish(rooms, corridors, rng)
    quads, names, lights = [], [], []
    for i, area in enumerate(rooms):
        openings = {side: extent for side, _, extent in doors(area, corridors)}
        q, n = _room_walls(area.lo, area.hi, area.height, openings, f"r{i}_")
        quads += q
        names += n
        in_room = [b for b, box in enumerate(boxes) if area.contains(np.array([box.centre]), 0.0)[0]]
        q, n = box_surfaces([boxes[b] for b in in_room], f"r{i}_", in_room[0] if in_room else 0)
        quads += q
        names += n
        lo, span = np.asarray(area.lo), np.asarray(area.hi) - np.asarray(area.lo)
        lights += [[*(lo + rng.uniform(0.2, 0.8, 2) * span), area.height - 0.25]
                   for _ in range(int(rng.integers(2, 4)))]
    for j, area in enumerate(corridors):
        q, n = _corridor(area, f"c{j}_")
        quads += q
        names += n
        lights.append([(area.lo[0] + area.hi[0]) / 2, (area.lo[1] + area.hi[1]) / 2, area.height - 0.15])
    P0, U, V = (np.array([q[k] for q in quads]) for k in range(3))
    size = np.array([max(a.hi[0] for a in rooms), max(a.hi[1] for a in rooms), max(a.height for a in rooms)])
    return Room(size, boxes, np.array(lights), P0, U, V, names, texels_per_m=float(texels_per_m),
                areas=rooms + corridors)
