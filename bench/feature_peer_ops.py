"""Numpy building blocks of the feature-matching peer (bench/feature_peer.py): VLAD global
descriptors and known-pose multi-view triangulation. Mutual-nearest-neighbour matching, lifting
keypoints with depth and pose neighbours live in ``glace_core.keypoint_matching`` (the keyframe
refinement uses them too) and are re-exported here.

Conventions are the project's: pixels are continuous (u, v) with the origin at the image's
top-left corner (pixel (i, j) has its centre at (j + 0.5, i + 0.5)); poses are camera-to-world
(4, 4) float64 in OpenCV axes; depth is z-depth in metres, 0 = invalid. Descriptors are float32
rows of unit L2 norm.
"""
from __future__ import annotations

import numpy as np

from glace_core.keypoint_matching import check_rows as _check_rows
from glace_core.keypoint_matching import lift_keypoints, mutual_nn, pose_neighbours, rays  # noqa: F401 (re-exported)


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


# --------------------------------------------------------------------------- 3D points

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
