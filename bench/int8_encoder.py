"""int8 encoder (post-training static quantization, torch.ao FX, x86 backend): speed and accuracy.

    . scripts/env.sh && python bench/int8_encoder.py [--scene demo_out/scene --map demo_out/map.pt]

Issue 17 asks whether an int8 encoder is worth keeping. Each block of the XFeat backbone named by ``--blocks``
(default all: block1-5, skip1, block_fusion) is quantized with ``prepare_fx``/``convert_fx`` and the x86 qconfig, calibrated
on ``--calibration`` mapping frames; the glue between the blocks (instance normalisation, padding,
the sums and upsampling) stays in fp32. Printed, in one run:

1. the encoder's time per 480x640 frame, fp32 (traced and frozen, as the node runs it) against int8
   (traced), median of ``--repeats`` calls taken in turn, and the ratio;
2. the median change of the encoder's features (relative), and of the scene coordinates (cm);
3. the test frames localized with each encoder (``Localizer``, same seed): 5 cm/5 deg and the median
   pose change per frame against fp32. The issue's accuracy bar: median pose change <= 0.2 cm / 0.1 deg.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

BLOCKS = ("block1", "block2", "block3", "block4", "block5", "skip1", "block_fusion")


def quantize_encoder(encoder: torch.nn.Module, images: list[torch.Tensor], blocks: tuple[str, ...] = BLOCKS
                     ) -> torch.nn.Module:
    """A copy of the XFeat ``encoder`` whose backbone ``blocks`` run in int8, calibrated on ``images``
    ((1, 1, H, W) encoder inputs)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    q = copy.deepcopy(encoder).eval()
    net = q.net
    inputs: dict[str, torch.Tensor] = {}
    hooks = [getattr(net, b).register_forward_pre_hook(lambda m, a, b=b: inputs.setdefault(b, a[0].detach()))
             for b in blocks]
    with torch.no_grad():
        q(images[0])
    for h in hooks:
        h.remove()
    mapping = get_default_qconfig_mapping("x86")
    for b in blocks:
        setattr(net, b, prepare_fx(getattr(net, b).eval(), mapping, (inputs[b],)))
    with torch.no_grad():
        for img in images:
            q(img)
    for b in blocks:
        setattr(net, b, convert_fx(getattr(net, b)))
    return q


def encoder_ms(modules: dict[str, tuple[torch.nn.Module, bool]], image: torch.Tensor, repeats: int
               ) -> dict[str, float]:
    """Median ms per call of each traced module (frozen where its flag says), the modules called in
    turn so that a change in the machine's load hits them alike."""
    with torch.no_grad():
        traced = {}
        for name, (module, freeze) in modules.items():
            t = torch.jit.trace(module, (image,), check_trace=False)
            traced[name] = torch.jit.freeze(t) if freeze else t
            for _ in range(3):
                traced[name](image)
        times: dict[str, list[float]] = {name: [] for name in traced}
        for _ in range(repeats):
            for name, t in traced.items():
                t0 = time.perf_counter()
                t(image)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: float(np.median(v)) for name, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", type=Path, default=Path("demo_out/scene"))
    p.add_argument("--map", type=Path, default=Path("demo_out/map.pt"))
    p.add_argument("--calibration", type=int, default=16, help="mapping frames the int8 ranges are calibrated on")
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--blocks", default=",".join(BLOCKS), help="backbone blocks quantized (comma-separated)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")  # torch.jit / torch.ao deprecation and tracer notices
    from glace_core.dataset import SceneSplit
    from glace_core.geometry import accuracy_table, pose_errors
    from glace_core.localizer import Localizer, LocalizerOptions
    from glace_core.preprocess import preprocess_image

    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, torch threads {torch.get_num_threads()}")
    ref = Localizer.load(args.map, device="cpu", fast_inference=False, options=LocalizerOptions(precision="fp32"))
    train, test = SceneSplit(args.scene, "train"), SceneSplit(args.scene, "test")
    res = ref.resolution()

    def net_input(split, i):
        return preprocess_image(split.load_rgb(i), split[i].K, res)[0]

    step = max(1, len(train) // args.calibration)
    calib = [net_input(train, i) for i in range(0, len(train), step)][:args.calibration]
    blocks = tuple(b for b in args.blocks.split(",") if b)
    unknown = sorted(set(blocks) - set(BLOCKS))
    if unknown:
        p.error(f"unknown blocks {unknown}; valid: {BLOCKS}")
    print(f"int8 blocks: {', '.join(blocks)}")
    q_encoder = quantize_encoder(ref.encoder, calib, blocks)
    image = net_input(test, 0)
    ms = encoder_ms({"fp32": (ref.encoder, True), "int8": (q_encoder, False)}, image, args.repeats)
    fp32_ms, int8_ms = ms["fp32"], ms["int8"]
    print(f"encoder per {tuple(image.shape[-2:])} frame: fp32 {fp32_ms:.1f} ms, int8 {int8_ms:.1f} ms, "
          f"int8/fp32 {int8_ms / fp32_ms:.2f}")

    int8 = Localizer(q_encoder, ref.model, "cpu", fast_inference=False, options=ref.options)
    feat_change, sc_change, rows = [], [], {"fp32": [], "int8": []}
    for i in range(len(test)):
        rgb, K, gt = test.load_rgb(i), test[i].K, np.asarray(test[i].pose)
        with torch.no_grad():
            x = net_input(test, i)
            f0, f1 = ref.encoder(x), q_encoder(x)
        feat_change.append(float((f1 - f0).norm(dim=1).median() / f0.norm(dim=1).median()))
        a, b = ref.localize(rgb, K), int8.localize(rgb, K)
        sc_change.append(float(np.nanmedian(np.linalg.norm(a.scene_coordinates - b.scene_coordinates, axis=0))) * 100)
        rows["fp32"].append((a, gt))
        rows["int8"].append((b, gt))
    print(f"median feature change {100 * np.median(feat_change):.1f} % of the feature norm; "
          f"median scene-coordinate change {np.median(sc_change):.2f} cm")
    for name, frames in rows.items():
        t, r = zip(*[pose_errors(loc.camera_to_world, gt) if loc.success else (np.inf, np.inf) for loc, gt in frames])
        acc = accuracy_table(np.array(t), np.array(r))
        print(f"{name}: 5 cm/5 deg {acc['pct_5cm_5deg']:.0f} %, "
              f"median {acc['median_t_cm']:.2f} cm / {acc['median_r_deg']:.2f} deg")
    pairs = [(a, b) for (a, _), (b, _) in zip(rows["fp32"], rows["int8"]) if a.success and b.success]
    dt, dr = zip(*[pose_errors(b.camera_to_world, a.camera_to_world) for a, b in pairs])
    print(f"int8 against fp32, per frame: median pose change {100 * np.median(dt):.2f} cm / {np.median(dr):.2f} deg "
          f"(bar: 0.2 cm / 0.1 deg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
