"""Photo collages: the texture of every surface of a synthetic room.

The photos are the real ones bundled in the scikit-image, scikit-learn and matplotlib wheels (read
from the installed package files, never downloaded). A collage covers a surface with many
overlapping, randomly cropped, scaled, flipped and colour-shifted photo patches over a random base
photo, so every region of every surface is distinctive (no tiling of one small image), which is what
relocalization maps need.
"""
from __future__ import annotations

import functools
import logging
import os

import numpy as np

_logger = logging.getLogger(__name__)

#: Files of ``skimage/data`` used (bundled in the wheel; binary masks and tiny images left out).
SKIMAGE_FILES = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
                 "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
                 "ihc.png", "microaneurysms.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png",
                 "page.png", "retina.jpg", "rocket.jpg", "text.png")
#: Files of matplotlib's ``mpl-data/sample_data``.
MATPLOTLIB_FILES = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image.astype(np.float64) * (255.0 / max(float(image.max()), 1e-9)), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


@functools.lru_cache(maxsize=1)
def load_photos() -> tuple[np.ndarray, ...]:
    """The bundled photos as uint8 RGB (h, w, 3) arrays, in a fixed order (read once, cached).

    Raises RuntimeError when fewer than 8 photos can be read (a broken install)."""
    from PIL import Image

    paths = []
    try:
        import skimage.data

        folder = os.path.dirname(skimage.data.__file__)
        paths += [os.path.join(folder, name) for name in SKIMAGE_FILES]
    except ImportError:
        _logger.warning("scikit-image is not installed: its photos are left out of the textures")
    try:
        import matplotlib

        folder = os.path.join(matplotlib.get_data_path(), "sample_data")
        paths += [os.path.join(folder, name) for name in MATPLOTLIB_FILES]
    except ImportError:
        _logger.warning("matplotlib is not installed: its photos are left out of the textures")
    photos = []
    for path in paths:
        try:
            with Image.open(path) as im:
                photos.append(_as_rgb(np.array(im.convert("RGB"))))
        except (OSError, ValueError) as exc:
            _logger.warning("skipping texture photo %s (%s)", path, exc)
    try:
        from sklearn.datasets import load_sample_images

        photos += [_as_rgb(im) for im in load_sample_images().images]
    except (ImportError, OSError) as exc:
        _logger.warning("scikit-learn sample images unavailable (%s)", exc)
    if len(photos) < 8:
        raise RuntimeError(f"only {len(photos)} texture photos could be read; install scikit-image, scikit-learn "
                           "and matplotlib")
    return tuple(photos)


def photo_patch(photo: np.ndarray, out_h: int, out_w: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``photo`` resized to (out_h, out_w, 3) uint8, flipped and colour-shifted."""
    import cv2

    ph, pw = photo.shape[:2]
    frac = rng.uniform(0.35, 1.0)
    aspect = out_w / out_h
    ch = max(8, int(ph * frac))
    cw = max(8, min(pw, int(ch * aspect)))
    ch = max(8, min(ph, int(cw / aspect)))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if out_w < cw else cv2.INTER_LINEAR
    patch = cv2.resize(np.ascontiguousarray(crop), (out_w, out_h), interpolation=interp).astype(np.float32)
    gains = rng.uniform(0.65, 1.35, size=3).astype(np.float32)  # colour shift: the same photo looks different
    offset = np.float32(rng.uniform(-25, 25))
    return np.clip(patch * gains + offset, 0, 255)


def collage(height: int, width: int, texels_per_m: float, rng: np.random.Generator) -> np.ndarray:
    """A photo collage of (height, width, 3) float32 in [0, 255] for a surface of
    (height / texels_per_m) × (width / texels_per_m) metres.

    A base photo covers the surface; patches of 0.25-1.2 m follow until about three patches cover
    each point, with a thin dark frame around some of them (corners and edges to match)."""
    if height < 1 or width < 1:
        raise ValueError(f"collage size must be positive, got {height}x{width}")
    photos = load_photos()
    canvas = photo_patch(photos[int(rng.integers(len(photos)))], height, width, rng)
    area_m2 = height * width / texels_per_m ** 2
    n_patches = int(np.ceil(3.0 * area_m2 / 0.45)) + 2
    for _ in range(n_patches):
        side_h = rng.uniform(0.25, 1.2) * texels_per_m
        side_w = side_h * rng.uniform(0.6, 1.7)
        ph, pw = max(4, min(height, int(side_h))), max(4, min(width, int(side_w)))
        y0 = int(rng.integers(-ph // 3, max(height - 2 * ph // 3, -ph // 3 + 1)))
        x0 = int(rng.integers(-pw // 3, max(width - 2 * pw // 3, -pw // 3 + 1)))
        patch = photo_patch(photos[int(rng.integers(len(photos)))], ph, pw, rng)
        if rng.random() < 0.4:
            b = max(1, int(0.015 * texels_per_m))
            patch[:b], patch[-b:], patch[:, :b], patch[:, -b:] = 20, 20, 20, 20
        ys, xs = max(0, y0), max(0, x0)
        ye, xe = min(height, y0 + ph), min(width, x0 + pw)
        if ye > ys and xe > xs:
            canvas[ys:ye, xs:xe] = patch[ys - y0:ye - y0, xs - x0:xe - x0]
    return canvas
