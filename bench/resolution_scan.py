"""How a map's accuracy depends on the network input size: the test split localised at several
``image_resolution`` values, with XFeat's input padded to multiples of 32 (today) and of 8 (maps made
before 2026-12-04), in one run.

A map should not fall apart a few pixels away from its training size: the input size changes with
another camera (focal matching) or another aspect ratio. BENCHMARKS.md "XFeat padding".

Usage: python bench/resolution_scan.py SCENE MAP [--resolutions 464,472,480,488,496] [--paddings 32,8]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def scan(scene: str, map_path: str, resolutions: list[int], padding: int, precision: str) -> list[tuple]:
    """[(resolution, % within 5 cm/5 deg, % within 10 cm/10 deg, median cm, median deg), ...]."""
    from glace_core.dataset import SceneSplit
    from glace_core.geometry import pose_errors
    from glace_core.localizer import Localizer, LocalizerOptions

    split = SceneSplit(scene, "test")
    frames = [(split.load_rgb(i), split[i].K, np.asarray(split[i].pose)) for i in range(len(split))]
    loc = Localizer.load(map_path, device="cpu")
    if hasattr(loc.encoder, "pad_multiple"):  # before the first frame: the fast path traces the encoder then
        loc.encoder.pad_multiple = padding
    rows = []
    for res in resolutions:
        options = LocalizerOptions(image_resolution=res, precision=precision)
        errors = []
        for rgb, K, gt in frames:
            out = loc.localize(rgb, K, options=options)
            errors.append(pose_errors(out.camera_to_world, gt) if out.success else (np.inf, np.inf))
        e = np.array(errors)
        within5 = 100 * np.mean((e[:, 0] < 0.05) & (e[:, 1] < 5))
        within10 = 100 * np.mean((e[:, 0] < 0.1) & (e[:, 1] < 10))
        rows.append((res, within5, within10, 100 * np.median(e[:, 0]), np.median(e[:, 1])))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scene")
    parser.add_argument("map")
    parser.add_argument("--resolutions", default="464,472,480,488,496")
    parser.add_argument("--paddings", default="32,8", help="XFeat input padding multiples to compare")
    parser.add_argument("--precision", default="fp32", help="fp32 (default: no bf16 rounding in the way), auto, bf16")
    args = parser.parse_args(argv)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    print(f"{args.map} on {args.scene}, test split; 5 cm/5 deg (10 cm/10 deg), median")
    print("| padding | " + " | ".join(str(r) for r in resolutions) + " |")
    print("|---|" + "---|" * len(resolutions))
    for padding in (int(p) for p in args.paddings.split(",")):
        rows = scan(args.scene, args.map, resolutions, padding, args.precision)
        cells = [f"{a:.0f} % ({b:.0f}), {t:.1f} cm" for _, a, b, t, _ in rows]
        print(f"| {padding} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
