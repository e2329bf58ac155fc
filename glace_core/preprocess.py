"""Image preprocessing of the ACE/GLACE encoder input, and intrinsics scaling.

The reference reads an image as RGB, resizes it with PIL bilinear so that the **shorter side**
becomes ``resolution`` (torchvision ``resize(img, 480)``: the long side becomes
int(resolution·long/short)), converts it to grayscale with PIL 'L', divides by 255 and normalises
with mean 0.4 and std 0.25. The encoder input is (1, 1, H', W') float32.

Intrinsics follow the image: resizing by (sx, sy) = (W'/W, H'/H) scales fx, cx by sx and fy, cy by
sy (pixel centres at i + 0.5 with the corner origin, so no half-pixel terms). The reference scales
every entry by H'/H, which is only right for landscape images whose aspect ratio survives the
rounding; this module scales each axis by its own ratio.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from glace_core.geometry import check_K

MEAN = 0.4  #: normalisation mean of the grayscale encoder input
STD = 0.25  #: normalisation standard deviation of the grayscale encoder input
DEFAULT_RESOLUTION = 480  #: shorter side of the encoder input in pixels
#: focal matching (``network_resolution``) leaves the resolution alone when the focal lengths differ
#: by less than this factor (the same camera, or per-image focal lengths of one camera), so that
#: such frames keep one network input shape (a new shape builds a new graph on the CPU fast path)
FOCAL_DEAD_BAND = 1.1
#: focal matching changes the resolution in steps of this many pixels: few distinct input shapes (a
#: graph each), and a shorter side that XFeat's 1/32 pyramid divides, as the mapping frames' 480 does
FOCAL_STEP_PX = 32
#: focal matching keeps the resolution within this factor of the map's in both directions
FOCAL_MAX_FACTOR = 2.0


def resized_shape(height: int, width: int, resolution: int = DEFAULT_RESOLUTION) -> tuple[int, int]:
    """(new_h, new_w) with the shorter side = ``resolution`` and the longer side
    int(resolution·long/short), as torchvision ``resize(img, resolution)``."""
    height, width, resolution = int(height), int(width), int(resolution)
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    if resolution <= 0:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
    if height <= width:
        return resolution, int(resolution * width / height)
    return int(resolution * height / width), resolution


def scale_intrinsics(K, old_hw: tuple[int, int], new_hw: tuple[int, int]) -> np.ndarray:
    """K (3, 3) of an image resized from ``old_hw`` = (H, W) to ``new_hw`` = (H', W').

    fx, cx (and the skew) scale by W'/W; fy, cy by H'/H. Returns float64 (3, 3).
    """
    K = check_K(K)
    (oh, ow), (nh, nw) = (int(v) for v in old_hw), (int(v) for v in new_hw)
    if min(oh, ow, nh, nw) <= 0:
        raise ValueError(f"image sizes must be positive, got old_hw={old_hw}, new_hw={new_hw}")
    sx, sy = nw / ow, nh / oh
    out = K.copy()
    out[0, :] *= sx
    out[1, :] *= sy
    return out


def to_uint8_image(image) -> np.ndarray:
    """An image as uint8 (H, W) gray or (H, W, 3) RGB.

    Accepts uint8 or uint16 (scaled to 8 bit by /257, so 65535 → 255), shaped (H, W), (H, W, 1),
    (H, W, 3) or (H, W, 4) (alpha dropped). Raises ValueError on anything else.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 or uint16, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        image = image[:, :, 0] if image.shape[2] == 1 else image[:, :, :3]
    elif image.ndim != 2:
        raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty, shape {image.shape}")
    return np.ascontiguousarray(image)


def resize_rgb(image, height: int, width: int) -> np.ndarray:
    """PIL bilinear resize of a uint8 (H, W) or (H, W, 3) image to (height, width) (the reference's
    resampling: torchvision resizes PIL images with ``Image.resize(..., BILINEAR)``)."""
    image = to_uint8_image(image)
    if image.shape[:2] == (height, width):
        return image.copy()
    return np.asarray(Image.fromarray(image).resize((int(width), int(height)), Image.BILINEAR))


def preprocess_image(image, K, resolution: int = DEFAULT_RESOLUTION) -> tuple[torch.Tensor, np.ndarray]:
    """Encoder input and scaled intrinsics of one image.

    image: uint8/uint16 (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA. K: (3, 3) at (H, W).
    Returns (tensor (1, 1, H', W') float32 normalised grayscale, K' (3, 3) float64 at (H', W')),
    with (H', W') = resized_shape(H, W, resolution).
    """
    image = to_uint8_image(image)
    K = check_K(K)
    h, w = image.shape[:2]
    new_h, new_w = resized_shape(h, w, resolution)
    pil = Image.fromarray(image)
    if (new_h, new_w) != (h, w):
        pil = pil.resize((new_w, new_h), Image.BILINEAR)
    gray = np.asarray(pil.convert("L"), dtype=np.float32)  # a gray image passes through 'L' unchanged
    tensor = torch.from_numpy((gray / 255.0 - MEAN) / STD)[None, None].contiguous()
    return tensor, scale_intrinsics(K, (h, w), (new_h, new_w))


def network_focal(K, height: int, width: int, resolution: int = DEFAULT_RESOLUTION) -> float:
    """The focal length sqrt(fx * fy) in pixels of ``K`` (3, 3), for an image of ``height`` x
    ``width`` once resized to the network ``resolution`` (``preprocess_image``)."""
    K = scale_intrinsics(K, (height, width), resized_shape(height, width, resolution))
    return float(np.sqrt(K[0, 0] * K[1, 1]))


def network_resolution(K, height: int, width: int, resolution: int, map_focal: float | None) -> int:
    """The network resolution (shorter side) at which an image's focal length matches the map's.

    ``resolution``: the map's resolution; ``map_focal``: the focal length (px) of its mapping frames at
    that resolution (None: unknown, ``resolution`` is returned). An encoder sees a texture at the
    scale it learned only when the query's focal length at network resolution equals the mapping
    frames' (a query camera with a shorter focal length shows everything smaller). Within
    :data:`FOCAL_DEAD_BAND` of the map's focal length ``resolution`` is returned unchanged; otherwise
    the matching resolution, rounded to :data:`FOCAL_STEP_PX` and kept within :data:`FOCAL_MAX_FACTOR`
    of ``resolution``."""
    resolution = int(resolution)
    if not map_focal:
        return resolution
    ratio = float(map_focal) / network_focal(K, height, width, resolution)
    if not np.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"focal matching needs a finite positive focal ratio, got {ratio!r} (map focal {map_focal!r})")
    if 1.0 / FOCAL_DEAD_BAND < ratio < FOCAL_DEAD_BAND:
        return resolution
    lowest = int(np.ceil(resolution / FOCAL_MAX_FACTOR / FOCAL_STEP_PX))
    highest = int(np.floor(resolution * FOCAL_MAX_FACTOR / FOCAL_STEP_PX))
    if not 1 <= lowest <= highest:  # a resolution too small for the steps
        return resolution
    return min(max(int(round(resolution * ratio / FOCAL_STEP_PX)), lowest), highest) * FOCAL_STEP_PX
