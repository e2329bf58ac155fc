"""Numpy building blocks of the feature-matching peer (bench/feature_peer.py): VLAD global
descriptors, mutual-nearest-neighbour matching, lifting keypoints with depth, and known-pose
multi-view triangulation.

Conventions are the project's: pixels are continuous (u, v) with the origin at the image's
top-left corner (pixel (i, j) has its centre at (j + 0.5, i + 0.5)); poses are camera-to-world
(4, 4) float64 in OpenCV axes; depth is z-depth in metres, 0 = invalid. Descriptors are float32
rows of unit L2 norm. No package imports beyond numpy.
"""
from __future__ import annotations

import numpy as np


def _check_rows(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise ValueError(f"{name} must be {want}, got shape {x.shape}")
    return x


# --------------------------------------------------------------------------- retrieval

def train_codebook(descriptors: np.ndarray, words: int, seed: int = 0, iterations: int = 10,
                   max_samples: int = 50000) -> np.ndarray:
    """Spherical k-means codebook (words, D) float32 of unit rows from descriptors (N, D).

    Deterministic for a seed: ``max_samples`` rows are drawn, the first centres are distinct
    drawn rows, then ``iterations`` rounds of assign-by-largest-dot-product and renormalised
    means (an empty word keeps its centre)."""
    desc = _check_rows(descriptors, "descriptors").astype(np.float32)
    if words < 1:
        raise ValueError(f"words must be >= 1, got {words}")
    if len(desc) < words:
        raise ValueError(f"a codebook of {words} words needs at least {words} descriptors, got {len(desc)}")
    rng = np.random.default_rng(seed)
    if len(desc) > max_samples:
        desc = desc[np.sort(rng.choice(len(desc), max_samples, replace=False))]
    centres = desc[np.sort(rng.choice(len(desc), words, replace=False))].copy()
    for _ in range(iterations):
        assign = np.argmax(desc @ centres.T, axis=1)
        sums = np.zeros_like(centres)
        np.add.at(sums, assign, desc)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        filled = norms[:, 0] > 1e-12
        centres[filled] = sums[filled] / norms[filled]
    return centres


def vlad(descriptors: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """VLAD vector (words * D,) float32 of one image's descriptors (N, D) against codebook (words, D).

    Residuals to the nearest word are summed per word, each word's sum is L2-normalised
    (intra-normalisation), then signed square root and a final L2 normalisation. An image without
    descriptors gives zeros. With one word this is the normalised mean residual (mean pooling)."""
    codebook = _check_rows(codebook, "codebook")
    desc = _check_rows(descriptors, "descriptors", codebook.shape[1]).astype(np.float32)
    out = np.zeros(codebook.shape, dtype=np.float32)
    if len(desc):
        assign = np.argmax(desc @ codebook.T, axis=1)
        np.add.at(out, assign, desc - codebook[assign])
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    out = np.sign(out) * np.sqrt(np.abs(out))
    flat = out.reshape(-1)
    norm = float(np.linalg.norm(flat))
    return flat / norm if norm > 0 else flat


def top_k(database: np.ndarray, query: np.ndarray, k: int, exclude: int | None = None) -> np.ndarray:
    """Indices (<= k,) of the database rows (M, G) with the largest dot product with query (G,),
    best first; ties go to the lower index. ``exclude``: a row never returned (the query itself)."""
    database = _check_rows(database, "database")
    sims = database @ np.asarray(query, dtype=database.dtype)
    order = np.argsort(-sims, kind="stable")
    if exclude is not None:
        order = order[order != exclude]
    return order[:k]


def pose_neighbours(cam_to_world: np.ndarray, i: int, k: int, max_rotation_deg: float) -> np.ndarray:
    """Indices (<= k,) of the frames nearest to frame i's camera centre among those whose optical
    axis is within ``max_rotation_deg`` of frame i's (pairs from known poses), nearest first."""
    poses = np.asarray(cam_to_world, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"cam_to_world must be (M, 4, 4), got shape {poses.shape}")
    axes = poses[:, :3, 2]
    cos = np.clip(axes @ axes[i], -1.0, 1.0)
    dist = np.linalg.norm(poses[:, :3, 3] - poses[i, :3, 3], axis=1)
    ok = np.degrees(np.arccos(cos)) <= max_rotation_deg
    ok[i] = False
    order = np.argsort(dist, kind="stable")
    return order[ok[order]][:k]


# --------------------------------------------------------------------------- matching

def mutual_nn(desc_a: np.ndarray, desc_b: np.ndarray, ratio: float = 1.0, min_cosine: float = -1.0):
    """Mutual nearest neighbours between unit descriptors (Na, D) and (Nb, D): pairs (i, j) where
    j is i's most similar row of b and no row of a is more similar to j than i (ties count).

    ratio < 1 adds Lowe's test on Euclidean distances (best < ratio * second best, within b);
    min_cosine drops pairs whose cosine similarity is lower. Returns (ia (M,), ib (M,)) int64."""
    desc_a = _check_rows(desc_a, "desc_a")
    desc_b = _check_rows(desc_b, "desc_b", desc_a.shape[1])
    if len(desc_a) == 0 or len(desc_b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sim = desc_a @ desc_b.T
    ab = np.argmax(sim, axis=1)
    ia = np.arange(len(desc_a))
    best = sim[ia, ab]
    keep = (best >= sim.max(axis=0)[ab]) & (best >= min_cosine)  # max over axis 0 is fast, argmax is not
    if ratio < 1.0 and len(desc_b) > 1:
        sim[ia, ab] = -np.inf
        second = sim.max(axis=1)
        d1 = np.sqrt(np.maximum(2.0 - 2.0 * best, 0.0))
        d2 = np.sqrt(np.maximum(2.0 - 2.0 * second, 0.0))
        keep &= d1 < ratio * d2
    return ia[keep].astype(np.int64), ab[keep].astype(np.int64)


# --------------------------------------------------------------------------- 3D points

def rays(pixels: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera rays (N, 3) with z = 1 of continuous pixels (N, 2) under K (3, 3)."""
    pixels = _check_rows(pixels, "pixels", 2).astype(np.float64)
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
    pixels = _check_rows(pixels, "pixels", 2).astype(np.float64)
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


def triangulate(observations: np.ndarray, Ks: np.ndarray, cam_to_world: np.ndarray, max_error: float,
                min_angle_deg: float) -> np.ndarray:
    """Known-pose multi-view triangulation of N tracks, each seen in view 0 (the reference) and in
    some of views 1..V-1: world points (N, 3) float64, NaN where it failed.

    observations: (N, V, 2) continuous pixels, NaN where a view has no observation; Ks (V, 3, 3);
    cam_to_world (V, 4, 4). Linear (DLT) triangulation in normalised camera coordinates, centred
    on the reference camera; while the worst reprojection error exceeds ``max_error`` pixels the
    worst view is dropped and the point solved again (the reference view is never dropped: the
    track fails instead). A point needs two views, positive depth in each, every error within
    ``max_error`` and a largest ray angle to the reference camera of at least ``min_angle_deg``."""
    obs = np.asarray(observations, dtype=np.float64)
    if obs.ndim != 3 or obs.shape[2] != 2:
        raise ValueError(f"observations must be (N, V, 2), got shape {obs.shape}")
    n, v = obs.shape[:2]
    Ks = np.asarray(Ks, dtype=np.float64)
    poses = np.asarray(cam_to_world, dtype=np.float64)
    if Ks.shape != (v, 3, 3) or poses.shape != (v, 4, 4):
        raise ValueError(f"Ks must be ({v}, 3, 3) and cam_to_world ({v}, 4, 4), got {Ks.shape} and {poses.shape}")
    centres = poses[:, :3, 3]
    origin = centres[0]
    R_wc = np.swapaxes(poses[:, :3, :3], 1, 2)  # world-to-camera rotations
    t_wc = -np.einsum("vij,vj->vi", R_wc, centres - origin)  # translations in the origin-centred world
    P = np.concatenate([R_wc, t_wc[:, :, None]], axis=2)  # (V, 3, 4)
    norm = np.stack([(obs[..., 0] - Ks[None, :, 0, 2]) / Ks[None, :, 0, 0],
                     (obs[..., 1] - Ks[None, :, 1, 2]) / Ks[None, :, 1, 1]], axis=-1)  # (N, V, 2)
    active = np.all(np.isfinite(obs), axis=2)
    norm = np.where(active[..., None], norm, 0.0)
    rows_x = norm[..., 0, None] * P[None, :, 2] - P[None, :, 0]  # (N, V, 4)
    rows_y = norm[..., 1, None] * P[None, :, 2] - P[None, :, 1]
    points = np.full((n, 3), np.nan)
    pending = active[:, 0] & (active.sum(axis=1) >= 2)
    for _ in range(v - 1):
        idx = np.nonzero(pending)[0]
        if idx.size == 0:
            break
        weight = active[idx][..., None]
        A = np.concatenate([rows_x[idx] * weight, rows_y[idx] * weight], axis=1)  # (n', 2V, 4)
        X = np.linalg.svd(A)[2][:, -1, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            X = X[:, :3] / X[:, 3:4]
            cam = np.einsum("vij,nj->nvi", R_wc, X) + t_wc[None]  # (n', V, 3)
            proj = cam[..., :2] / cam[..., 2:3]
            err = np.linalg.norm((proj - norm[idx]) * Ks[None, :, [0, 1], [0, 1]], axis=2)
        err = np.where(cam[..., 2] > 1e-6, err, np.inf)
        err = np.where(active[idx], np.nan_to_num(err, nan=np.inf), -1.0)
        worst = np.argmax(err, axis=1)
        ok = err[np.arange(idx.size), worst] <= max_error
        points[idx[ok]] = X[ok]
        pending[idx[ok]] = False
        bad = idx[~ok]
        drop_ref = worst[~ok] == 0
        pending[bad[drop_ref]] = False
        active[bad[~drop_ref], worst[~ok][~drop_ref]] = False
        pending &= active.sum(axis=1) >= 2
    solved = np.all(np.isfinite(points), axis=1)
    to_ref = -points[:, None, :]  # ray from the point to the reference camera (at the origin)
    to_view = (centres - origin)[None] - points[:, None, :]
    cos = np.sum(to_ref * to_view, axis=2) / np.maximum(
        np.linalg.norm(to_ref, axis=2) * np.linalg.norm(to_view, axis=2), 1e-12)
    angle = np.degrees(np.arccos(np.clip(np.where(active, cos, 1.0), -1.0, 1.0))).max(axis=1, initial=0.0)
    good = solved & (angle >= min_angle_deg)
    out = np.full((n, 3), np.nan)
    out[good] = points[good] + origin
    return out
