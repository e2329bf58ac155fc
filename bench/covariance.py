"""Is the pose covariance calibrated? Mahalanobis distances of the real errors, held-out scenes.

    . scripts/env.sh && python bench/covariance.py [--work /tmp/glace_bench] [--fit] [--preset cpu+use_depth=off]

Scenes (cached in ``--work`` and shared with bench/hard_scenes.py, bench/bench_scenes.py): three
held-out synthetic rooms (the ``dense``, ``lighting`` and ``blur`` variants of hard_scenes) and the
real-style variants ``sparse`` (painted walls, few pictures), ``offset`` (test path 0.5 m and 20 deg
away from the mapping path) and ``camera`` (another camera), each mapped with the cpu preset (with
the scenes' rendered depth, its default; ``--preset cpu+use_depth=off`` for maps from RGB and poses
alone, on which ``CovarianceCalibration`` was fitted). Every test frame goes through
``glace_core.localizer.Localizer`` (the node's path, default options); frames the node would publish
by inlier count (``min_inlier_count``, 100) are scored: the 6-DoF error vector e (``pose_error_vector``:
position in the map frame, rotation about the map axes) against the published covariance C,
d^2 = e^T C^-1 e. The covariance is the node's: residuals, the texture of the inlier cells and the
pose's distance from the mapping views (``glace_core.pose_covariance``; a cached map whose sidecar
does not record its mapping poses is trained again, ``bench_scenes.stale_reason``).

Poses refined by the keyframe refinement (``glace_core.keyframe_refinement``, on by default where the map
has keyframes) get their covariance from their keypoint inliers, with their own calibration
(``RefinementOptions.covariance``); the two kinds are scored, and fitted, apart.

A calibrated 6-DoF covariance gives a median d^2 of about 5.35 (the chi^2(6) median; target 3-8) and
>= 90 % of frames inside the chi^2(6) 95 % bound (12.59). The errors are heavier-tailed than a
Gaussian's, so a covariance scaled to the chi^2 median leaves too many frames outside; ``--fit`` fits
``n_eff`` to the median ``--fit-median`` (3.3: the conservative end of the target) instead. Printed per
scene, with the default calibration (``CovarianceCalibration``) and, with ``--fit``, with ``n_eff``
refitted leave-one-scene-out (fitted on the other scenes, scored on this one), so the figure for
each scene is out of sample. The last lines pool the scenes: default calibration, the leave-one-out
fits, and the ``n_eff`` fitted on all scenes.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scenes import scene, trained_map, training_spec  # noqa: E402
from hard_scenes import VARIANTS  # noqa: E402

from glace_core.dataset import SceneSplit  # noqa: E402
from glace_core.localizer import Localizer, RefinementOptions  # noqa: E402
from glace_core.pose_covariance import (CovarianceCalibration, covariance_from_residuals,  # noqa: E402
                                        mahalanobis_squared, pose_error_vector)

CHI2_6_MEDIAN, CHI2_6_95 = 5.348, 12.592
MIN_INLIERS = 100  # the node's min_inlier_count
SCENES = ("dense", "lighting", "blur", "sparse", "offset", "camera")


def frame_stats(scene_dir: Path, map_path: Path) -> list[dict]:
    """Per scored frame: its kind ("regressed", or "refined" by the keyframe refinement), the residual
    statistics (cells with their texture, or keypoints), the observations (cells, or keypoint matches),
    K, the pose's distance from the mapping views, estimate, ground truth and the covariance the node
    published, all as the Localizer computed them."""
    localizer = Localizer.load(map_path, device="cpu")
    split = SceneSplit(scene_dir, "test")
    out = []
    for i in range(len(split)):
        loc = localizer.localize(split.load_rgb(i), split[i].K)
        if not loc.success or loc.inlier_count < MIN_INLIERS or loc.covariance is None:
            continue
        refined = loc.refinement is not None and loc.refinement.applied
        out.append({"kind": "refined" if refined else "regressed", "stats": loc.statistics,
                    "cells": loc.refinement.matches if refined else loc.num_cells, "K": loc.K_network,
                    "est": loc.camera_to_world, "gt": np.asarray(split[i].pose, np.float64), "frames": len(split),
                    "novelty": loc.mapping_view_distance_m, "published": loc.covariance})
    return out


def distances(frames: list[dict], calibration: CovarianceCalibration) -> np.ndarray:
    return np.array([mahalanobis_squared(pose_error_vector(f["est"], f["gt"]),
                                         covariance_from_residuals(f["stats"], f["cells"], f["K"], f["est"],
                                                                   calibration, f["novelty"])) for f in frames])


def fit_n_eff(frames: list[dict], base: CovarianceCalibration, median: float) -> float:
    """n_eff whose median d^2 over ``frames`` is ``median`` (bisection in log space; d^2 grows with n_eff)."""
    lo, hi = 0.01, 1e5
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        med = np.median(distances(frames, dataclasses.replace(base, effective_observations=mid)))
        lo, hi = (mid, hi) if med < median else (lo, mid)
    return (lo * hi) ** 0.5


def summary(d2: np.ndarray) -> str:
    if len(d2) == 0:
        return "no frames"
    return (f"median d^2 {np.median(d2):6.2f} | inside chi2(6) 95 % {100 * np.mean(d2 <= CHI2_6_95):5.1f} % | "
            f"mean {np.mean(d2):8.1f}")


def report(kind: str, per_scene: dict[str, list[dict]], base: CovarianceCalibration, fit: bool,
           fit_median: float) -> None:
    """The table of one kind of pose (its frames in every scene) under its calibration ``base``."""
    per_scene = {name: [f for f in frames if f["kind"] == kind] for name, frames in per_scene.items()}
    print(f"\n{kind} poses, calibration: {base}")
    print("| scene | frames scored | default: median d^2 | inside 95 % | leave-one-out n_eff | median d^2 "
          "| inside 95 % |")
    print("|---|---|---|---|---|---|---|")
    everything, out_of_sample = [], []
    for name, frames in per_scene.items():
        if not frames:
            print(f"| {name} | 0 | | | | | |")
            continue
        d2 = distances(frames, base)
        published = np.array([mahalanobis_squared(pose_error_vector(f["est"], f["gt"]), f["published"])
                              for f in frames])
        assert np.allclose(d2, published, rtol=1e-6), "the bench's covariance differs from the node's"
        row = (f"| {name} | {len(frames)} of {frames[0]['frames']} | {np.median(d2):.2f} | "
               f"{100 * np.mean(d2 <= CHI2_6_95):.0f} % |")
        others = [f for other, fs in per_scene.items() if other != name for f in fs]
        if fit and others:
            n_eff = fit_n_eff(others, base, fit_median)
            d2_out = distances(frames, dataclasses.replace(base, effective_observations=n_eff))
            out_of_sample.append(d2_out)
            row += f" {n_eff:.1f} | {np.median(d2_out):.2f} | {100 * np.mean(d2_out <= CHI2_6_95):.0f} % |"
        else:
            row += " | | |"
        print(row)
        everything += frames
    print(f"all scenes, default calibration: {summary(distances(everything, base))}")
    if fit and everything:
        pooled = np.concatenate(out_of_sample) if out_of_sample else np.zeros(0)
        print(f"all scenes, leave-one-scene-out n_eff: {summary(pooled)}")
        n_eff = fit_n_eff(everything, base, fit_median)
        print(f"n_eff fitted on all scenes: {n_eff:.2f} -> "
              f"{summary(distances(everything, dataclasses.replace(base, effective_observations=n_eff)))}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/glace_bench"), help="cache of scenes and maps")
    p.add_argument("--fit", action="store_true", help="also refit n_eff leave-one-scene-out")
    p.add_argument("--fit-median", type=float, default=3.3, help="the pooled median d^2 --fit aims at")
    p.add_argument("--preset", default="cpu", help="the maps' training preset[+option=value] (bench/hard_scenes.py)")
    args = p.parse_args(argv)
    preset, extra, label = training_spec(args.preset)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    per_scene = {}
    for name in SCENES:
        seed, flags = VARIANTS[name]
        root = scene(args.work, f"hard_{name}", seed, flags)
        map_path, _ = trained_map(root, preset, extra, label)
        per_scene[name] = frame_stats(root, map_path)
    report("regressed", per_scene, CovarianceCalibration(), args.fit, args.fit_median)
    report("refined", per_scene, RefinementOptions().covariance, args.fit, args.fit_median)
    return 0


if __name__ == "__main__":
    sys.exit(main())
