"""Linear motion blur of test images (``--motion-blur PIXELS``): the image averaged along a
straight streak ``PIXELS`` long (end to end) through each pixel, at an angle drawn per frame. The
depth stays that of the pose, the middle of the exposure."""
from __future__ import annotations

import numpy as np


def line_kernel(length: float, angle: float) -> np.ndarray:
    """(k, k) float32 kernel, summing to 1, of a centred segment ``length`` pixels long at ``angle``
    radians (0: horizontal), sampled every 1/8 px and splatted bilinearly (a box filter along it)."""
    if not (np.isfinite(length) and length >= 0):
        raise ValueError(f"blur length must be a number >= 0, got {length}")
    half = int(np.ceil(length / 2)) + 1
    k = 2 * half + 1
    kernel = np.zeros((k, k), np.float64)
    t = np.linspace(-length / 2, length / 2, max(2, int(np.ceil(8 * length)) + 1))
    x, y = half + t * np.cos(angle), half + t * np.sin(angle)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(kernel, (y0 + dy, x0 + dx), wy * wx)
    return (kernel / kernel.sum()).astype(np.float32)


def motion_blur(rgb: np.ndarray, length: float, angle: float) -> np.ndarray:
    """rgb (H, W, 3) uint8 blurred along a ``length``-pixel streak at ``angle`` radians → uint8."""
    import cv2

    if length <= 0:
        return rgb
    out = cv2.filter2D(rgb.astype(np.float32), -1, line_kernel(length, angle), borderType=cv2.BORDER_REFLECT_101)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
