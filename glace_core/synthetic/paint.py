"""Sparse textures (``--texture sparse``): what most real buildings look like. Walls, floor and
ceiling are painted (one smooth colour with faint low-frequency variation, a gentle gradient and a
fine grain, so never perfectly uniform), each room has 2-4 framed photos on its walls (a corridor
0-1), and furniture is plain: one colour per piece (per model in a building, so repeated pieces
look the same).

Quad names say what a surface is (``surface_kind``): ``wall_*`` / ``lintel*``, ``floor``,
``ceiling``, ``box{b}_*``, prefixed by ``r{i}_`` (room i) or ``c{j}_`` (corridor j) in a building.
"""
from __future__ import annotations

import re

import numpy as np

from glace_core.synthetic.textures import load_photos, photo_patch

WALL_PAINTS = np.array([[236, 233, 224], [214, 214, 208], [226, 213, 188], [203, 216, 224], [207, 221, 203],
                        [241, 236, 226], [222, 205, 200]], np.float32)
FLOOR_PAINTS = np.array([[152, 128, 100], [138, 138, 135], [178, 166, 150], [110, 96, 82]], np.float32)
CEILING_PAINT = np.array([245, 244, 240], np.float32)
FURNITURE_PAINTS = np.array([[230, 230, 226], [52, 52, 56], [162, 121, 82], [122, 126, 132], [72, 92, 138],
                             [148, 62, 56], [82, 120, 92], [196, 180, 150]], np.float32)
FRAME_PAINTS = np.array([[30, 28, 26], [236, 234, 228], [122, 86, 56], [170, 150, 110]], np.float32)


def surface_kind(name: str) -> tuple[str, str, int | None]:
    """(kind, group, box index) of a quad name: kind "wall", "floor", "ceiling" or "box"; group ""
    (one room), "r{i}" or "c{j}"; the box index for furniture, else None."""
    match = re.fullmatch(r"(?:([rc]\d+)_)?(.+)", name)
    group, rest = match.group(1) or "", match.group(2)
    box = re.match(r"box(\d+)_", rest)
    if box:
        return "box", group, int(box.group(1))
    if rest in ("floor", "ceiling"):
        return rest, group, None
    return "wall", group, None


def paint(height: int, width: int, texels_per_m: float, colour: np.ndarray, rng: np.random.Generator,
          variation: float = 0.025, grain: float = 1.5) -> np.ndarray:
    """(height, width, 3) float32 of ``colour`` with low-frequency variation (± ``variation``, ~0.5 m
    blobs), a linear gradient (≤ 3 % end to end) and a fine luminance grain (σ ``grain`` levels)."""
    import cv2

    cells = max(0.5 * texels_per_m, 1.0)
    grid = rng.normal(0.0, variation, (int(np.ceil(height / cells)) + 2, int(np.ceil(width / cells)) + 2))
    low = cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    gx, gy = rng.uniform(-0.03, 0.03, 2)
    ys, xs = np.linspace(-0.5, 0.5, height, dtype=np.float32), np.linspace(-0.5, 0.5, width, dtype=np.float32)
    shade = 1.0 + low + np.float32(gy) * ys[:, None] + np.float32(gx) * xs[None, :]
    fine = rng.normal(0.0, grain, (height, width)).astype(np.float32)
    return np.clip(shade[:, :, None] * np.asarray(colour, np.float32) + fine[:, :, None], 0, 255)


def _apart(a, b, gap: float = 0.15) -> bool:
    """Whether rectangles a, b = (x0, y0, w, h, ...) are at least ``gap`` apart along x or along y."""
    return (a[0] + a[2] + gap <= b[0] or b[0] + b[2] + gap <= a[0]
            or a[1] + a[3] + gap <= b[1] or b[1] + b[3] + gap <= a[1])


