"""Procedural rooms: geometry (a box room with furniture boxes) and exact ray casting. ``build``
adds the textures (``atlas``, ``lighting``); ``building`` joins several rooms by corridors.

World frame: z up, the floor at z = 0, the room spans [0, Lx] × [0, Ly] × [0, Lz] (metres).
Every surface is a rectangle (``quad``): corner ``P0`` and full edge vectors ``U``, ``V``; points are
``P0 + s U + r V`` for s, r in [0, 1]; the visible side is ``U × V``. Each quad owns a region of
one texture atlas (texel (x, y) of the region ↔ s = (x + 0.5) / w, r = (y + 0.5) / h). The GL
renderer and the PyTorch ray-caster both draw these quads, so they produce the same geometry.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from glace_core.synthetic.furniture import Box, box_surfaces, rect, sample_boxes

if TYPE_CHECKING:
    import torch

SMALL_CAST = 1 << 20  # rays x quads below which a ray cast runs on one torch thread


@contextlib.contextmanager
def one_torch_thread():
    """Torch (and its BLAS) on one thread inside, the caller's setting after: for many small ray
    casts, where handing tiny matrix products to a thread pool costs up to 100x more than it saves
    (spinning threads on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Area:
    """A floor rectangle [lo, hi] (metres) of a building under a ceiling at ``height``: a room
    (``open_axis`` -1) or a corridor open at both ends along x (0) or y (1)."""

    lo: tuple[float, float]
    hi: tuple[float, float]
    height: float
    open_axis: int = -1

    def contains(self, xy: np.ndarray, clearance: float) -> np.ndarray:
        """(M,) bool: floor points xy (M, 2) at least ``clearance`` from its walls (a corridor's free
        strip reaches ``clearance`` past its open ends, into the rooms it joins)."""
        lo, hi = np.asarray(self.lo, float) + clearance, np.asarray(self.hi, float) - clearance
        if self.open_axis >= 0:
            lo[self.open_axis] -= 2 * clearance
            hi[self.open_axis] += 2 * clearance
        return np.all((xy >= lo) & (xy <= hi), axis=1)

    def to_json(self) -> dict:
        return {"lo": list(self.lo), "hi": list(self.hi), "height": self.height, "open_axis": self.open_axis}


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
    areas: list[Area] = field(default_factory=list)  # rooms then corridors of a building; empty: one room

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
        boxes = [{"centre": list(b.centre), "half": list(b.half), "height": b.height, "yaw": b.yaw}
                 | ({} if b.model is None else {"model": b.model}) for b in self.boxes]
        out = {"size_m": self.size.tolist(), "boxes": boxes,
               "lights": self.lights.tolist(), "texels_per_m": self.texels_per_m,
               "quads": [{"name": n, "P0": p.tolist(), "U": u.tolist(), "V": v.tolist()}
                         for n, p, u, v in zip(self.names, self.P0, self.U, self.V)]}
        if self.areas:
            out["areas"] = [a.to_json() for a in self.areas]
        return out

    def free(self, xy: np.ndarray, wall_clearance: float, box_clearance: float) -> np.ndarray:
        """(M,) bool: floor points xy (M, 2) at least ``wall_clearance`` from the walls (inside one
        room or corridor) and ``box_clearance`` from every furniture footprint."""
        xy = np.atleast_2d(xy)
        if self.areas:
            ok = np.any([a.contains(xy, wall_clearance) for a in self.areas], axis=0)
        else:
            ok = np.all((xy >= wall_clearance) & (xy <= self.size[:2] - wall_clearance), axis=1)
        for box in self.boxes:
            ok &= box.footprint_distance(xy) >= box_clearance
        return ok

    def ceiling(self, xy: np.ndarray) -> np.ndarray:
        """(M,) ceiling height over floor points xy (M, 2) (the lowest of the areas they lie in)."""
        xy = np.atleast_2d(xy)
        if not self.areas:
            return np.full(len(xy), float(self.size[2]))
        out = np.full(len(xy), np.inf)
        for a in self.areas:
            out = np.where(a.contains(xy, 0.0), np.minimum(out, a.height), out)
        return np.where(np.isfinite(out), out, 0.0)

    # ------------------------------------------------------------------ ray casting

    def intersect(self, origins: torch.Tensor, dirs: torch.Tensor, t_min: float = 1e-6,
                  chunk: int = 65536, max_t: float | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest hit of rays with the room's quads (float64, exact up to rounding).

        origins: (N, 3) or (3,); dirs: (N, 3), not necessarily unit. Returns t (N,) (hit = o + t d;
        inf where nothing is hit), quad index (N,) int64 (-1 where no hit), s (N,), r (N,) in [0, 1].
        With ``max_t``, only quads whose bounding box meets that of the ray segments [0, max_t] are
        tested (faster): hits beyond max_t may then read as none."""
        import torch  # here, not at the top: the GL renderer's process loads rooms without torch

        dirs = torch.as_tensor(dirs, dtype=torch.float64)
        if dirs.ndim != 2 or dirs.shape[1] != 3:
            raise ValueError(f"dirs must be (N, 3), got {tuple(dirs.shape)}")
        origins = torch.as_tensor(origins, dtype=torch.float64).expand(dirs.shape[0], 3)
        small = dirs.shape[0] * len(self.P0) < SMALL_CAST
        with one_torch_thread() if small else contextlib.nullcontext():
            return self._intersect(origins, dirs, t_min, chunk, max_t)

    def _intersect(self, origins, dirs, t_min, chunk, max_t):
        import torch

        P0_all, U_all, V_all = (torch.from_numpy(a) for a in (self.P0, self.U, self.V))
        n_all = torch.from_numpy(self.normals)
        if max_t is not None:
            corners = torch.stack((P0_all, P0_all + U_all, P0_all + V_all, P0_all + U_all + V_all))
            quad_lo, quad_hi = corners.amin(0) - 1e-9, corners.amax(0) + 1e-9
        outs = []
        for i in range(0, dirs.shape[0], chunk):
            o, d = origins[i:i + chunk], dirs[i:i + chunk]
            P0, U, V, n, keep = P0_all, U_all, V_all, n_all, None
            if max_t is not None:
                ends = o + max_t * d
                lo, hi = torch.minimum(o, ends).amin(0), torch.maximum(o, ends).amax(0)
                keep = torch.nonzero(((quad_lo <= hi) & (quad_hi >= lo)).all(1))[:, 0]
                if len(keep) == 0:
                    zero = torch.zeros(len(o), dtype=torch.float64)
                    outs.append((zero + float("inf"), torch.full((len(o),), -1, dtype=torch.int64), zero, zero))
                    continue
                P0, U, V, n = P0[keep], U[keep], V[keep], n[keep]
            uu, vv = (U * U).sum(1), (V * V).sum(1)
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
            if keep is not None:
                idx = keep[idx]
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


def _quads(size: np.ndarray, boxes: list[Box]) -> tuple[list, list[str]]:
    lx, ly, lz = size
    down = np.array([0.0, 0.0, -lz])
    quads = [rect((lx / 2, 0, lz / 2), (lx, 0, 0), down), rect((lx / 2, ly, lz / 2), (-lx, 0, 0), down),
             rect((0, ly / 2, lz / 2), (0, -ly, 0), down), rect((lx, ly / 2, lz / 2), (0, ly, 0), down),
             rect((lx / 2, ly / 2, 0), (lx, 0, 0), (0, ly, 0)), rect((lx / 2, ly / 2, lz), (lx, 0, 0), (0, -ly, 0))]
    names = ["wall_y0", "wall_y1", "wall_x0", "wall_x1", "floor", "ceiling"]
    box_quads, box_names = box_surfaces(boxes)
    return quads + box_quads, names + box_names


def room_geometry(rng: np.random.Generator, texels_per_m: float) -> Room:
    """The geometry of one random room (no textures yet): size 4-7 × 4-7 × 2.5-3.2 m, 3-6
    furniture boxes and 2-3 ceiling lights."""
    size = np.array([rng.uniform(4.0, 7.0), rng.uniform(4.0, 7.0), rng.uniform(2.5, 3.2)])
    boxes = sample_boxes(size, rng)
    n_lights = int(rng.integers(2, 4))
    lights = np.stack([np.array([rng.uniform(0.2, 0.8) * size[0], rng.uniform(0.2, 0.8) * size[1], size[2] - 0.25])
                       for _ in range(n_lights)])
    quads, names = _quads(size, boxes)
    P0, U, V = (np.array([q[k] for q in quads]) for k in range(3))
    return Room(size, boxes, lights, P0, U, V, names, texels_per_m=float(texels_per_m))
