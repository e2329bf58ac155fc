"""Benchmark dsac_native against OpenCV solvePnPRansac and poselib on the same synthetic grids.

Cases: 60x80 scene-coordinate grids at stride 8 (a 480x640 image), fx=fy=525, principal point at
the image centre, depths 1-5 m, a random camera pose, uniform outliers (within 5 m of the camera)
at 50/80/90/95 %, Gaussian pixel noise of 0.5-1 px on the inliers. Success: < 5 cm and < 5 deg.
All solvers get the same 10 px inlier threshold; dsac_native runs with its defaults (64 hypotheses),
OpenCV with SOLVEPNP_P3P (as the reference), confidence 0.9999 and `--opencv-iterations`, poselib
with its defaults (0.9999, up to 100000 iterations). A peer that is not installed is skipped.
Solvers run interleaved per case (rotating order) so that machine load affects them alike.

Usage: python bench/ransac.py [--cases 20] [--levels 0.5 0.8 0.9 0.95] [--threads 0]
"""
from __future__ import annotations

import argparse
import time

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # in-place build

H, W, S = 60, 80, 8
FX = FY = 525.0
CX, CY = 320.0, 240.0


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def make_case(seed: int, outliers: float):
    """Returns scene coordinates (3, H, W) float32, pixels (H*W, 2), points (H*W, 3), cam-to-world (4, 4)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:H, 0:W]
    px = np.stack([S * xs + S / 2, S * ys + S / 2], -1).astype(np.float64)
    noise = rng.uniform(0.5, 1.0)
    observed = px + rng.normal(0, noise, px.shape)
    d = rng.uniform(1, 5, (H, W))
    cam = np.stack([(observed[..., 0] - CX) / FX * d, (observed[..., 1] - CY) / FY * d, d], -1)
    R, t = random_rotation(rng), rng.uniform(-3, 3, 3)
    pts = cam @ R.T + t
    mask = rng.random((H, W)) < outliers
    pts[mask] = rng.uniform(-5, 5, (int(mask.sum()), 3)) + t
    gt = np.eye(4)
    gt[:3, :3], gt[:3, 3] = R, t
    sc = np.ascontiguousarray(pts.transpose(2, 0, 1), dtype=np.float32)
    points = np.ascontiguousarray(sc.reshape(3, -1).T, dtype=np.float64)
    return sc, np.ascontiguousarray(px.reshape(-1, 2)), points, gt


def ok(est, gt) -> bool:
    if est is None or not np.all(np.isfinite(est)):
        return False
    cos = (np.trace(est[:3, :3] @ gt[:3, :3].T) - 1) / 2
    return np.linalg.norm(est[:3, 3] - gt[:3, 3]) < 0.05 and np.degrees(np.arccos(np.clip(cos, -1, 1))) < 5.0


def c2w(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R.T, -R.T @ np.asarray(t).ravel()
    return T


def solvers(args):
    import dsac_native

    def ours(sc, px, pts):
        r = dsac_native.estimate_pose(sc, FX, FY, CX, CY, subsampling=S, hypotheses=64, threshold=10.0,
                                      num_threads=args.threads)
        return r.camera_to_world if r.success else None

    out = {"dsac_native": ours}
    try:
        import cv2

        K = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1]])

        def opencv(sc, px, pts):
            found, rvec, tvec, _ = cv2.solvePnPRansac(pts, px, K, None, iterationsCount=args.opencv_iterations,
                                                      reprojectionError=10.0, confidence=0.9999,
                                                      flags=cv2.SOLVEPNP_P3P)
            return c2w(cv2.Rodrigues(rvec)[0], tvec) if found else None

        out["opencv"] = opencv
    except ImportError:
        print("opencv not installed: skipped")
    try:
        import poselib

        camera = {"model": "PINHOLE", "width": W * S, "height": H * S, "params": [FX, FY, CX, CY]}

        def pl(sc, px, pts):
            pose, info = poselib.estimate_absolute_pose(px, pts, camera, {"max_reproj_error": 10.0}, {})
            return c2w(pose.R, pose.t) if info.get("num_inliers", 0) >= 4 else None

        out["poselib"] = pl
    except ImportError:
        print("poselib not installed (pip install poselib): skipped")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=20, help="cases per outlier level")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95])
    parser.add_argument("--threads", type=int, default=0, help="dsac_native threads (0: all cores)")
    parser.add_argument("--opencv-iterations", type=int, default=10000, help="OpenCV iterationsCount")
    args = parser.parse_args(argv)
    methods = solvers(args)
    print(f"{args.cases} cases per level, 60x80 grid (480x640 px), threshold 10 px, 5 cm/5 deg")
    print("| outliers | " + " | ".join(f"{m} success | {m} median ms" for m in methods) + " | OpenCV / ours time |")
    print("|---" * (2 * len(methods) + 2) + "|")
    for level in args.levels:
        cases = [make_case(1000 * int(level * 100) + i, level) for i in range(args.cases)]
        # interleaved: every case runs all solvers back to back (in rotating order), so that load
        # from other jobs on the machine hits all of them alike
        names = list(methods)
        succ = {name: 0 for name in names}
        ts = {name: [] for name in names}
        for i, (sc, px, pts, gt) in enumerate(cases):
            for name in names[i % len(names):] + names[:i % len(names)]:
                t0 = time.perf_counter()
                est = methods[name](sc, px, pts)
                ts[name].append(time.perf_counter() - t0)
                succ[name] += ok(est, gt)
        row, times = [], {}
        for name in names:
            times[name] = float(np.median(ts[name]))
            row += [f"{succ[name]}/{len(cases)}", f"{1e3 * times[name]:.1f}"]
        ratio = times["opencv"] / times["dsac_native"] if "opencv" in times else float("nan")
        print(f"| {int(level * 100)} % | " + " | ".join(row) + f" | {ratio:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
