"""A tiny analytic scene writer for the pretraining and encoder tests (no GL needed).

``write_box_scene`` renders a camera inside a box room whose six walls carry real photos (from the
scikit-image data folder), by exact ray/box intersection, and writes the DSAC* layout: rgb/*.png,
poses/*.txt (cam->world, OpenCV axes), calibration/*.txt (one focal value) and depth/*.png (mm).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_HALF = np.array([2.0, 1.2, 2.5])  # room half-extent (m) along x, y, z
_TEXTURES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "brick", "camera",
             "grass", "gravel", "moon", "clock", "coins", "cell", "hubble_deep_field", "cat")


def _textures() -> list[np.ndarray]:
    """Real photos from the scikit-image, scikit-learn and matplotlib wheels, as (h, w, 3) uint8."""
    from skimage import data

    images = [getattr(data, name)() for name in _TEXTURES]
    try:
        from sklearn.datasets import load_sample_images
        images += list(load_sample_images().images)
    except Exception:  # pragma: no cover - optional extra photos
        pass
    out = []
    for image in images:
        image = np.asarray(image)
        image = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
        out.append(np.ascontiguousarray(image.astype(np.uint8)))
    return out


def _look(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return r_yaw @ r_pitch


def render(textures: list[np.ndarray], cam_to_world: np.ndarray, focal: float, h: int, w: int, tiles: int = 1):
    """RGB (h, w, 3) uint8 and z-depth (h, w) metres of the box room seen from ``cam_to_world``.

    textures: six (th, tw, 3) uint8 images, one per wall (-x, +x, -y, +y, -z, +z); tiles: repeats per wall."""
    v, u = np.mgrid[0:h, 0:w] + 0.5
    rays_cam = np.stack(((u - w / 2) / focal, (v - h / 2) / focal, np.ones_like(u)), -1)  # z = 1
    rays = rays_cam @ cam_to_world[:3, :3].T
    origin = cam_to_world[:3, 3]
    with np.errstate(divide="ignore"):
        t_axes = np.where(rays > 0, (_HALF - origin) / rays, (-_HALF - origin) / rays)
    axis = np.argmin(t_axes, -1)
    t = np.take_along_axis(t_axes, axis[..., None], -1)[..., 0]
    points = origin + rays * t[..., None]
    image = np.zeros((h, w, 3), np.uint8)
    for face in range(6):
        a, positive = face // 2, face % 2 == 1
        mask = (axis == a) & ((rays[..., a] > 0) == positive)
        if not mask.any():
            continue
        o1, o2 = [i for i in range(3) if i != a]
        tex = textures[face]
        s = ((points[mask][:, o1] + _HALF[o1]) / (2 * _HALF[o1]) * tiles) % 1.0
        r = ((points[mask][:, o2] + _HALF[o2]) / (2 * _HALF[o2]) * tiles) % 1.0
        col = np.clip((s * (tex.shape[1] - 1)).astype(int), 0, tex.shape[1] - 1)
        row = np.clip((r * (tex.shape[0] - 1)).astype(int), 0, tex.shape[0] - 1)
        image[mask] = tex[row, col]
    return image, t  # t is the z-depth because the camera rays have z = 1


def write_frame(folder: Path, index: int, rgb: np.ndarray, depth: np.ndarray, pose: np.ndarray,
                focal: float) -> None:
    """Frame ``index`` into a split folder: rgb/, poses/, calibration/ (one focal) and depth/ (mm)."""
    name = f"frame-{index:05d}"
    cv2.imwrite(str(folder / "rgb" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.savetxt(folder / "poses" / f"{name}.txt", pose)
    np.savetxt(folder / "calibration" / f"{name}.txt", [focal])
    cv2.imwrite(str(folder / "depth" / f"{name}.png"), np.round(depth * 1000).astype(np.uint16))


def write_box_scene(root: str | Path, seed: int, n_train: int, n_test: int, height: int = 96,
                    width: int = 128) -> Path:
    """Write a DSAC*-layout box-room scene with train/test splits; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    pool = _textures()
    textures = [pool[i] for i in rng.permutation(len(pool))[:6]]
    tiles = int(rng.integers(1, 3))
    focal = 0.8 * width
    for split, count in (("train", n_train), ("test", n_test)):
        for sub in ("rgb", "poses", "calibration", "depth"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pose = np.eye(4)
            pose[:3, :3] = _look(rng.uniform(-np.pi, np.pi), rng.uniform(-0.3, 0.3))
            pose[:3, 3] = rng.uniform(-0.6, 0.6, 3) * np.array([1.0, 0.5, 1.0])
            rgb, depth = render(textures, pose, focal, height, width, tiles)
            write_frame(root / split, i, rgb, depth, pose, focal)
    return root
