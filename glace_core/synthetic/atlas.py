"""The texture atlas of a synthetic room: every quad's albedo times its baked lighting, packed into
one image with replicated borders, and its mip pyramid (the GL and PyTorch renderers sample the
same levels)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from glace_core.synthetic.lighting import Lighting, bake_light

ATLAS_WIDTH = 4096  # texels; widened (x2 up to MAX_ATLAS_SIDE) when the surfaces do not fit 4096 x 16384
ATLAS_PAD = 8  # texels of replicated border around each region (clean mip levels up to 3)
MIP_LEVELS = 6  # levels 1..6 below the base; atlas sides are multiples of 2**MIP_LEVELS
MAX_ATLAS_SIDE = 16384  # GL_MAX_TEXTURE_SIZE of Mesa llvmpipe


def pack(sizes: list[tuple[int, int]], width: int = ATLAS_WIDTH) -> tuple[np.ndarray, int]:
    """Shelf packing of (h, w) regions (plus padding) into ``width`` columns: (Q, 4) x0, y0, w, h
    and the atlas height (a multiple of 2**MIP_LEVELS)."""
    align = 2 ** 3
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])
    regions = np.zeros((len(sizes), 4), np.int64)
    x = y = shelf = 0
    for i in order:
        h, w = sizes[i]
        bw = -(-(w + 2 * ATLAS_PAD) // align) * align
        bh = -(-(h + 2 * ATLAS_PAD) // align) * align
        if bw > width:
            raise ValueError(f"surface of {w} texels is wider than the atlas ({width})")
        if x + bw > width:
            x, y, shelf = 0, y + shelf, 0
        regions[i] = (x + ATLAS_PAD, y + ATLAS_PAD, w, h)
        x += bw
        shelf = max(shelf, bh)
    m = 2 ** MIP_LEVELS
    return regions, -(-(y + shelf) // m) * m


def mip_pyramid(atlas: np.ndarray, levels: int = MIP_LEVELS) -> list[np.ndarray]:
    """[level 0 .. levels] of a uint8 (H, W, 3) image by rounded 2×2 box filtering (H, W divisible
    by 2**levels)."""
    out = [atlas]
    for _ in range(levels):
        a = out[-1].astype(np.uint16)
        s = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
        out.append(((s + 2) // 4).astype(np.uint8))
    return out


def bake_atlases(room, albedo: Callable[[int, int, int], np.ndarray], lightings: list[Lighting],
                 light_rng: np.random.Generator) -> list[list[np.ndarray]]:
    """Lay out ``room``'s quads in an atlas (sets ``room.regions``) and return one mip pyramid per
    lighting. ``albedo(q, h, w)`` gives quad q's colour, (h, w, 3) float32 in [0, 255]; it is
    called once per quad, in quad order, and so is the lighting bake (``light_rng``)."""
    import cv2

    sizes = [(max(1, int(np.ceil(np.linalg.norm(v) * room.texels_per_m))),
              max(1, int(np.ceil(np.linalg.norm(u) * room.texels_per_m)))) for u, v in zip(room.U, room.V)]
    width = ATLAS_WIDTH
    regions, atlas_h = pack(sizes, width)
    while atlas_h > MAX_ATLAS_SIDE and width < MAX_ATLAS_SIDE:
        width *= 2
        regions, atlas_h = pack(sizes, width)
    if atlas_h > MAX_ATLAS_SIDE:
        raise ValueError(f"the surfaces need a {atlas_h}x{width} texture atlas, more than {MAX_ATLAS_SIDE} a side: "
                         f"lower texels_per_m (now {room.texels_per_m:g})")
    atlases = [np.zeros((atlas_h, width, 3), np.uint8) for _ in lightings]
    room.regions = regions
    for q, (x0, y0, w, h) in enumerate(regions):
        colour = albedo(q, int(h), int(w))
        for atlas, light in zip(atlases, bake_light(room, q, light_rng, lightings)):
            light = cv2.resize(light, (int(w), int(h)), interpolation=cv2.INTER_LINEAR)
            tex = np.clip(colour * light + 0.5, 0, 255).astype(np.uint8)
            padded = cv2.copyMakeBorder(tex, ATLAS_PAD, ATLAS_PAD, ATLAS_PAD, ATLAS_PAD, cv2.BORDER_REPLICATE)
            atlas[y0 - ATLAS_PAD:y0 + h + ATLAS_PAD, x0 - ATLAS_PAD:x0 + w + ATLAS_PAD] = padded
    return [mip_pyramid(atlas) for atlas in atlases]
