"""Writer of the DSAC* layout of a synthetic scene (7-Scenes-style names).

``root/{train,test}/rgb/frame-NNNNNN.color.png``, ``poses/frame-NNNNNN.pose.txt`` (4×4
camera-to-world, OpenCV axes), ``calibration/frame-NNNNNN.calibration.txt`` (one focal length:
principal point at (W/2, H/2); or the full 3×3 K, three rows, for the test split of a scene made
with another test camera) and ``depth/frame-NNNNNN.depth.png`` (uint16 millimetres z-depth,
0 = invalid). Every file is written atomically; ``root/scene.json`` describes the scene.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from glace_core.dataset import SPLITS, depth_to_mm, encode_png, format_matrix
from glace_core.geometry import check_K, validate_pose
from glace_core.io_utils import atomic_write_bytes, atomic_write_text


def frame_stem(index: int) -> str:
    return f"frame-{int(index):06d}"


def write_frame(root: str | os.PathLike, split: str, index: int, rgb: np.ndarray, depth_m: np.ndarray,
                pose: np.ndarray, calibration: float | np.ndarray) -> None:
    """Write frame ``index`` of ``split``: rgb (H, W, 3) uint8, depth_m (H, W) metres (0 invalid),
    pose (4, 4) camera-to-world, calibration: a focal length in pixels or a (3, 3) K."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rgb, depth_m = np.asarray(rgb), np.asarray(depth_m)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if depth_m.shape != rgb.shape[:2]:
        raise ValueError(f"depth has shape {depth_m.shape}, the image {rgb.shape[:2]}")
    pose = validate_pose(pose, f"pose of {split} frame {index}")
    folder, stem = Path(root) / split, frame_stem(index)
    atomic_write_bytes(folder / "rgb" / f"{stem}.color.png", encode_png(rgb))
    atomic_write_bytes(folder / "depth" / f"{stem}.depth.png", encode_png(depth_to_mm(depth_m)))
    atomic_write_text(folder / "poses" / f"{stem}.pose.txt", format_matrix(pose))
    if np.ndim(calibration) == 0:
        text = f"{float(calibration):.17g}\n"
    else:
        text = format_matrix(check_K(np.asarray(calibration, np.float64), f"K of {split} frame {index}"))
    atomic_write_text(folder / "calibration" / f"{stem}.calibration.txt", text)


def write_scene_json(root: str | os.PathLike, info: dict) -> None:
    """``root/scene.json``: generation parameters and the room geometry (written atomically)."""
    atomic_write_text(Path(root) / "scene.json", json.dumps(info, indent=1) + "\n")
