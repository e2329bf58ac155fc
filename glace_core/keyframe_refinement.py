"""Refine a regressed pose against a map's keyframes (``glace_core.keyframes``).

The scene coordinate regression's pose picks the ``keyframes`` mapping frames whose cameras are nearest
to it (and look within ``max_view_angle`` of the same way). The query's XFeat keypoints are matched to
their keypoints together by mutual nearest neighbours with a cosine floor (XFeat's own matcher), and ``dsac_native.estimate_pose_from_correspondences`` (P3P RANSAC, then refinement on the
inliers) solves the pose. The refined pose replaces the regressed one when it has at least
``min_inliers`` inliers and lies within ``max_correction_m`` / ``max_correction_deg`` of it: the
keyframes were chosen by the regressed pose, so a refined pose far from it has matched the wrong part of
the map.

On the hard-scene bench (BENCHMARKS.md "Keyframe refinement", issue 18) this takes the median error from
centimetres to millimetres wherever the regressed pose is within reach of the right keyframes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glace_core.geometry import pose_errors
from glace_core.keyframes import Keyframes
from glace_core.keypoint_matching import check_rows, mutual_nn, nearest_views


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

    def __post_init__(self):
        for name in ("keyframes", "max_keypoints", "hypotheses", "min_inliers"):
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

    @property
    def applied(self) -> bool:
        return self.camera_to_world is not None


def refine_pose(keyframes: Keyframes, pixels: np.ndarray, descriptors: np.ndarray, K: np.ndarray,
                camera_to_world: np.ndarray, options: RefinementOptions | None = None, seed: int = 0,
                pixel_scale: float = 1.0) -> Refinement:
    """Refine ``camera_to_world`` (4, 4) of a query with keypoints ``pixels`` (N, 2) (continuous, of the
    image ``K`` (3, 3) belongs to) and unit ``descriptors`` (N, D) against ``keyframes``.
    pixel_scale: the image's shorter side / 480 (the threshold is in px of a 480 px side; at least
    MIN_THRESHOLD_PX)."""
    import dsac_native

    opt = options or RefinementOptions()
    pixels = check_rows(pixels, "keypoint pixels", 2)
    descriptors = check_rows(descriptors, "keypoint descriptors", keyframes.descriptors.shape[1])
    if len(pixels) != len(descriptors):
        raise ValueError(f"{len(pixels)} keypoint pixels but {len(descriptors)} descriptors")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got shape {K.shape}")
    near = [int(j) for j in nearest_views(keyframes.poses, camera_to_world, opt.keyframes, opt.max_view_angle)]
    if not near:
        return Refinement(None, reason=f"no keyframe looks within {opt.max_view_angle:g} deg of the pose")
    query = np.ascontiguousarray(descriptors[:opt.max_keypoints], dtype=np.float32)
    desc, points = keyframes.frames(near)
    iq, ik = mutual_nn(query, desc, 1.0, opt.min_cosine)  # one product over the keyframes' keypoints together
    px = np.ascontiguousarray(pixels[:opt.max_keypoints][iq], dtype=np.float64)
    pts = np.ascontiguousarray(points[ik], dtype=np.float64)
    if len(px) < max(4, opt.min_inliers):
        return Refinement(None, matches=len(px), keyframes=near, reason=f"{len(px)} matches")
    result = dsac_native.estimate_pose_from_correspondences(
        px, pts, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
        hypotheses=opt.hypotheses, threshold=max(opt.threshold * float(pixel_scale), MIN_THRESHOLD_PX), seed=seed)
    inliers = int(result.inlier_count) if result.success else 0
    if not result.success or inliers < opt.min_inliers:
        return Refinement(None, inliers, len(px), near, reason=f"{inliers} inliers of {len(px)} matches")
    pose = np.asarray(result.camera_to_world, dtype=np.float64)
    dt, dr = pose_errors(pose, camera_to_world)
    if not np.all(np.isfinite(pose)) or dt > opt.max_correction_m or dr > opt.max_correction_deg:
        return Refinement(None, inliers, len(px), near, dt, dr,
                          reason=f"the refined pose is {dt:.2f} m / {dr:.1f} deg from the regressed one")
    return Refinement(pose, inliers, len(px), near, dt, dr)
