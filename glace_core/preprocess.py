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

