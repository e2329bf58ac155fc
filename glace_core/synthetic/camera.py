"""The pinhole camera of the synthetic scenes (pixel-centre convention of DEVELOPERS.md)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """A pinhole camera. By default one focal length and the principal point at the image centre
    (W/2, H/2), as a single-focal DSAC* calibration file implies; ``focal_y``, ``cx``, ``cy`` give a
    full K (None: fy = focal, cx = W/2, cy = H/2). Pixel (i, j) has its centre at (i + 0.5, j + 0.5)."""

    height: int
    width: int
    focal: float  # fx (and fy unless focal_y is set), pixels
    focal_y: float | None = None  # fy, pixels
    cx: float | None = None  # principal point, continuous pixel coordinates (corner origin)
    cy: float | None = None

    def __post_init__(self):
        if int(self.height) < 8 or int(self.width) < 8:
            raise ValueError(f"resolution must be at least 8x8, got {self.height}x{self.width}")
        for name in ("focal", "focal_y"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name, size in (("cx", self.width), ("cy", self.height)):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and 0 < value < size):
                raise ValueError(f"{name} must lie inside the image (0, {size}), got {value}")

    @classmethod
    def default(cls, height: int, width: int) -> "Camera":
        """Focal 525 px at 640 wide, scaled with the width (a Kinect-like 63° horizontal field of view)."""
        return cls(int(height), int(width), 525.0 * int(width) / 640.0)

    @classmethod
    def from_spec(cls, text: str) -> "Camera":
        """A camera from ``"fx,fy,cx,cy,WxH"`` (pixels; W x H is width x height, portrait when H > W)."""
        match = re.fullmatch(r"\s*([^,]+),([^,]+),([^,]+),([^,]+),\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
        if match is None:
            raise ValueError(f"camera must look like fx,fy,cx,cy,WxH (e.g. 500,500,240,320,480x640), got {text!r}")
        try:
            fx, fy, cx, cy = (float(v) for v in match.groups()[:4])
        except ValueError:
            raise ValueError(f"camera fx,fy,cx,cy must be numbers, got {text!r}") from None
        return cls(int(match.group(6)), int(match.group(5)), fx, fy, cx, cy)

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsics."""
        fy = self.focal if self.focal_y is None else self.focal_y
        cx = self.width / 2.0 if self.cx is None else self.cx
        cy = self.height / 2.0 if self.cy is None else self.cy
        return np.array([[self.focal, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def rays(self) -> np.ndarray:
        """(H, W, 3) float64 camera-frame ray directions through pixel centres, with z = 1 (so the
        ray parameter of a hit is its z-depth)."""
        K = self.K
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64) + 0.5
        return np.stack(((u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)), -1)
