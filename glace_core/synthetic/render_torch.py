"""Pure-PyTorch renderer of a synthetic room: exact ray casting of the room's quads and trilinear
(mip-mapped) sampling of the texture atlas, the same filtering the GL renderer asks for."""
from __future__ import annotations

import numpy as np
import torch

from glace_core.synthetic.camera import Camera
from glace_core.synthetic.room import Room


class TorchRenderer:
    """Renders RGB (H, W, 3) uint8 and z-depth (H, W) float32 metres of ``room`` seen by ``camera``."""

    backend = "torch"

    def __init__(self, room: Room, camera: Camera):
        self.room, self.camera = room, camera
        self._rays = torch.from_numpy(camera.rays().reshape(-1, 3))  # (HW, 3), z = 1
        self._levels = [torch.from_numpy(np.ascontiguousarray(level)).reshape(-1, 3) for level in room.pyramid]
        self._offsets = np.cumsum([0] + [lv.shape[0] for lv in self._levels])
        self._flat = torch.cat(self._levels)  # all levels, (sum h_k w_k, 3) uint8
        self._dims = torch.tensor([[lv.shape[0], lv.shape[1]] for lv in room.pyramid])  # (L+1, 2) h, w

    def close(self) -> None:
        pass

    def render(self, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cam_to_world (4, 4) OpenCV axes → rgb (H, W, 3) uint8, depth (H, W) float32 metres."""
        pose = np.asarray(cam_to_world, np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"cam_to_world must be (4, 4), got {pose.shape}")
        h, w = self.camera.height, self.camera.width
        R, origin = torch.from_numpy(pose[:3, :3]), torch.from_numpy(pose[:3, 3])
        dirs = self._rays @ R.T  # (HW, 3)
        t, q, s, r = self.room.intersect(origin, dirs)
        hit = q >= 0
        depth = torch.where(hit, t, torch.zeros_like(t))
        qc = q.clamp(min=0)
        lod = self._lod(origin, dirs, t, qc, R)
        regions = torch.from_numpy(self.room.regions).double()[qc]  # (HW, 4)
        ax = regions[:, 0] + s * regions[:, 2]  # texel coordinates at level 0, corner origin
        ay = regions[:, 1] + r * regions[:, 3]
        l0 = lod.floor().clamp(0, len(self._levels) - 1)
        frac = (lod - l0)[:, None]
        l1 = (l0 + 1).clamp(max=len(self._levels) - 1)
        colour = (1 - frac) * self._bilinear(ax, ay, l0.long()) + frac * self._bilinear(ax, ay, l1.long())
        colour = torch.where(hit[:, None], colour, torch.zeros_like(colour))
        rgb = (colour + 0.5).floor().clamp(0, 255).to(torch.uint8).reshape(h, w, 3).numpy()
        return rgb, depth.reshape(h, w).float().numpy()

    def _lod(self, origin, dirs, t, q, R) -> torch.Tensor:
        """Mip level (HW,) from the texel footprint of one pixel step in x and in y on the hit plane."""
        room = self.room
        P0, U, V = (torch.from_numpy(a)[q] for a in (room.P0, room.U, room.V))
        n = torch.from_numpy(room.normals)[q]
        reg = torch.from_numpy(room.regions).double()[q]
        texel_u = reg[:, 2:3] / (U * U).sum(1, keepdim=True) * U  # d(ax)/d(point) along U
        texel_v = reg[:, 3:4] / (V * V).sum(1, keepdim=True) * V
        base = origin + t.clamp(max=1e3)[:, None] * dirs
        d_point = ((P0 - origin) * n).sum(1)
        feet = []
        K = self.camera.K
        for axis in (0, 1):  # the neighbouring pixel's ray: d + R[:, axis] / f (fx, then fy)
            d2 = dirs + R[:, axis] / float(K[axis, axis])
            denom = (d2 * n).sum(1)
            t2 = d_point / torch.where(denom.abs() > 1e-12, denom, torch.ones_like(denom))
            delta = origin + t2[:, None] * d2 - base
            feet.append(torch.sqrt(((delta * texel_u).sum(1)) ** 2 + ((delta * texel_v).sum(1)) ** 2))
        rho = torch.maximum(feet[0], feet[1]).clamp(min=1e-6)
        return torch.log2(rho).clamp(0, len(self._levels) - 1)

    def _bilinear(self, ax, ay, level) -> torch.Tensor:
        """Bilinear samples (N, 3) float64 at level-0 texel coordinates (ax, ay) from mip ``level`` (N,)."""
        scale = torch.pow(2.0, level.double())
        hk, wk = self._dims[level, 0], self._dims[level, 1]
        x = ax / scale - 0.5
        y = ay / scale - 0.5
        x0, y0 = x.floor(), y.floor()
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        offsets = torch.from_numpy(self._offsets[:-1])[level]
        out = 0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            yi = (y0.long() + dy).clamp(min=0)
            yi = torch.minimum(yi, hk - 1)
            for dx, wx in ((0, 1 - fx), (1, fx)):
                xi = torch.minimum((x0.long() + dx).clamp(min=0), wk - 1)
                out = out + wy * wx * self._flat[offsets + yi * wk + xi].double()
        return out
