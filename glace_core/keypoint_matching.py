"""Keypoint matching primitives shared by the keyframe refinement (``glace_core.keyframes``) and the
feature-matching peer (bench/feature_peer.py): mutual-nearest-neighbour matching, lifting keypoints
to world points with depth, and mapping frames near a camera.

Conventions are the project's: pixels are continuous (u, v) with the origin at the image's
top-left corner (pixel (i, j) has its centre at (j + 0.5, i + 0.5)); poses are camera-to-world
(4, 4) float64 in OpenCV axes; depth is z-depth in metres, 0 = invalid. Descriptors are float32
rows of unit L2 norm. numpy (the products of matching in torch, their reductions in ``dsac_native``).
"""
from __future__ import annotations

import dsac_native
import numpy as np
import torch

__all__ = ["check_rows", "lift_keypoints", "mutual_nn", "nearest_views", "pose_neighbours", "rays"]


def check_rows(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    """x as an array, checked to be (N, D) (or (N, dim)); the message names it."""
    x = np.asarray(x)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise ValueError(f"{name} must be {want}, got shape {x.shape}")
    return x


def nearest_views(cam_to_world: np.ndarray, query: np.ndarray, k: int, max_rotation_deg: float,
                  exclude: int | None = None) -> np.ndarray:
    """Indices (<= k,) of the cameras ``cam_to_world`` (M, 4, 4) nearest to the camera ``query``
    (4, 4) by centre, among those whose optical axis is within ``max_rotation_deg`` of its own,
    nearest first; ``exclude``: an index never returned."""
    poses = np.asarray(cam_to_world, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"cam_to_world must be (M, 4, 4), got shape {poses.shape}")
    query = np.asarray(query, dtype=np.float64)
    if query.shape != (4, 4):
        raise ValueError(f"query must be a (4, 4) camera-to-world pose, got shape {query.shape}")
    cos = np.clip(poses[:, :3, 2] @ query[:3, 2], -1.0, 1.0)
    dist = np.linalg.norm(poses[:, :3, 3] - query[:3, 3], axis=1)
    ok = np.degrees(np.arccos(cos)) <= max_rotation_deg
    if exclude is not None:
        ok[exclude] = False
    order = np.argsort(dist, kind="stable")
    return order[ok[order]][:k]


def pose_neighbours(cam_to_world: np.ndarray, i: int, k: int, max_rotation_deg: float) -> np.ndarray:
    """Indices (<= k,) of the frames nearest to frame i's camera centre among those whose optical
    axis is within ``max_rotation_deg`` of frame i's (pairs from known poses), nearest first."""
    poses = np.asarray(cam_to_world, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"cam_to_world must be (M, 4, 4), got shape {poses.shape}")
    return nearest_views(poses, poses[i], k, max_rotation_deg, exclude=i)


def mutual_nn(desc_a: np.ndarray, desc_b: np.ndarray, ratio: float = 1.0, min_cosine: float = -1.0):
    """Mutual nearest neighbours between unit descriptors (Na, D) and (Nb, D): pairs (i, j) where
    j is i's most similar row of b and no row of a is more similar to j than i (ties count).

    ratio < 1 adds Lowe's test on Euclidean distances (best < ratio * second best, within b);
    min_cosine drops pairs whose cosine similarity is lower. Returns (ia (M,), ib (M,)) int64."""
    desc_a = check_rows(desc_a, "desc_a")
    desc_b = check_rows(desc_b, "desc_b", desc_a.shape[1])
    if len(desc_a) == 0 or len(desc_b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # the product in torch, not numpy: numpy's OpenBLAS threads spin after a product and take the cores from
    # the network of the next frame (the node's encoder ran 16 -> 23 ms with the refinement matching in numpy);
    # the maxima in dsac_native: torch's row maxima with indices and column maxima took 2-3 and 8 ms for
    # 1024 x 3072 on 2 cores, the native pass 1.4 ms (BENCHMARKS.md 2026-12-05 "Cheaper refinement")
    sim = torch.from_numpy(np.ascontiguousarray(desc_a, dtype=np.float32)) @ \
        torch.from_numpy(np.ascontiguousarray(desc_b, dtype=np.float32)).T
    best, ab, column_max = (torch.from_numpy(x) for x in dsac_native.row_column_maxima(sim.numpy()))
    keep = (ab >= 0) & (best >= column_max[ab.clamp(min=0)]) & (best >= min_cosine)
    if ratio < 1.0 and len(desc_b) > 1:
        second = sim.topk(2, dim=1).values[:, 1]
        d1 = torch.sqrt(torch.clamp(2.0 - 2.0 * best, min=0.0))
        d2 = torch.sqrt(torch.clamp(2.0 - 2.0 * second, min=0.0))
        keep &= d1 < ratio * d2
    ia = torch.nonzero(keep).flatten()
    return ia.numpy().astype(np.int64), ab[ia].numpy().astype(np.int64)


def rays(pixels: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera rays (N, 3) with z = 1 of continuous pixels (N, 2) under K (3, 3)."""
    pixels = check_rows(pixels, "pixels", 2).astype(np.float64)
    K = np.asarray(K, dtype=np.float64)
    return np.column_stack([(pixels[:, 0] - K[0, 2]) / K[0, 0], (pixels[:, 1] - K[1, 2]) / K[1, 1],
                            np.ones(len(pixels))])


def lift_keypoints(pixels: np.ndarray, image_hw: tuple[int, int], depth: np.ndarray, K: np.ndarray,
                   cam_to_world: np.ndarray, edge_tolerance: float = 0.05) -> np.ndarray:
    """World points (N, 3) float64 of keypoints (N, 2) (continuous pixels of an image of size
    ``image_hw``) from its z-depth (Hd, Wd) metres, which may have another resolution; NaN where
    invalid.

    The depth is read at the depth pixel that contains the keypoint and applied along the
    keypoint's own ray, so a keypoint at a pixel centre gets exactly
    ``glace_core.geometry.backproject``'s point. A keypoint whose 3x3 depth neighbourhood has an
    invalid pixel or spans more than ``edge_tolerance`` of its depth (an occlusion edge) is invalid."""
    pixels = check_rows(pixels, "pixels", 2).astype(np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    hd, wd = depth.shape
    h, w = image_hw
    col = np.clip(np.floor(pixels[:, 0] * (wd / w)).astype(np.int64), 0, wd - 1)
    row = np.clip(np.floor(pixels[:, 1] * (hd / h)).astype(np.int64), 0, hd - 1)
    padded = np.pad(np.where(np.isfinite(depth), depth, 0.0), 1)
    window = np.stack([padded[row + 1 + dr, col + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=1)
    z = window[:, 4]
    valid = (window.min(axis=1) > 0) & (window.max(axis=1) - window.min(axis=1) <= edge_tolerance * z)
    cam = rays(pixels, K) * z[:, None]
    T = np.asarray(cam_to_world, dtype=np.float64)
    world = cam @ T[:3, :3].T + T[:3, 3]
    world[~valid] = np.nan
    return world
