"""Procedural rooms: geometry (a box room with furniture boxes), exact ray casting and the texture
atlas with baked lighting.

World frame: z up, the floor at z = 0, the room spans [0, Lx] × [0, Ly] × [0, Lz] (metres).
Every surface is a rectangle (``quad``): corner ``P0`` and full edge vectors ``U``, ``V``; points are
``P0 + s U + r V`` for s, r in [0, 1]; the visible side is ``U × V``. Each quad owns a region of
one texture atlas (texel (x, y) of the region ↔ s = (x + 0.5) / w, r = (y + 0.5) / h). The GL
renderer and the PyTorch ray-caster both draw these quads, so they produce the same geometry.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from glace_core.synthetic.textures import collage

_logger = logging.getLogger(__name__)

ATLAS_WIDTH = 4096
ATLAS_PAD = 8  # texels of replicated border around each region (clean mip levels up to 3)
MIP_LEVELS = 6  # levels 1..6 below the base; atlas sides are multiples of 2**MIP_LEVELS


@dataclass
class Box:
    """A furniture box standing on the floor: centre (x, y), half sizes (hx, hy), height, yaw (rad)."""

    centre: tuple[float, float]
    half: tuple[float, float]
    height: float
    yaw: float

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([c, s, 0.0]), np.array([-s, c, 0.0])

    def footprint_distance(self, xy: np.ndarray) -> np.ndarray:
        """Distance (M,) of floor points xy (M, 2) to the box footprint (0 inside)."""
        ex, ey = self.axes()
        rel = np.asarray(xy, np.float64) - np.asarray(self.centre)
        local = np.stack((rel @ ex[:2], rel @ ey[:2]), -1)
        outside = np.maximum(np.abs(local) - np.asarray(self.half), 0.0)
        return np.linalg.norm(outside, axis=-1)


@dataclass
class Room:
    """Room geometry, lights and textures. ``P0``, ``U``, ``V``: (Q, 3) float64 quads; ``regions``:
    (Q, 4) int atlas rectangles (x0, y0, w, h) in texels; ``pyramid``: uint8 atlas levels
    [(AH, AW, 3), (AH/2, AW/2, 3), ...]; ``names``: a label per quad."""

    size: np.ndarray  # (3,) Lx, Ly, Lz
    boxes: list[Box]
    lights: np.ndarray  # (K, 3) positions
    P0: np.ndarray
    U: np.ndarray
    V: np.ndarray
    names: list[str]
    regions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    pyramid: list[np.ndarray] = field(default_factory=list)
    texels_per_m: float = 0.0

    @property
    def normals(self) -> np.ndarray:
        """(Q, 3) unit normals, pointing to the visible side."""
        n = np.cross(self.U, self.V)
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    @property
    def atlas(self) -> np.ndarray:
        return self.pyramid[0]

    def quad_uv(self) -> np.ndarray:
        """(Q, 4, 2) atlas coordinates in [0, 1] of the quad corners P0, P0+U, P0+U+V, P0+V."""
        ah, aw = self.atlas.shape[:2]
        x0, y0, w, h = [self.regions[:, i].astype(np.float64) for i in range(4)]
        xs = np.stack((x0, x0 + w, x0 + w, x0), 1) / aw
        ys = np.stack((y0, y0, y0 + h, y0 + h), 1) / ah
        return np.stack((xs, ys), -1)

    def to_json(self) -> dict:
        return {"size_m": self.size.tolist(),
                "boxes": [{"centre": list(b.centre), "half": list(b.half), "height": b.height, "yaw": b.yaw}
                          for b in self.boxes],
                "lights": self.lights.tolist(), "texels_per_m": self.texels_per_m,
                "quads": [{"name": n, "P0": p.tolist(), "U": u.tolist(), "V": v.tolist()}
                          for n, p, u, v in zip(self.names, self.P0, self.U, self.V)]}

    # ------------------------------------------------------------------ ray casting

    def intersect(self, origins: torch.Tensor, dirs: torch.Tensor, t_min: float = 1e-6,
                  chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest hit of rays with the room's quads (float64, exact up to rounding).

        origins: (N, 3) or (3,); dirs: (N, 3), not necessarily unit. Returns t (N,) (hit = o + t d;
        inf where nothing is hit), quad index (N,) int64 (-1 where no hit), s (N,), r (N,) in [0, 1]."""
        dirs = torch.as_tensor(dirs, dtype=torch.float64)
        if dirs.ndim != 2 or dirs.shape[1] != 3:
            raise ValueError(f"dirs must be (N, 3), got {tuple(dirs.shape)}")
        origins = torch.as_tensor(origins, dtype=torch.float64).expand(dirs.shape[0], 3)
        P0, U, V = (torch.from_numpy(a) for a in (self.P0, self.U, self.V))
        n = torch.from_numpy(self.normals)
        uu, vv = (U * U).sum(1), (V * V).sum(1)
        outs = []
        for i in range(0, dirs.shape[0], chunk):
            o, d = origins[i:i + chunk], dirs[i:i + chunk]
            denom = d @ n.T  # (n, Q)
            num = (P0 * n).sum(1)[None] - o @ n.T
            safe = torch.where(denom.abs() > 1e-12, denom, torch.ones_like(denom))
            t = torch.where(denom.abs() > 1e-12, num / safe, torch.full_like(denom, float("inf")))
            s = ((o @ U.T) - (P0 * U).sum(1)[None] + t * (d @ U.T)) / uu
            r = ((o @ V.T) - (P0 * V).sum(1)[None] + t * (d @ V.T)) / vv
            ok = (t > t_min) & (s >= 0) & (s <= 1) & (r >= 0) & (r <= 1)
            t = torch.where(ok, t, torch.full_like(t, float("inf")))
            tbest, idx = t.min(1)
            hit = torch.isfinite(tbest)
            sb = s.gather(1, idx[:, None])[:, 0]
            rb = r.gather(1, idx[:, None])[:, 0]
            outs.append((tbest, torch.where(hit, idx, torch.full_like(idx, -1)), sb, rb))
        return tuple(torch.cat([o[k] for o in outs]) for k in range(4))

    def distance_to_surfaces(self, points: np.ndarray) -> np.ndarray:
        """Distance (M,) of world points (M, 3) to the nearest quad (exact point-rectangle distance)."""
        p = np.asarray(points, np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"points must be (M, 3), got {p.shape}")
        best = np.full(len(p), np.inf)
        for P0, U, V in zip(self.P0, self.U, self.V):
            rel = p - P0
            s = np.clip(rel @ U / (U @ U), 0, 1)
            r = np.clip(rel @ V / (V @ V), 0, 1)
            closest = P0 + s[:, None] * U + r[:, None] * V
            best = np.minimum(best, np.linalg.norm(p - closest, axis=1))
        return best


