"""The pinhole camera of the synthetic scenes (pixel-centre convention of DEVELOPERS.md)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """A pinhole camera with one focal length and the principal point at the image centre
    (W/2, H/2), as a single-focal DSAC* calibration file implies. Pixel (i, j) has its centre at
    (i + 0.5, j + 0.5)."""

    height: int
    width: int
    focal: float

    def __post_init__(self):
        if int(self.height) < 8 or int(self.width) < 8:
            raise ValueError(f"resolution must be at least 8x8, got {self.height}x{self.width}")
        if not (np.isfinite(self.focal) and self.focal > 0):
            raise ValueError(f"focal must be a positive number, got {self.focal}")

    @classmethod
    def default(cls, height: int, width: int) -> "Camera":
        """Focal 525 px at 640 wide, scaled with the width (a Kinect-like 63° horizontal field of view)."""
        return cls(int(height), int(width), 525.0 * int(width) / 640.0)

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsics."""
        return np.array([[self.focal, 0.0, self.width / 2.0], [0.0, self.focal, self.height / 2.0], [0.0, 0.0, 1.0]])

    def rays(self) -> np.ndarray:
        """(H, W, 3) float64 camera-frame ray directions through pixel centres, with z = 1 (so the
        ray parameter of a hit is its z-depth)."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64) + 0.5
        return np.stack(((u - self.width / 2.0) / self.focal, (v - self.height / 2.0) / self.focal,
                         np.ones_like(u)), -1)
