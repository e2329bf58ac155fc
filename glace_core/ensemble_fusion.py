"""One pose from several candidate heads of an ensemble map: a RANSAC over all their cells at once.

ACE's rule for an ensemble keeps the candidate head with the most RANSAC inliers and drops the
others. Each head was trained on its own cluster of mapping frames, so where a query view is new to
all of them, each head's scene coordinates are off in its own way, and the winner's pose carries
its head's bias. ``fuse_candidates`` pools the correspondences of every candidate, (pixel of cell,
its point from head k) for all cells and heads, into one ``dsac_native.estimate_pose_from_correspondences``:
hypotheses are drawn from and scored on every head's points, and the final refit runs over the
inliers of all of them, so heads that agree on a surface reinforce it and a head that is wrong
there is outvoted (BENCHMARKS.md "Fused candidates").

The pose's statistics (inliers, residuals, covariance) are those of one head: the candidate with the
most inlier cells under the fused pose, so they count cells, as a single head's do, and the
covariance keeps the calibration it was fitted with.
"""
from __future__ import annotations

from dataclasses import dataclass

import dsac_native
import numpy as np

from glace_core.geometry import cell_centres
from glace_core.pose_covariance import reprojection_statistics

#: LocalizerOptions.ensemble_fusion values: "best" (ACE's rule: the candidate with the most inliers) or
#: "union" (one RANSAC over every candidate's cells).
ENSEMBLE_FUSIONS = ("best", "union")


@dataclass
class FusedResult:
    """What the Localizer reads of a solver result, for the fused pose."""

    success: bool
    camera_to_world: np.ndarray  # (4, 4) float64
    inlier_count: int  # inlier cells of ``head`` under the pose
    head: int  # the candidate head whose cells carry the pose's statistics
    scene_coordinates: np.ndarray  # (3, h, w) float32 of ``head``
    head_inliers: list[tuple[int, int]]  # (head, inlier cells under the fused pose) per candidate


def fuse_candidates(candidates: list[tuple[int, np.ndarray]], K: np.ndarray, solver_kwargs: dict,
                    stride: int = 8) -> FusedResult | None:
    """One RANSAC over the cells of every candidate ``[(head, scene coordinates (3, h, w) float32), ...]``
    (all of one image's grid) with ``solver_kwargs`` (``RansacOptions.solver_kwargs()``) and K (3, 3)
    at network resolution. None when the solver finds no pose."""
    if not candidates:
        raise ValueError("fuse_candidates needs at least one candidate head")
    shapes = {sc.shape for _, sc in candidates}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[0] != 3:
        raise ValueError(f"candidate scene coordinates must all be (3, h, w) of one grid, got {sorted(shapes)}")
    _, h, w = next(iter(shapes))
    pixels = cell_centres(h, w, stride).reshape(-1, 2)
    all_pixels = np.ascontiguousarray(np.tile(pixels, (len(candidates), 1)), dtype=np.float64)
    points = np.ascontiguousarray(np.concatenate([sc.reshape(3, -1).T for _, sc in candidates]), dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    result = dsac_native.estimate_pose_from_correspondences(all_pixels, points, K[0, 0], K[1, 1], K[0, 2], K[1, 2],
                                                            **solver_kwargs)
    if not result.success:
        return None
    pose = np.asarray(result.camera_to_world, dtype=np.float64)
    if not np.all(np.isfinite(pose)):
        return None
    threshold = float(solver_kwargs.get("threshold", dsac_native.Options().threshold))
    counts = [(k, reprojection_statistics(sc, pose, K, threshold, stride)["inliers"]) for k, sc in candidates]
    best = max(range(len(candidates)), key=lambda i: counts[i][1])  # ties keep the better-routed head
    return FusedResult(True, pose, counts[best][1], candidates[best][0], candidates[best][1], counts)