def _rect(centre, u_vec, v_vec):
    u_vec, v_vec = np.asarray(u_vec, float), np.asarray(v_vec, float)
    return np.asarray(centre, float) - (u_vec + v_vec) / 2, u_vec, v_vec


def _quads(size: np.ndarray, boxes: list[Box]) -> tuple[list, list[str]]:
    lx, ly, lz = size
    down = np.array([0.0, 0.0, -lz])
    quads = [_rect((lx / 2, 0, lz / 2), (lx, 0, 0), down), _rect((lx / 2, ly, lz / 2), (-lx, 0, 0), down),
             _rect((0, ly / 2, lz / 2), (0, -ly, 0), down), _rect((lx, ly / 2, lz / 2), (0, ly, 0), down),
             _rect((lx / 2, ly / 2, 0), (lx, 0, 0), (0, ly, 0)), _rect((lx / 2, ly / 2, lz), (lx, 0, 0), (0, -ly, 0))]
    names = ["wall_y0", "wall_y1", "wall_x0", "wall_x1", "floor", "ceiling"]
    for b, box in enumerate(boxes):
        ex, ey = box.axes()
        c = np.array([box.centre[0], box.centre[1], box.height / 2])
        for k, (nrm, half_n, half_u) in enumerate(((ex, box.half[0], box.half[1]), (-ex, box.half[0], box.half[1]),
                                                    (ey, box.half[1], box.half[0]), (-ey, box.half[1], box.half[0]))):
            u_dir = np.array([nrm[1], -nrm[0], 0.0])  # u × (-z) = normal: images upright, not mirrored
            quads.append(_rect(c + nrm * half_n, u_dir * 2 * half_u, (0, 0, -box.height)))
            names.append(f"box{b}_side{k}")
        quads.append(_rect(c + np.array([0, 0, box.height / 2]), ex * 2 * box.half[0], ey * 2 * box.half[1]))
        names.append(f"box{b}_top")
    return quads, names


