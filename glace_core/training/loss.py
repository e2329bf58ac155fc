"""The reprojection loss of map training (GLACE_SPEC.md section c).

Scene coordinates predicted in the world frame are moved into the camera with the ground-truth
world-to-camera pose and projected with K (``glace_core.geometry_torch.reproject``). The error of a
cell is the L1 pixel distance ``|du| + |dv|`` to its target pixel. A prediction is *invalid* if its
camera depth is below ``depth_min`` or above ``depth_max`` or its error exceeds ``hard_clamp``;
invalid predictions are pulled towards the point at ``depth_target`` along the cell's ray (L1 in
camera space). Valid ones get a robust loss of the error (``robust_reprojection_loss``). The total
is ``(sum valid + sum invalid) / batch``. ``reprojection_terms`` gives the loss of each cell without
host synchronisation (the trainer sums it per head); ``reprojection_loss`` the batch mean and stats.

Depth supervision (ours, ``use_depth``; the paper trains from RGB and poses alone): a cell with a
known z-depth ``d`` > 0 also gets ``depth_weight * |p_cam - d * ray|_1``, the L1 distance (m) of its
camera-frame prediction to the depth point on its ray, and no pull towards ``depth_target`` when
invalid (the depth point is the better target). Cells without depth keep the loss above.
"""
from __future__ import annotations

import math

import torch

from glace_core.geometry_torch import pixel_rays, reproject
from glace_core.training.config import LOSS_SCHEDULES, LOSS_TYPES


def schedule_weight(iteration: int, total: int, schedule: str = "circle") -> float:
    """How far the soft clamp has moved from its start to its end, in [0, 1].

    circle: ``1 - sqrt(1 - (it/T)^2)`` (slow start, fast end); linear: ``it/T``.
    """
    if schedule not in LOSS_SCHEDULES:
        raise ValueError(f"loss schedule must be one of {LOSS_SCHEDULES}, got {schedule!r}")
    if total <= 0:
        raise ValueError(f"total iterations must be > 0, got {total}")
    ratio = min(max(iteration / total, 0.0), 1.0)
    return 1.0 - math.sqrt(1.0 - ratio * ratio) if schedule == "circle" else ratio


def dynamic_soft_clamp(iteration: int, total: int, soft_clamp: float, soft_clamp_min: float,
                       schedule: str = "circle") -> float:
    """dyntanh clamp ``w = (1 - sw) * soft_clamp + soft_clamp_min``: ``soft_clamp + min`` at it 0, ``min`` at it T."""
    return (1.0 - schedule_weight(iteration, total, schedule)) * soft_clamp + soft_clamp_min


