"""oneDNN's optimize_for_inference on, off, or chosen by timing ("auto", the default): encoder and head.

    . scripts/env.sh && OMP_WAIT_POLICY=PASSIVE python bench/graph_optimize.py \
        [--map /tmp/glace_bench/hard_dense/map_cpu.pt] [--repeats 60] [--precisions fp32,bf16]

``glace_core.fast_inference.FastModule`` of the map's encoder (480x640 input) and of its first head
(``FoldedHead``, 60x80 cells) with ``FastInferenceConfig.optimize`` "on" (before 2026-12-03),
"off" and "auto"; the build time of each (auto builds and times both graphs) and the median time
per call, the six modules called in turn so that load changes hit them alike, with the ratio
against "on". Which graph "auto" kept is logged. ``--precisions``: each of ``FastInferenceConfig.precision``
(bf16 on a CPU without native bf16 is emulated by oneDNN: slow, and not what the node would run).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--map", type=Path, default=Path("demo_out/map.pt"))
    p.add_argument("--repeats", type=int, default=60)
    p.add_argument("--precisions", default="fp32", help="comma-separated graph precisions: fp32, bf16")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("glace_core.fast_inference").setLevel(logging.DEBUG)
    from glace_core.encoder_registry import resolve_map_encoder
    from glace_core.fast_inference import FastInferenceConfig, FastModule, FoldedHead
    from glace_core.head_ensemble import HeadEnsemble
    from glace_core.network import load_map

    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, torch threads {torch.get_num_threads()}")
    model = load_map(args.map, "cpu")
    encoder = resolve_map_encoder(None, model.metadata, torch.device("cpu")).eval()
    head = model.heads[0] if isinstance(model, HeadEnsemble) else model
    if int(getattr(head, "global_channels", 0)):
        p.error("a head with global input: use a map without (the cpu preset's)")
    image = torch.rand(1, 1, 480, 640, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = encoder(image)
    modules, build = {}, {}
    for precision in args.precisions.split(","):
        for opt in ("on", "off", "auto"):
            for part, module, x in (("encoder", encoder, image), ("head", FoldedHead(head), features)):
                t0 = time.perf_counter()
                fast = FastModule(module, FastInferenceConfig(optimize=opt, precision=precision))
                fast(x)
                build[(part, precision, opt)] = time.perf_counter() - t0
                modules[(part, precision, opt)] = (fast, x)
    times = {k: [] for k in modules}
    for _ in range(args.repeats):
        for k, (fast, x) in modules.items():
            t0 = time.perf_counter()
            fast(x)
            times[k].append(time.perf_counter() - t0)
    print("| module | precision | optimize | build s | ms per call (median) | against on |\n|---|---|---|---|---|---|")
    for (part, precision, opt), v in sorted(times.items()):
        ms = 1e3 * float(np.median(v))
        print(f"| {part} | {precision} | {opt} | {build[(part, precision, opt)]:.2f} | {ms:.1f} | "
              f"{ms / (1e3 * float(np.median(times[(part, precision, 'on')]))):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