class SparseAlbedo:
    """``albedo(q, h, w)`` of ``room``'s quads for ``bake_atlases``: paint, pictures, plain furniture.
    Colours and picture places are drawn up front (deterministic for ``rng``)."""

    def __init__(self, room, rng: np.random.Generator):
        self.room, self.rng = room, rng
        self.tpm = room.texels_per_m
        kinds = [surface_kind(n) for n in room.names]
        self.kinds = kinds
        groups = sorted({g for k, g, _ in kinds}, key=lambda g: (g[:1], int(g[1:]) if g[1:] else -1))
        main = WALL_PAINTS[rng.integers(len(WALL_PAINTS))]
        self.wall = {g: main if g.startswith("c") or rng.random() < 0.6 else WALL_PAINTS[rng.integers(len(WALL_PAINTS))]
                     for g in groups}
        self.floor = FLOOR_PAINTS[rng.integers(len(FLOOR_PAINTS))]
        self.furniture: dict = {}
        for kind, _, b in kinds:
            key = self._furniture_key(b) if kind == "box" else None
            if key is not None and key not in self.furniture:
                self.furniture[key] = FURNITURE_PAINTS[rng.integers(len(FURNITURE_PAINTS))]
        self.pictures: dict[int, list] = {}
        for g in groups:
            self._hang(g, int(rng.integers(0, 2)) if g.startswith("c") else int(rng.integers(2, 5)))

    def _furniture_key(self, b: int):
        model = self.room.boxes[b].model
        return ("model", model) if model is not None else ("box", b)

    def _hang(self, group: str, count: int) -> None:
        """Place ``count`` framed pictures (0.4-1 m wide, centre 1.2-1.7 m high) on the group's walls."""
        rng, room = self.rng, self.room
        walls = [q for q, (k, g, _) in enumerate(self.kinds) if k == "wall" and g == group
                 and np.linalg.norm(room.U[q]) >= 1.0 and np.linalg.norm(room.V[q]) >= 1.2]
        if not walls:
            return
        lengths = np.array([np.linalg.norm(room.U[q]) for q in walls])
        for _ in range(count):
            for _ in range(50):
                q = walls[int(rng.choice(len(walls), p=lengths / lengths.sum()))]
                length, top = float(np.linalg.norm(room.U[q])), float(room.P0[q][2])
                w = rng.uniform(0.4, min(1.0, length - 0.4))
                h = min(w * rng.uniform(0.6, 1.4), 1.2, top - 0.6)
                z = float(np.clip(rng.uniform(1.2, 1.7), 0.45 + h / 2, top - 0.15 - h / 2))
                s = rng.uniform(0.2 + w / 2, length - 0.2 - w / 2)
                rect = (s - w / 2, top - z - h / 2, w, h)  # metres along U, down from the top edge
                if all(_apart(rect, other) for other in self.pictures.get(q, [])):
                    frame = FRAME_PAINTS[rng.integers(len(FRAME_PAINTS))]
                    self.pictures.setdefault(q, []).append(rect + (frame, rng.uniform(0.02, 0.05)))
                    break

    def __call__(self, q: int, height: int, width: int) -> np.ndarray:
        kind, group, b = self.kinds[q]
        rng, tpm = self.rng, self.tpm
        if kind == "box":
            return paint(height, width, tpm, self.furniture[self._furniture_key(b)], rng, 0.015, 1.2)
        if kind == "floor":
            return paint(height, width, tpm, self.floor, rng, 0.04, 2.5)
        if kind == "ceiling":
            return paint(height, width, tpm, CEILING_PAINT, rng, 0.015, 1.0)
        out = paint(height, width, tpm, self.wall[group], rng)
        photos = load_photos()
        for x0, y0, w, h, frame, border in self.pictures.get(q, []):
            xs, ys = int(round(x0 * tpm)), int(round(y0 * tpm))
            pw, ph = max(4, int(round(w * tpm))), max(4, int(round(h * tpm)))
            picture = photo_patch(photos[int(rng.integers(len(photos)))], ph, pw, rng)
            b = max(1, int(round(border * tpm)))
            picture[:b], picture[-b:], picture[:, :b], picture[:, -b:] = frame, frame, frame, frame
            ye, xe = min(height, ys + ph), min(width, xs + pw)
            out[max(ys, 0):ye, max(xs, 0):xe] = picture[max(ys, 0) - ys:ye - ys, max(xs, 0) - xs:xe - xs]
        return out