def _sample_boxes(size: np.ndarray, rng: np.random.Generator) -> list[Box]:
    """3-6 non-overlapping boxes: against a wall, at most one free-standing; clear of each other by 0.6 m."""
    boxes: list[Box] = []
    target = int(rng.integers(3, 7))
    for _ in range(200):
        if len(boxes) == target:
            break
        half = (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.15, 0.35)))
        height = float(rng.uniform(0.4, min(2.0, size[2] - 0.4)))
        free_standing = sum(abs(b.centre[0] - size[0] / 2) < size[0] / 2 - 1.0 and
                            abs(b.centre[1] - size[1] / 2) < size[1] / 2 - 1.0 for b in boxes)
        if rng.random() < 0.8 or free_standing:  # against a wall, its long side along it (one box at most stands free)
            wall = int(rng.integers(4))
            gap = float(rng.uniform(0.03, 0.2))
            along = float(rng.uniform(0.15, 0.85))
            if wall < 2:
                x = along * size[0]
                y = gap + half[1] if wall == 0 else size[1] - gap - half[1]
                yaw = 0.0
            else:
                y = along * size[1]
                x = gap + half[1] if wall == 2 else size[0] - gap - half[1]
                yaw = np.pi / 2
            yaw += float(rng.uniform(-0.08, 0.08))
        else:
            x, y = float(rng.uniform(1.2, size[0] - 1.2)), float(rng.uniform(1.2, size[1] - 1.2))
            yaw = float(rng.uniform(0, np.pi))
        box = Box((float(x), float(y)), half, height, float(yaw))
        corners = _corners(box)
        if np.any(corners < 0.02) or np.any(corners > size[:2] - 0.02):
            continue
        if any(np.any(other.footprint_distance(corners) < 0.6) or np.any(box.footprint_distance(_corners(other)) < 0.6)
               for other in boxes):
            continue
        boxes.append(box)
    return boxes


def _corners(box: Box) -> np.ndarray:
    ex, ey = box.axes()
    c = np.asarray(box.centre)
    return np.array([c + sx * box.half[0] * ex[:2] + sy * box.half[1] * ey[:2] for sx in (-1, 1) for sy in (-1, 1)])


