"""Ours against the feature-matching peer on scenes that look like real buildings, in one table.

    . scripts/env.sh && python bench/hard_scenes.py [--work /tmp/glace_bench] [--variants dense,sparse,...]
        [--presets cpu,quality,cpu+use_depth=off] [--peers xfeat,sift] [--threads 2]

Variants (``glace-make-scene`` flags, 250 mapping / 50 test frames at 480x640, one seed each; cached
in ``--work`` with their maps, shared with bench/covariance.py):

- ``dense``: today's photo-collage room (the default scene)
- ``sparse``: painted walls, few pictures, plain furniture (``--texture sparse``)
- ``lighting``: another light for the test split (``--test-lighting changed``)
- ``offset``: test views 0.5 m aside and turned 20 deg (``--test-offset 0.5 --test-yaw 20``)
- ``camera``: another test camera, portrait, wider (``--test-camera 380,380,240,320,480x640``)
- ``blur``: 8 px motion blur on the test images (``--motion-blur 8``)
- ``rooms``: three rooms joined by corridors, repeated furniture (``--rooms 3``)

Ours: ``glace-train --preset P`` then ``glace_core.localizer.Localizer`` over the test split (the
node's path, with its defaults, the keyframe refinement included; time per frame after a warm-up
pass; a cached map made before glace-train wrote keyframes gets them from glace-keyframes, its time
added to the mapping time). The cpu and quality presets train with the scenes'
rendered depth (``use_depth auto``); ``cpu+use_depth=off`` is the map from RGB and poses alone, what
a user without depth gets. The peer: bench/feature_peer.py with XFeat or SIFT keypoints, 3D points
from the mapping depth. Printed per variant and method: within 5 cm/5 deg and 10 cm/10 deg, median
errors, what happens to the frames more than 10 cm/10 deg off (ours: how many the node's quality gate
with its default parameters publishes and refuses, and how many good poses it refuses; the peer has
no gate, so all of its wrong poses are published; a frame without a pose counts as refused), time
per frame and mapping time. torch uses ``--threads`` threads for every method. Absolute
times are rough on shared machines; the load average is printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scenes import scene, trained_map, training_spec  # noqa: E402

VARIANTS = {
    "dense": (110, []),
    "sparse": (111, ["--texture", "sparse"]),
    "lighting": (112, ["--test-lighting", "changed"]),
    "offset": (113, ["--test-offset", "0.5", "--test-yaw", "20"]),
    "camera": (114, ["--test-camera", "380,380,240,320,480x640"]),
    "blur": (115, ["--motion-blur", "8"]),
    "rooms": (116, ["--rooms", "3"]),
}


def ours(scene_dir: Path, spec: str) -> dict:
    """Accuracy and time per frame of a map trained by ``spec`` (``training_spec``) through the Localizer."""
    from glace_core.dataset import SceneSplit
    from glace_core.geometry import pose_errors
    from glace_core.localizer import Localizer
    from glace_ros.output_policy import gate_cause
    from glace_ros.relocalizer_params import RelocalizerParams

    limits = RelocalizerParams().gate_limits()  # the node's defaults

    preset, extra, label = training_spec(spec)
    map_path, mapping_s = trained_map(scene_dir, preset, extra, label)
    localizer = Localizer.load(map_path, device="cpu")
    split = SceneSplit(scene_dir, "test")
    frames = [(split.load_rgb(i), split[i].K, np.asarray(split[i].pose)) for i in range(len(split))]
    for rgb, K, _ in frames:
        localizer.warm_up_once(*rgb.shape[:2], K)  # every head's graph, for each network input size
    t_err, r_err, times, published = [], [], [], []
    for rgb, K, gt in frames:
        t0 = time.perf_counter()
        loc = localizer.localize(rgb, K)
        times.append(time.perf_counter() - t0)
        t, r = pose_errors(loc.camera_to_world, gt) if loc.success else (np.inf, np.inf)
        t_err.append(t)
        r_err.append(r)
        published.append(loc.success and loc.covariance is not None and
                         gate_cause(loc.inlier_count, loc.num_cells, loc.covariance, limits) is None)
    return _row(np.array(t_err), np.array(r_err), 1e3 * float(np.median(times)), mapping_s, np.array(published))


def peer(scene_dir: Path, features: str) -> dict:
    from feature_peer import build_peer_map, localize_split

    peer_map = build_peer_map(scene_dir, features=features)
    records, _ = localize_split(peer_map, scene_dir)
    t = np.array([r.t_err_m for r in records])
    r = np.array([r.r_err_deg for r in records])
    ms = 1e3 * float(np.median([sum(rec.times.values()) for rec in records]))
    return _row(t, r, ms, peer_map.mapping_time_s, None)


def _row(t_err: np.ndarray, r_err: np.ndarray, ms: float, mapping_s: float, published: np.ndarray | None) -> dict:
    """published: (N,) bool, the frames whose pose would be published (None: every pose, no gate)."""
    from glace_core.geometry import accuracy_table

    acc = accuracy_table(t_err, r_err)
    wrong = ~((t_err <= 0.10) & (r_err <= 10.0))
    gated = published is not None
    published = np.isfinite(t_err) if published is None else published
    return {"5/5": acc["pct_5cm_5deg"], "10/10": acc["pct_10cm_10deg"], "t_cm": float(np.median(t_err) * 100),
            "r_deg": float(np.median(r_err)), "ms": ms, "map_s": mapping_s,
            "wrong_published": int(np.sum(wrong & published)),
            "wrong_refused": int(np.sum(wrong & ~published)) if gated else None,
            "good_refused": int(np.sum(~wrong & ~published)) if gated else None}


def _gate_cell(r: dict) -> str:
    if r["wrong_refused"] is None:
        return f"{r['wrong_published']} / no gate"
    return f"{r['wrong_published']} / {r['wrong_refused']} ({r['good_refused']})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/glace_bench"))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--presets", default="cpu,quality",
                   help="our training presets, each optionally with glace-train options: cpu+use_depth=on")
    p.add_argument("--peers", default="xfeat,sift", help="peer keypoints")
    p.add_argument("--threads", type=int, default=2, help="torch threads for every method")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; torch threads {args.threads}")
    print("| variant | method | 5 cm/5 deg | 10 cm/10 deg | median | > 10 cm/10 deg: published / refused "
          "(good poses refused) | ms/frame | mapping |")
    print("|---|---|---|---|---|---|---|---|")
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        seed, flags = VARIANTS[name]
        root = scene(args.work, f"hard_{name}", seed, flags)
        rows = [(f"ours ({preset})", lambda preset=preset: ours(root, preset))
                for preset in args.presets.split(",") if preset]
        rows += [(f"peer ({feat})", lambda feat=feat: peer(root, feat)) for feat in args.peers.split(",") if feat]
        for label, run in rows:
            r = run()
            print(f"| {name} | {label} | {r['5/5']:.0f} % | {r['10/10']:.0f} % | {r['t_cm']:.2f} cm / "
                  f"{r['r_deg']:.2f} deg | {_gate_cell(r)} | "
                  f"{r['ms']:.0f} | "
                  f"{r['map_s']:.0f} s |", flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
