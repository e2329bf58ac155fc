"""Refine a regressed pose against a map's keyframes (``glace_core.keyframes``).

The scene coordinate regression's pose picks the ``keyframes`` mapping frames whose cameras are nearest
to it (and look within ``max_view_angle`` of the same way). The query's XFeat keypoints are matched to
their keypoints, all together, by mutual nearest neighbours with a cosine floor (XFeat's own matcher),
and ``dsac_native.estimate_pose_from_correspondences`` (P3P RANSAC, then refinement on the inliers)
solves the pose. The refined pose replaces the regressed one when it has at least
``min_inliers`` inliers and lies within ``max_correction_m`` / ``max_correction_deg`` of it.

When that fails (the regressed pose was too far off for its nearest keyframes to see what the query
sees), ``retrieval`` tries the ``keyframes`` mapping frames whose routing descriptors (the encoder features
average-pooled over a 2x2 grid, as the ensemble routes with) look most like the query's; a pose with
``min_inliers`` inliers from them replaces the regressed one however far it moves it.

On the hard-scene bench (BENCHMARKS.md "Keyframe refinement", issue 18) this takes the median error from
centimetres to millimetres wherever the regressed pose is within reach of the right keyframes.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from glace_core.geometry import invert_pose, pose_errors, project, transform_points
from glace_core.keyframes import Keyframes
from glace_core.keypoint_matching import check_rows, mutual_nn, nearest_views
from glace_core.pose_covariance import CovarianceCalibration

#: The covariance calibration of refined poses (``covariance_from_residuals`` of the keypoint inliers), chosen
#: with ``bench/covariance.py`` on the six held-out bench scenes (BENCHMARKS.md "Keyframe refinement"): floors
#: of 2 mm and 0.1 deg, n_eff 100: pooled median d^2 0.43, 97 % inside the chi^2(6) 95 % bound. Conservative
#: on purpose: the refined errors are heavy-tailed, and an n_eff that reaches the target median d^2 of 3.3
#: leaves only 72 % inside (1 mm / 0.05 deg floors, n_eff 1461).
REFINED_COVARIANCE = CovarianceCalibration(effective_observations=100.0, min_position_std_m=0.002,
                                           min_rotation_std_rad=math.radians(0.1))


#: the inlier threshold never drops below this (px) on small images: XFeat's keypoints move by about a pixel
MIN_THRESHOLD_PX = 1.0


@dataclass(frozen=True)
class RefinementOptions:
    """Options of :func:`refine_pose`; ``enabled`` False (or a map without keyframes) skips it."""

    enabled: bool = True
    keyframes: int = 3  # nearest mapping frames matched per query
    max_view_angle: float = 60.0  # degrees between a keyframe's optical axis and the regressed pose's
    max_keypoints: int = 1024  # query keypoints (strongest first)
    min_cosine: float = 0.82  # cosine floor of a match (XFeat's matcher)
    #: RANSAC inlier threshold, px of a 480 px shorter side (``refine_pose``'s pixel_scale scales it to the image):
    #: on the bench 1-3 px are alike, 6 px (the peer's) lets near-matches of repeated textures pull the pose
    threshold: float = 3.0
    hypotheses: int = 64  # RANSAC hypotheses
    min_inliers: int = 30  # fewer: the regressed pose stays
    max_correction_m: float = 1.0  # a refined pose further from the regressed one than this is refused...
    max_correction_deg: float = 30.0  # ...or turned by more than this
    #: when the nearest keyframes give no pose (or a correction over the limits), try the keyframes whose
    #: routing descriptors look most like the query's: the regressed pose was metres off
    retrieval: bool = True
    retrieved_keyframes: int = 6  # keyframes the fallback matches
    #: the calibration of a refined pose's covariance (from its keypoint inliers)
    covariance: CovarianceCalibration = REFINED_COVARIANCE

    def __post_init__(self):
        for name in ("keyframes", "retrieved_keyframes", "max_keypoints", "hypotheses", "min_inliers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"refinement {name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("max_view_angle", "threshold", "max_correction_m", "max_correction_deg"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"refinement {name} must be a finite number > 0, got {value!r}")
        if not -1.0 <= float(self.min_cosine) <= 1.0:
            raise ValueError(f"refinement min_cosine must be in [-1, 1], got {self.min_cosine!r}")


@dataclass
class Refinement:
    """What :func:`refine_pose` did. ``camera_to_world`` (4, 4) is the refined pose, or None when the
    regressed pose stays (``reason`` says why)."""

    camera_to_world: np.ndarray | None
    inliers: int = 0
    matches: int = 0
    keyframes: list[int] = field(default_factory=list)
    correction_m: float = float("nan")  # distance of the refined pose from the regressed one
    correction_deg: float = float("nan")
    reason: str = ""
    #: where the keyframes came from: "nearest" (to the regressed pose) or "retrieved" (most similar; the
    #: regressed pose was too far off to find them); "" when not applied
    source: str = ""
    #: the inliers of the refined pose: pixels (n, 2), world points (n, 3), reprojection errors (n,) px
    inlier_pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    inlier_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    inlier_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def applied(self) -> bool:
        return self.camera_to_world is not None


def _solve(keyframes: Keyframes, frames: list[int], pixels: np.ndarray, query: np.ndarray, K: np.ndarray,
           threshold: float, opt: RefinementOptions, seed: int) -> tuple[np.ndarray | None, int, int, str, tuple]:
    """(pose or None, inliers, matches, why not, (inlier pixels, world points, errors)) of the query's
    keypoints against keyframes ``frames``."""
    import dsac_native

    desc, points = keyframes.frames(frames)
    iq, ik = mutual_nn(query, desc, 1.0, opt.min_cosine)  # one product over the keyframes' keypoints together
    px = np.ascontiguousarray(pixels[iq], dtype=np.float64)
    pts = np.ascontiguousarray(points[ik], dtype=np.float64)
    none = (np.zeros((0, 2)), np.zeros((0, 3)), np.zeros(0))
    if len(px) < max(4, opt.min_inliers):
        return None, 0, len(px), f"{len(px)} matches", none
    result = dsac_native.estimate_pose_from_correspondences(
        px, pts, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
        hypotheses=opt.hypotheses, threshold=threshold, seed=seed)
    inliers = int(result.inlier_count) if result.success else 0
    pose = np.asarray(result.camera_to_world, dtype=np.float64) if result.success else None
    if pose is None or inliers < opt.min_inliers or not np.all(np.isfinite(pose)):
        return None, inliers, len(px), f"{inliers} inliers of {len(px)} matches", none
    proj, _ = project(pts, invert_pose(pose), K)
    err = np.hypot(*(proj - px).T)
    keep = err < threshold  # NaN errors (behind the camera) are not inliers
    return pose, int(keep.sum()), len(px), "", (px[keep], pts[keep], err[keep])


def refine_pose(keyframes: Keyframes, pixels: np.ndarray, descriptors: np.ndarray, K: np.ndarray,
                camera_to_world: np.ndarray, options: RefinementOptions | None = None, seed: int = 0,
                pixel_scale: float = 1.0,
                query_global: np.ndarray | Callable[[], np.ndarray] | None = None) -> Refinement:
    """Refine ``camera_to_world`` (4, 4) of a query with keypoints ``pixels`` (N, 2) (continuous, of the
    image ``K`` (3, 3) belongs to) and unit ``descriptors`` (N, D) against ``keyframes``.
    pixel_scale: the image's shorter side / 480 (the threshold is in px of a 480 px side; at least
    MIN_THRESHOLD_PX). query_global: the query's routing descriptor (G,) (``head_ensemble.routing_descriptor``),
    for the fallback to the keyframes that look most like it (``RefinementOptions.retrieval``), or a function
    that returns it, called only when the fallback runs."""
    opt = options or RefinementOptions()
    pixels = check_rows(pixels, "keypoint pixels", 2)
    descriptors = check_rows(descriptors, "keypoint descriptors", keyframes.descriptors.shape[1])
    if len(pixels) != len(descriptors):
        raise ValueError(f"{len(pixels)} keypoint pixels but {len(descriptors)} descriptors")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got shape {K.shape}")
    query = np.ascontiguousarray(descriptors[:opt.max_keypoints], dtype=np.float32)
    pixels = pixels[:opt.max_keypoints]
    threshold = max(opt.threshold * float(pixel_scale), MIN_THRESHOLD_PX)
    near = [int(j) for j in nearest_views(keyframes.poses, camera_to_world, opt.keyframes, opt.max_view_angle)]
    out = Refinement(None, keyframes=near, reason=f"no keyframe looks within {opt.max_view_angle:g} deg of the pose")
    if near:
        pose, inliers, matches, why, found = _solve(keyframes, near, pixels, query, K, threshold, opt, seed)
        out = Refinement(None, inliers, matches, near, reason=why)
        if pose is not None:
            dt, dr = pose_errors(pose, camera_to_world)
            if dt <= opt.max_correction_m and dr <= opt.max_correction_deg:
                return Refinement(pose, inliers, matches, near, dt, dr, "", "nearest", *found)
            out = Refinement(None, inliers, matches, near, dt, dr,
                             reason=f"the refined pose is {dt:.2f} m / {dr:.1f} deg from the regressed one")
    if not (opt.retrieval and query_global is not None and keyframes.global_descriptors is not None):
        return out
    g = np.asarray(query_global() if callable(query_global) else query_global, dtype=np.float32).reshape(-1)
    if g.shape[0] != keyframes.global_descriptors.shape[1]:
        raise ValueError(f"query_global has {g.shape[0]} values, the keyframes' descriptors "
                         f"{keyframes.global_descriptors.shape[1]}")
    order = np.argsort(-(keyframes.global_descriptors.astype(np.float32) @ g), kind="stable")
    similar = [int(j) for j in order[:opt.retrieved_keyframes]]
    if sorted(similar) == sorted(near):
        return out
    pose, inliers, matches, why, found = _solve(keyframes, similar, pixels, query, K, threshold, opt, seed)
    if pose is None:
        return Refinement(None, inliers, matches, similar, out.correction_m, out.correction_deg,
                          reason=f"{out.reason}; the most similar keyframes: {why}")
    dt, dr = pose_errors(pose, camera_to_world)
    return Refinement(pose, inliers, matches, similar, dt, dr, "", "retrieved", *found)


def keypoint_statistics(refinement: Refinement, camera_to_world: np.ndarray) -> dict:
    """``pose_covariance.reprojection_statistics``'s dict for the keypoint inliers of an applied
    ``refinement`` under ``camera_to_world`` (4, 4): inliers, valid (the matches), mean_error_px,
    median_depth_m, pixels (n, 2), camera_points (n, 3), errors (n,)."""
    cam = transform_points(invert_pose(camera_to_world), refinement.inlier_points)
    n = len(cam)
    return {"inliers": n, "valid": int(refinement.matches),
            "mean_error_px": float(refinement.inlier_errors.mean()) if n else float("nan"),
            "median_depth_m": float(np.median(cam[:, 2])) if n else float("nan"),
            "pixels": refinement.inlier_pixels, "camera_points": cam, "errors": refinement.inlier_errors}
