"""The pretraining loss: ACE's reprojection loss (GLACE_SPEC.md section c) plus an optional depth term.

For predicted world points ``p`` of the cells of a batch:

- ``p_cam = world_to_cam @ [p, 1]``, projected with K (``glace_core.geometry_torch.reproject``);
  a prediction is *valid* if its depth is in ``[depth_min, depth_max]`` and its L1 reprojection
  error ``|du| + |dv|`` (z clamped at >= 0.1 for the division) is at most ``hard_clamp``.
- valid cells add ``w * tanh(e / w)``, ``w = (1 - sw) * (soft_clamp - soft_clamp_min) + soft_clamp_min``
  with ``sw = 1 - sqrt(1 - (it / T)^2)`` (the "circle" schedule) — ``(1 - sw) * 50 + 1`` with the
  defaults, as in the reference.
- invalid cells add ``|depth_target * K^-1 [u, v, 1] - p_cam|_1`` (pulls them in front of the camera).
- depth supervision (``depth_weight > 0``), for cells with known z-depth ``d > 0``: ``depth_weight *
  |d * K^-1 [u, v, 1] - p_cam|_1`` in metres. With depth the 3D point is fully determined, which makes
  early training much faster than reprojection alone; the reprojection term stays the main term.

The total is the sum over cells divided by the number of cells.
"""
from __future__ import annotations

import math

import torch

from glace_core.geometry_torch import pixel_rays, reproject

#: Depth (m) at which z is clamped for the division of the projection (the reference's 0.1).
PROJECTION_MIN_DEPTH = 0.1


def dyntanh_clamp(iteration: int, total: int, soft_clamp: float, soft_clamp_min: float) -> float:
    """Soft clamp ``w`` (px) of the circle schedule at ``iteration`` of ``total``."""
    frac = min(max(iteration / max(total, 1), 0.0), 1.0)
    sw = 1.0 - math.sqrt(1.0 - frac * frac)
    return (1.0 - sw) * (soft_clamp - soft_clamp_min) + soft_clamp_min


def pretrain_loss(pred_world: torch.Tensor, world_to_cam: torch.Tensor, K: torch.Tensor, pixels: torch.Tensor,
                  depth: torch.Tensor, soft_clamp: float, hard_clamp: float = 1000.0, depth_min: float = 0.1,
                  depth_max: float = 1000.0, depth_target: float = 10.0,
                  depth_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch and statistics.

    pred_world: (B, 3, h, w) predicted world points; world_to_cam: (B, 3, 4); K: (B, 3, 3);
    pixels: (B, 2, h, w) cell centres (u, v) in pixels; depth: (B, h, w) z-depth in metres (0 = unknown).
    Returns (scalar loss, {"valid_fraction", "median_px", "median_depth_err_m"}).
    """
    b, _, h, w = pred_world.shape
    if world_to_cam.shape != (b, 3, 4) or K.shape != (b, 3, 3):
        raise ValueError(f"world_to_cam must be ({b}, 3, 4) and K ({b}, 3, 3), got "
                         f"{tuple(world_to_cam.shape)} and {tuple(K.shape)}")
    if pixels.shape != (b, 2, h, w) or depth.shape != (b, h, w):
        raise ValueError(f"pixels must be ({b}, 2, {h}, {w}) and depth ({b}, {h}, {w}), got "
                         f"{tuple(pixels.shape)} and {tuple(depth.shape)}")
    p_cam, px = reproject(pred_world.flatten(2), world_to_cam, K, PROJECTION_MIN_DEPTH)  # (B, 3, M), (B, 2, M)
    target_px = pixels.flatten(2).float()
    err = (px - target_px).abs().sum(1)  # (B, M) L1 in pixels
    z_pred = p_cam[:, 2]
    valid = (z_pred >= depth_min) & (z_pred <= depth_max) & (err <= hard_clamp)
    n = err.numel()
    loss_valid = (soft_clamp * torch.tanh(err[valid] / soft_clamp)).sum()
    rays = pixel_rays(target_px, torch.linalg.inv(K.float()))  # (B, 3, M), z = 1
    invalid = ~valid
    loss_invalid = (depth_target * rays - p_cam).abs().sum(1)[invalid].sum()
    total = loss_valid + loss_invalid
    stats = {"valid_fraction": float(valid.float().mean()),
             "median_px": float(err.detach().median())}
    known = depth.flatten(1) > 0
    if known.any():
        depth_err = (depth.flatten(1).unsqueeze(1) * rays - p_cam).abs().sum(1)[known]
        stats["median_depth_err_m"] = float(depth_err.detach().median())
        if depth_weight > 0:
            total = total + depth_weight * depth_err.sum()
    return total / n, stats
