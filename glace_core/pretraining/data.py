"""Scenes for encoder pretraining: a DSAC*-layout split held in memory at a small resolution.

A split folder holds ``rgb/`` (jpg/png), ``poses/`` (4x4 cam->world text), ``calibration/`` (one focal
value, principal point at the image centre, or a 3x3 K) and optionally ``depth/`` (16-bit PNG, mm,
z-depth, 0 = invalid); files are matched by sorted name. Images are resized so the shorter side is
``image_height`` (K scaled by the same factors, no half-pixel terms), converted to grayscale with
the PIL 'L' weights and stored as uint8; depth is resized with nearest neighbour.

``sample_batch`` draws images of one scene, applies the augmentation (rescale, brightness and
contrast jitter) and returns the network input together with, for every cell (x, y) of the stride-8
feature grid, its pixel centre (``glace_core.geometry.cell_centres``: (8x + 4, 8y + 4)) and the
z-depth there (0 = unknown). Calibration and pose files are read by ``glace_core.dataset``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from glace_core.dataset import read_calibration_file, read_pose_file
from glace_core.encoder import ACE_IMAGE_MEAN, ACE_IMAGE_STD
from glace_core.geometry import cell_centres, focal_K

_logger = logging.getLogger(__name__)
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")
STRIDE = 8


@dataclass
class PretrainScene:
    """One scene split in memory. N frames at a common size H x W.

    images: (N, H, W) uint8 grayscale; K: (N, 3, 3) float32 at H x W; cam_to_world: (N, 4, 4)
    float32; depth: (N, H, W) float32 metres (0 = invalid) or None; name: the scene folder name.
    """

    name: str
    images: torch.Tensor
    K: torch.Tensor
    cam_to_world: torch.Tensor
    depth: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def mean_camera_centre(self) -> torch.Tensor:
        """(3,) mean of the camera centres (the translation of cam->world)."""
        return self.cam_to_world[:, :3, 3].mean(0)


def _sorted_files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in exts and p.is_file())


def _read_K(path: Path, orig_h: int, orig_w: int) -> np.ndarray:
    """K (3, 3) float64 at the original image size from a calibration file (one focal or a 3x3 K)."""
    calib = read_calibration_file(path)
    return calib.copy() if isinstance(calib, np.ndarray) else focal_K(calib, orig_h, orig_w)


def load_scene(split_dir: str | Path, image_height: int, max_frames: int = 0) -> PretrainScene:
    """Load a DSAC*-layout split (e.g. ``scene/train``) at shorter side ``image_height``.

    max_frames: 0 keeps every frame, else an evenly spaced subset of that many.
    Raises FileNotFoundError for missing folders and ValueError for mismatched file counts.
    """
    split_dir = Path(split_dir)
    if (split_dir / "train").is_dir() and not (split_dir / "rgb").is_dir():
        split_dir = split_dir / "train"
    for sub in ("rgb", "poses", "calibration"):
        if not (split_dir / sub).is_dir():
            raise FileNotFoundError(f"scene split {split_dir} has no {sub}/ folder (expected the DSAC* layout)")
    rgb = _sorted_files(split_dir / "rgb", _IMAGE_EXTS)
    poses = _sorted_files(split_dir / "poses", (".txt",))
    calib = _sorted_files(split_dir / "calibration", (".txt",))
    depth_dir = split_dir / "depth"
    depth = _sorted_files(depth_dir, (".png",)) if depth_dir.is_dir() else []
    if not rgb:
        raise ValueError(f"scene split {split_dir}/rgb holds no jpg/png images")
    counts = {"rgb": len(rgb), "poses": len(poses), "calibration": len(calib)}
    if depth:
        counts["depth"] = len(depth)
    if len(set(counts.values())) != 1:
        raise ValueError(f"scene split {split_dir}: file counts differ {counts}")
    index = np.arange(len(rgb))
    if max_frames and max_frames < len(rgb):
        index = np.unique(np.linspace(0, len(rgb) - 1, max_frames).round().astype(int))
    images, ks, c2w, depths = [], [], [], []
    size = None
    for i in index:
        bgr = cv2.imread(str(rgb[i]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {rgb[i]}")
        orig_h, orig_w = bgr.shape[:2]
        scale = image_height / min(orig_h, orig_w)
        new_w, new_h = int(round(orig_w * scale)), int(round(orig_h * scale))
        if size is None:
            size = (new_h, new_w)
        elif size != (new_h, new_w):
            raise ValueError(f"scene split {split_dir}: image {rgb[i].name} resizes to {(new_h, new_w)}, "
                             f"the others to {size}; all images of a scene must have one size")
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        images.append(cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA))
        K = _read_K(calib[i], orig_h, orig_w)
        K[0] *= new_w / orig_w
        K[1] *= new_h / orig_h
        ks.append(K)
        c2w.append(read_pose_file(poses[i]))
        if depth:
            d = cv2.imread(str(depth[i]), cv2.IMREAD_UNCHANGED)
            if d is None or d.ndim != 2:
                raise ValueError(f"depth image {depth[i]} is unreadable or not single-channel")
            depths.append(cv2.resize(d.astype(np.float32) / 1000.0, (new_w, new_h),
                                     interpolation=cv2.INTER_NEAREST))
    name = split_dir.parent.name if split_dir.name in ("train", "test") else split_dir.name
    scene = PretrainScene(
        name=name, images=torch.from_numpy(np.stack(images)),
        K=torch.from_numpy(np.stack(ks)).float(), cam_to_world=torch.from_numpy(np.stack(c2w)).float(),
        depth=torch.from_numpy(np.stack(depths)) if depth else None)
    _logger.info("pretraining scene %s: %d frames at %dx%d%s", name, len(scene), size[1], size[0],
                 " with depth" if depth else "")
    return scene


def sample_batch(scene: PretrainScene, batch_images: int, generator: torch.Generator,
                 aug_scale: float = 1.0, aug_jitter: float = 0.0) -> dict[str, torch.Tensor]:
    """Draw ``batch_images`` frames of ``scene`` (with replacement) and augment them.

    Returns a dict: image (B, 1, H', W') normalised (mean 0.4, std 0.25); K (B, 3, 3) at H' x W';
    world_to_cam (B, 3, 4); pixels (B, 2, h, w) cell centres; depth (B, h, w) metres (0 = unknown,
    all zeros when the scene has no depth).
    """
    idx = torch.randint(len(scene), (batch_images,), generator=generator)
    img = scene.images[idx].float().unsqueeze(1) / 255.0
    K = scene.K[idx].clone()
    depth = scene.depth[idx].unsqueeze(1) if scene.depth is not None else torch.zeros_like(img)
    height, width = img.shape[-2:]
    if aug_scale > 1:
        log_s = (torch.rand((), generator=generator) * 2 - 1) * math.log(aug_scale)
        s = float(torch.exp(log_s))
        new_h, new_w = max(STRIDE, int(round(height * s))), max(STRIDE, int(round(width * s)))
        img = F.interpolate(img, (new_h, new_w), mode="bilinear", align_corners=False, antialias=s < 1)
        depth = F.interpolate(depth, (new_h, new_w), mode="nearest")
        K[:, 0] *= new_w / width
        K[:, 1] *= new_h / height
        height, width = new_h, new_w
    if aug_jitter > 0:
        bright = 1 + (torch.rand(batch_images, 1, 1, 1, generator=generator) * 2 - 1) * aug_jitter
        contrast = 1 + (torch.rand(batch_images, 1, 1, 1, generator=generator) * 2 - 1) * aug_jitter
        mean = img.mean(dim=(2, 3), keepdim=True)
        img = ((img - mean) * contrast + mean * bright).clamp(0, 1)
    grid = cell_centres(math.ceil(height / STRIDE), math.ceil(width / STRIDE), STRIDE)  # (h, w, 2) (u, v)
    pixels = torch.from_numpy(grid).permute(2, 0, 1).float()  # (2, h, w)
    u_idx = pixels[0, 0].long().clamp(max=width - 1)
    v_idx = pixels[1, :, 0].long().clamp(max=height - 1)
    depth_cells = depth[:, 0][:, v_idx][:, :, u_idx]
    world_to_cam = torch.linalg.inv(scene.cam_to_world[idx])[:, :3, :]
    return {"image": (img - ACE_IMAGE_MEAN) / ACE_IMAGE_STD, "K": K, "world_to_cam": world_to_cam,
            "pixels": pixels.unsqueeze(0).expand(batch_images, -1, -1, -1), "depth": depth_cells}