def robust_reprojection_terms(errors: torch.Tensor, loss_type: str, soft_clamp: float, soft_clamp_min: float = 1.0,
                              iteration: int = 0, total: int = 1, schedule: str = "circle") -> torch.Tensor:
    """The robust loss of each error: ``errors`` (...) (pixels, >= 0) -> (...).

    l1: ``e``; l1+sqrt: ``e`` up to the clamp c, ``sqrt(c e)`` beyond; l1+log: ``e`` up to c,
    ``c + c log(e / c)`` beyond (continuous, slope 1 at c); tanh: ``c tanh(e / c)``;
    dyntanh: tanh with ``c = dynamic_soft_clamp(iteration, total, ...)``.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"repro_loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    c = float(soft_clamp)
    if loss_type == "l1":
        return errors
    if loss_type == "l1+sqrt":
        return torch.where(errors > c, torch.sqrt(c * errors.clamp(min=c)), errors)
    if loss_type == "l1+log":
        return torch.where(errors > c, c + c * torch.log(errors.clamp(min=c) / c), errors)
    if loss_type == "dyntanh":
        c = dynamic_soft_clamp(iteration, total, soft_clamp, soft_clamp_min, schedule)
    return c * torch.tanh(errors / c)


def robust_reprojection_loss(errors: torch.Tensor, loss_type: str, soft_clamp: float, soft_clamp_min: float = 1.0,
                             iteration: int = 0, total: int = 1, schedule: str = "circle") -> torch.Tensor:
    """Sum of the robust loss (``robust_reprojection_terms``) over ``errors`` (M,): a scalar."""
    return robust_reprojection_terms(errors, loss_type, soft_clamp, soft_clamp_min, iteration, total, schedule).sum()


def reprojection_terms(pred_world: torch.Tensor, world_to_cam: torch.Tensor, K: torch.Tensor, K_inv: torch.Tensor,
                       target_px: torch.Tensor, *, loss_type: str = "dyntanh", soft_clamp: float = 50.0,
                       soft_clamp_min: float = 1.0, hard_clamp: float = 1000.0, depth_min: float = 0.1,
                       depth_max: float = 1000.0, depth_target: float = 10.0, iteration: int = 0, total: int = 1,
                       schedule: str = "circle", target_depth: torch.Tensor | None = None,
                       depth_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss of each cell, without host synchronisation.

    pred_world: (B, 3) predicted world points; world_to_cam: (B, 3, 4); K, K_inv: (B, 3, 3);
    target_px: (B, 2) pixel of each cell (continuous coordinates, pixel centres at i + 0.5);
    target_depth: optional (B,) z-depth (m) of each cell, 0 = unknown (used when depth_weight > 0).
    Returns ``(loss (B,), L1 pixel error (B,), valid (B,) bool)``: the robust loss of the error
    where valid, the L1 distance to the point at ``depth_target`` on the cell's ray where not, and
    for cells with a depth the weighted L1 distance to their depth point (module docstring).
    """
    b = pred_world.shape[0]
    for name, t, shape in (("pred_world", pred_world, (b, 3)), ("world_to_cam", world_to_cam, (b, 3, 4)),
                           ("K", K, (b, 3, 3)), ("K_inv", K_inv, (b, 3, 3)), ("target_px", target_px, (b, 2))):
        if tuple(t.shape) != shape:
            raise ValueError(f"reprojection_loss: {name} must have shape {shape}, got {tuple(t.shape)}")
    if target_depth is not None and tuple(target_depth.shape) != (b,):
        raise ValueError(f"reprojection_loss: target_depth must have shape {(b,)}, got {tuple(target_depth.shape)}")
    cam, px = reproject(pred_world.unsqueeze(2), world_to_cam, K, depth_min)  # (B, 3, 1), (B, 2, 1)
    pred_cam, pred_px = cam[:, :, 0], px[:, :, 0]
    z = pred_cam[:, 2]
    errors = (pred_px - target_px.float()).abs().sum(dim=1)  # L1 pixel error, (B,)

    valid = ~((z < depth_min) | (z > depth_max) | (errors > hard_clamp))
    valid_loss = robust_reprojection_terms(errors, loss_type, soft_clamp, soft_clamp_min, iteration, total, schedule)
    rays = pixel_rays(target_px.unsqueeze(2), K_inv)[:, :, 0]  # (B, 3), z = 1
    invalid_loss = (depth_target * rays - pred_cam).abs().sum(dim=1)
    terms = torch.where(valid, valid_loss, invalid_loss)
    if target_depth is not None and depth_weight > 0:
        known = target_depth > 0
        depth_loss = depth_weight * (target_depth.unsqueeze(1) * rays - pred_cam).abs().sum(dim=1)
        terms = torch.where(known, torch.where(valid, valid_loss, 0.0) + depth_loss, terms)
    return terms, errors, valid


def reprojection_loss(pred_world: torch.Tensor, world_to_cam: torch.Tensor, K: torch.Tensor, K_inv: torch.Tensor,
                      target_px: torch.Tensor, **options) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of a batch: the mean of ``reprojection_terms`` (same arguments and options).

    Returns ``(loss scalar, stats)`` with stats ``valid_fraction`` and ``median_px`` (over valid cells).
    """
    terms, errors, valid = reprojection_terms(pred_world, world_to_cam, K, K_inv, target_px, **options)
    b = pred_world.shape[0]
    with torch.no_grad():
        n_valid = int(valid.sum())
        median = float(errors[valid].median()) if n_valid else float("nan")
    return terms.sum() / b, {"valid_fraction": n_valid / max(b, 1), "median_px": median}
