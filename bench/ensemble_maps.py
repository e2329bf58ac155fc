"""Ensemble map (the cpu preset) against one head given the same training budget, same scenes, same run.

Usage: python bench/ensemble_maps.py SCENE [SCENE ...] [--out DIR] [--extra "--image_resolution 600"]

For each DSAC*-layout scene (e.g. ``glace-make-scene /tmp/s100 --seed 100 --n-train 250 --n-test 50``):

- ``single``: ``glace-train SCENE --preset cpu --num_clusters 1 --max_iterations 16*1000``: one head,
  the iterations (and sampled cells) the ensemble spends in all.
- ``ensemble``: ``glace-train SCENE --preset cpu``: 16 cluster heads x 1000 iterations at batch 2048.

Heads and iterations are read from the cpu preset, so the comparison follows it.

Both are evaluated with ``glace_core.evaluation.evaluate_scene`` (glace-eval's defaults: 64
hypotheses, 10 px, the ensemble tries its 2 best-routed heads). Printed per scene and map: accuracy
(5 cm/5 deg, 10 cm/5 deg, 2 cm/2 deg), median errors, mapping wall time, and the steady-state time
per frame of ``Localizer.localize`` (every candidate head, RANSAC on each, after one warm-up pass over the
frames so every frozen graph is built), then the ensemble / single ratios. Run it on idle cores:
torch's OpenMP threads collapse when another busy process shares them (BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import numpy as np
import torch

from glace_core.map_predictor import DEFAULT_CANDIDATES
from glace_core.training.config import PRESETS

ITERATIONS_PER_HEAD = PRESETS["cpu"]["max_iterations"]
HEADS = PRESETS["cpu"]["num_clusters"]


def steady_state_ms(scene: Path, map_path: Path, candidates: int = DEFAULT_CANDIDATES) -> float:
    """Mean ms per test frame of ``Localizer.localize`` (glace-eval's path: preprocessing, every
    candidate head, RANSAC on each, the most-inliers rule, covariance), on a second pass."""
    from glace_core.dataset import SceneSplit
    from glace_core.localizer import Localizer, LocalizerOptions

    localizer = Localizer.load(map_path, device="cpu", options=LocalizerOptions(ensemble_candidates=candidates))
    data = SceneSplit(scene, "test")
    frames = [(data.load_rgb(i), data[i].K) for i in range(len(data))]
    times = []
    for rep in range(2):
        for rgb, K in frames:
            t0 = time.perf_counter()
            localizer.localize(rgb, K)
            if rep == 1:
                times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.mean(times))


def run(scene: Path, out: Path, label: str, extra: list[str]) -> dict:
    from glace_core.cli.train import main as train_main
    from glace_core.evaluation import evaluate_scene

    map_path = out / f"{scene.name}_{label}.pt"
    args = [str(scene), str(map_path), "--preset", "cpu", "--no-progress", *extra]
    if label == "single":
        args += ["--num_clusters", "1", "--max_iterations", str(HEADS * ITERATIONS_PER_HEAD)]
    t0 = time.perf_counter()
    if train_main(args) != 0:
        raise SystemExit(f"glace-train failed for {scene} ({label})")
    mapping_s = time.perf_counter() - t0
    summary = evaluate_scene(scene, map_path, device="cpu").summary
    acc = summary["accuracy"]
    return {"5/5": acc["pct_5cm_5deg"], "10/5": acc["pct_10cm_5deg"], "2/2": acc["pct_2cm_2deg"],
            "t": summary["median_t_cm"], "r": summary["median_r_deg"], "map_s": mapping_s,
            "frame_ms": steady_state_ms(scene, map_path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenes", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/glace_ensemble_bench"))
    parser.add_argument("--extra", default="", help="further glace-train options for both maps")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    extra = shlex.split(args.extra)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; extra train options: {extra or 'none'}")
    print("| scene | map | 5cm/5deg | 10cm/5deg | 2cm/2deg | median t / r | mapping wall | frame (steady) |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for scene in args.scenes:
        res = {label: run(scene, args.out, label, extra) for label in ("single", "ensemble")}
        for label, r in res.items():
            print(f"| {scene.name} | {label} | {r['5/5']:.0f} % | {r['10/5']:.0f} % | {r['2/2']:.0f} % | "
                  f"{r['t']:.1f} cm / {r['r']:.2f} deg | {r['map_s']:.0f} s | {r['frame_ms']:.1f} ms |", flush=True)
        ratios.append((res["ensemble"]["map_s"] / res["single"]["map_s"],
                       res["ensemble"]["frame_ms"] / res["single"]["frame_ms"]))
    for scene, (map_ratio, frame_ratio) in zip(args.scenes, ratios):
        print(f"{scene.name}: ensemble / single mapping time {map_ratio:.2f}x, time per frame {frame_ratio:.2f}x")


if __name__ == "__main__":
    main()