def _pack(sizes: list[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """Shelf packing of (h, w) regions (plus padding) into ATLAS_WIDTH columns: (Q, 4) x0, y0, w, h
    and the atlas height (a multiple of 2**MIP_LEVELS)."""
    align = 2 ** 3
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])
    regions = np.zeros((len(sizes), 4), np.int64)
    x = y = shelf = 0
    for i in order:
        h, w = sizes[i]
        bw = -(-(w + 2 * ATLAS_PAD) // align) * align
        bh = -(-(h + 2 * ATLAS_PAD) // align) * align
        if bw > ATLAS_WIDTH:
            raise ValueError(f"surface of {w} texels is wider than the atlas ({ATLAS_WIDTH})")
        if x + bw > ATLAS_WIDTH:
            x, y, shelf = 0, y + shelf, 0
        regions[i] = (x + ATLAS_PAD, y + ATLAS_PAD, w, h)
        x += bw
        shelf = max(shelf, bh)
    m = 2 ** MIP_LEVELS
    return regions, -(-(y + shelf) // m) * m


def _hemisphere(n: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k cosine-weighted unit directions (k, 3) around the unit normal n."""
    a = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    t1 = np.cross(n, a)
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(n, t1)
    u1, u2 = rng.random(k), rng.random(k)
    rad, phi = np.sqrt(u1), 2 * np.pi * u2
    return (rad * np.cos(phi))[:, None] * t1 + (rad * np.sin(phi))[:, None] * t2 + np.sqrt(1 - u1)[:, None] * n


def _bake_lighting(room: Room, q: int, rng: np.random.Generator, cell: float = 0.08,
                   ao_rays: int = 12) -> np.ndarray:
    """Light factor (gh, gw, 3) float32 over quad ``q`` on a grid of ``cell`` metres: ambient with
    ambient occlusion (hemisphere rays hitting within 0.7 m) plus point lights with shadows."""
    P0, U, V, n = room.P0[q], room.U[q], room.V[q], room.normals[q]
    gw = max(2, int(np.ceil(np.linalg.norm(U) / cell)))
    gh = max(2, int(np.ceil(np.linalg.norm(V) / cell)))
    r, s = np.meshgrid((np.arange(gh) + 0.5) / gh, (np.arange(gw) + 0.5) / gw, indexing="ij")
    pts = P0 + s.reshape(-1, 1) * U + r.reshape(-1, 1) * V + 1e-4 * n  # (M, 3)
    m = len(pts)
    hemi = _hemisphere(n, ao_rays, rng)
    o = np.repeat(pts, ao_rays, 0)
    d = np.tile(hemi, (m, 1))
    t, _, _, _ = room.intersect(torch.from_numpy(o), torch.from_numpy(d))
    occluded = (t.numpy() < 0.7).reshape(m, ao_rays).mean(1)
    light = np.repeat((0.45 * (1.0 - 0.75 * occluded))[:, None], 3, 1)
    to_l = room.lights[None] - pts[:, None]  # (M, K, 3)
    dist = np.linalg.norm(to_l, axis=-1)
    t, _, _, _ = room.intersect(torch.from_numpy(np.repeat(pts, len(room.lights), 0)),
                                torch.from_numpy(to_l.reshape(-1, 3)))
    visible = (t.numpy() > 0.999).reshape(m, -1)  # t is in units of the light distance
    cosine = np.clip((to_l @ n) / dist, 0, 1)
    tints = np.array([[1.0, 0.95, 0.85], [0.9, 0.95, 1.0], [1.0, 1.0, 0.95]])[:len(room.lights)]
    direct = (0.7 * cosine * visible / (1 + (dist / 3.0) ** 2))  # (M, K)
    light += direct @ tints
    return light.reshape(gh, gw, 3).astype(np.float32)


def build_room(seed: int | np.random.SeedSequence, texels_per_m: float = 200.0) -> Room:
    """A random room for ``seed``: size, 3-6 furniture boxes, 2-3 ceiling lights, and the texture
    atlas (photo collages × baked lighting) with its mip pyramid. Deterministic for a seed."""
    import cv2

    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    geo_ss, tex_ss, light_ss = ss.spawn(3)
    rng = np.random.default_rng(geo_ss)
    size = np.array([rng.uniform(4.0, 7.0), rng.uniform(4.0, 7.0), rng.uniform(2.5, 3.2)])
    boxes = _sample_boxes(size, rng)
    n_lights = int(rng.integers(2, 4))
    lights = np.stack([np.array([rng.uniform(0.2, 0.8) * size[0], rng.uniform(0.2, 0.8) * size[1], size[2] - 0.25])
                       for _ in range(n_lights)])
    quads, names = _quads(size, boxes)
    P0, U, V = (np.array([q[k] for q in quads]) for k in range(3))
    room = Room(size, boxes, lights, P0, U, V, names, texels_per_m=float(texels_per_m))

    sizes = [(max(1, int(np.ceil(np.linalg.norm(v) * texels_per_m))), max(1, int(np.ceil(np.linalg.norm(u) * texels_per_m))))
             for u, v in zip(U, V)]
    regions, atlas_h = _pack(sizes)
    atlas = np.zeros((atlas_h, ATLAS_WIDTH, 3), np.uint8)
    tex_rng = np.random.default_rng(tex_ss)
    light_rng = np.random.default_rng(light_ss)
    room.regions = regions
    for q, (x0, y0, w, h) in enumerate(regions):
        colour = collage(int(h), int(w), texels_per_m, tex_rng)
        light = cv2.resize(_bake_lighting(room, q, light_rng), (int(w), int(h)), interpolation=cv2.INTER_LINEAR)
        tex = np.clip(colour * light + 0.5, 0, 255).astype(np.uint8)
        padded = cv2.copyMakeBorder(tex, ATLAS_PAD, ATLAS_PAD, ATLAS_PAD, ATLAS_PAD, cv2.BORDER_REPLICATE)
        atlas[y0 - ATLAS_PAD:y0 + h + ATLAS_PAD, x0 - ATLAS_PAD:x0 + w + ATLAS_PAD] = padded
    room.pyramid = mip_pyramid(atlas)
    _logger.debug("room %s m, %d boxes, atlas %s", size.round(2), len(boxes), atlas.shape)
    return room


def mip_pyramid(atlas: np.ndarray, levels: int = MIP_LEVELS) -> list[np.ndarray]:
    """[level 0 .. levels] of a uint8 (H, W, 3) image by rounded 2×2 box filtering (H, W divisible
    by 2**levels)."""
    out = [atlas]
    for _ in range(levels):
        a = out[-1].astype(np.uint16)
        s = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
        out.append(((s + 2) // 4).astype(np.uint8))
    return out
