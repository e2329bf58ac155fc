"""Camera projection in torch, differentiable, for the training losses.

``glace_core.geometry`` holds the numpy geometry (float64, for evaluation and data); the losses of
map training (``glace_core.training.loss``) and encoder pretraining (``glace_core.pretraining.loss``)
need the same projection on batches of tensors with autograd, and take it from here. Conventions
are those of DEVELOPERS.md: world-to-camera poses (B, 3, 4) in OpenCV axes, K (B, 3, 3), pixels as
continuous (u, v) with the origin at the top-left image corner.
"""
from __future__ import annotations

import torch


def _check_batch(points: torch.Tensor, name: str) -> None:
    if points.ndim != 3 or points.shape[1] not in (2, 3):
        raise ValueError(f"{name} must be (B, 2 or 3, M), got shape {tuple(points.shape)}")


def reproject(points_world: torch.Tensor, world_to_cam: torch.Tensor, K: torch.Tensor,
              min_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Move world points into the camera and project them.

    points_world: (B, 3, M); world_to_cam: (B, 3, 4); K: (B, 3, 3) with last row [0 0 1].
    Returns (points_cam (B, 3, M), pixels (B, 2, M) = (K p_cam)[:2] / max(z, min_depth)), float32.
    The depth is clamped before the division so that points behind the camera give finite pixels
    (and gradients); callers mark them invalid by their camera depth.
    """
    _check_batch(points_world, "points_world")
    b = points_world.shape[0]
    if tuple(world_to_cam.shape) != (b, 3, 4) or tuple(K.shape) != (b, 3, 3):
        raise ValueError(f"world_to_cam must be ({b}, 3, 4) and K ({b}, 3, 3), got "
                         f"{tuple(world_to_cam.shape)} and {tuple(K.shape)}")
    points_cam = world_to_cam[:, :, :3].float() @ points_world.float() + world_to_cam[:, :, 3:].float()
    uvw = K.float() @ points_cam
    pixels = uvw[:, :2] / points_cam[:, 2:].clamp(min=min_depth)
    return points_cam, pixels


def pixel_rays(pixels: torch.Tensor, K_inv: torch.Tensor) -> torch.Tensor:
    """Camera rays (B, 3, M) with z = 1 through pixels (B, 2, M) (continuous (u, v)); K_inv: (B, 3, 3)."""
    _check_batch(pixels, "pixels")
    if tuple(K_inv.shape) != (pixels.shape[0], 3, 3):
        raise ValueError(f"K_inv must be ({pixels.shape[0]}, 3, 3), got {tuple(K_inv.shape)}")
    ones = torch.ones_like(pixels[:, :1], dtype=torch.float32)
    return K_inv.float() @ torch.cat((pixels.float(), ones), dim=1)
