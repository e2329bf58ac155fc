"""Per-frame CPU inference time, ours (glace_core.fast_inference) against the plain fp32 nn.Conv2d modules.

    . scripts/env.sh && python bench/inference.py                 # the full table (~2-3 minutes)
    . scripts/env.sh && python bench/inference.py --repeats 3 --configs cpu

Measured in one run, on the same inputs, plain and ours interleaved in every repeat (median of
``--repeats``, after one warm-up call each, which also builds our traced graphs):

- preprocess: ``glace_core.preprocess.preprocess_image`` of a uint8 RGB frame (the same code for both).
- encoder, head: the plain modules (NCHW, eager) against our frozen channels-last graphs; the head
  gets a random unit global descriptor when it has global input.
- encoder+head: ``head(encoder(x), g)`` against ``FastRegressor`` (the deliverable ratio); the max
  relative difference of the two outputs is printed.
- global: R2Former (random weights: only the time is meaningful) at 480x640 every frame (plain)
  against the node default (``glace_ros.relocalizer_params``), amortised over its reuse period;
  extra rows give each variant.
- frame (localize): one frame through ``glace_core.localizer.Localizer.localize`` (the path of
  glace-eval and the node) with the plain modules against the fast path. RANSAC on real structure
  is timed by bench/ransac.py.
- publish: building the PoseStamped, PoseWithCovarianceStamped and TF messages.

GFLOP counts the multiply-adds (x2) of every Conv2d/Linear of the plain network (ours does the same
work, minus the folded global channels of the first head layer); GFLOP/s is that divided by the time.
Peak: the faster of a 4096^3 ``torch.mm`` (MKL) and a 1x1 channels-last conv of the same size as a
GEMM (oneDNN), in the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # dsac_native from the checkout


@dataclass
class Row:
    stage: str
    plain_s: float | None
    ours_s: float | None
    gflop: float | None = None
    note: str = ""


def _median_pair(plain, ours, repeats: int) -> tuple[float, float]:
    plain(), ours()  # warm-up (and graph build)
    tp, to = [], []
    for _ in range(repeats):
        t0 = time.perf_counter(); plain(); t1 = time.perf_counter(); ours(); t2 = time.perf_counter()
        tp.append(t1 - t0); to.append(t2 - t1)
    return statistics.median(tp), statistics.median(to)


def _median(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)


def count_gflop(module: nn.Module, *args) -> float:
    """GFLOP (2 x multiply-adds) of every Conv2d and Linear in one forward of ``module(*args)``."""
    total = [0]

    def hook(mod, inputs, out):
        if isinstance(mod, nn.Conv2d):
            total[0] += 2 * out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            total[0] += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            module(*args)
    finally:
        for h in handles:
            h.remove()
    return total[0] / 1e9


def measure_peak(repeats: int) -> tuple[float, float]:
    """(MKL, oneDNN) best fp32 GEMM GFLOP/s: ``torch.mm`` of 4096^3, and 1x1 channels-last convs used
    as GEMMs (1024 x 1024 over 64x64 pixels, 768 x 768 over 60x80); fastest repeat of each."""
    def best(fn) -> float:
        fn()
        return min(_median(fn, 1) for _ in range(max(repeats, 3)))

    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.inference_mode():
        mm = 2.0 * n ** 3 / best(lambda: torch.mm(a, b)) / 1e9
        conv_rates = []
        for c, h, w in ((1024, 64, 64), (768, 60, 80)):
            conv = nn.Conv2d(c, c, 1, bias=False).eval().to(memory_format=torch.channels_last)
            x = torch.randn(1, c, h, w).contiguous(memory_format=torch.channels_last)
            conv_rates.append(2.0 * c * c * h * w / best(lambda: conv(x)) / 1e9)
    return mm, max(conv_rates)


def bench_config(name: str, encoder: nn.Module, head: nn.Module, height: int, width: int, repeats: int,
                 global_rows: dict[str, float]) -> tuple[list[Row], float]:
    """Rows of one encoder + head configuration and the max relative output difference."""
    from glace_core.fast_inference import FastRegressor, FoldedHead, freeze_for_inference
    from glace_core.preprocess import preprocess_image
    from glace_ros.pose_messages import (pose_stamped_from_matrix, pose_with_covariance_from_matrix,
                                         transform_stamped_from_matrix)

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    K = np.array([[525.0 * width / 640, 0, width / 2], [0, 525.0 * width / 640, height / 2], [0, 0, 1]])
    x, _ = preprocess_image(rgb, K, resolution=min(height, width))
    gvec = F.normalize(torch.randn(1, head.global_channels), dim=1) if head.global_channels else None
    rows = [Row("preprocess", *_median_pair(lambda: preprocess_image(rgb, K, resolution=min(height, width)),
                                            lambda: preprocess_image(rgb, K, resolution=min(height, width)),
                                            repeats))]
    with torch.inference_mode():
        feats = encoder(x)
    g_enc = count_gflop(encoder, x)
    g_head = count_gflop(head, feats, gvec)
    enc_cl = freeze_for_inference(
        __import__("copy").deepcopy(encoder).to(memory_format=torch.channels_last),
        (x.contiguous(memory_format=torch.channels_last),))
    folded = FoldedHead(head).eval().to(memory_format=torch.channels_last)
    feats_cl = feats.contiguous(memory_format=torch.channels_last)
    head_cl = freeze_for_inference(folded, (feats_cl,) if gvec is None else (feats_cl, gvec))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        tp, to = _median_pair(lambda: encoder(x), lambda: enc_cl(x_cl), repeats)
        rows.append(Row("encoder", tp, to, g_enc))
        head_args = (feats_cl,) if gvec is None else (feats_cl, gvec)
        tp, to = _median_pair(lambda: head(feats, gvec), lambda: head_cl(*head_args), repeats)
        rows.append(Row("head", tp, to, g_head))
    if global_rows:
        default = global_rows["ours"]
        rows.append(Row("global", global_rows["480x640 every frame"], default[1], None, default[0]))
    fast = FastRegressor(encoder, head)
    with torch.inference_mode():
        ref = head(encoder(x), gvec)
    out = fast(x, gvec)
    rel = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    with torch.inference_mode():
        tp, to = _median_pair(lambda: head(encoder(x), gvec), lambda: fast(x, gvec), repeats)
    rows.append(Row("encoder+head", tp, to, g_enc + g_head, "deliverable ratio"))

    from glace_core.localizer import Localizer, LocalizerOptions

    localizer = Localizer(encoder, head, "cpu", None, options=LocalizerOptions(image_resolution=min(height, width)))
    plain_localizer = Localizer(encoder, head, "cpu", None, fast_inference=False,
                                options=LocalizerOptions(image_resolution=min(height, width)))
    tp, to = _median_pair(lambda: plain_localizer.localize(rgb, K), lambda: localizer.localize(rgb, K), repeats)
    rows.append(Row("frame (localize)", tp, to, None, "Localizer.localize: preprocess, network, RANSAC, statistics; "
                    "random image (RANSAC rarely succeeds: bench/ransac.py times it on real structure)"))
    loc = localizer.localize(rgb, K)
    pose = loc.camera_to_world if loc.success else np.eye(4)
    cov = loc.covariance if loc.covariance is not None else np.eye(6).reshape(36) * 1e-4

    def publish():
        pose_stamped_from_matrix(pose, 0, "map")
        pose_with_covariance_from_matrix(pose, 0, cov, "map")
        transform_stamped_from_matrix(pose, 0, "map", "camera")
    try:
        t = _median(publish, repeats)
        rows.append(Row("publish (msgs)", t, t, None, "same code"))
    except Exception as exc:  # noqa: BLE001 - messages may need a stamp type; report instead of failing
        rows.append(Row("publish (msgs)", None, None, None, f"skipped: {exc}"))
    return rows, rel


def bench_global(repeats: int) -> dict[str, tuple[str, float] | float]:
    """R2Former times (random weights): per resolution, and the node default amortised over its reuse."""
    from glace_core.r2former import R2FormerDescriptor
    from glace_ros.relocalizer_params import PARAMETERS_BY_NAME

    img = torch.rand(1, 3, 480, 640)
    times = {}
    for res in ((480, 640), (240, 320)):
        model = R2FormerDescriptor(res).eval()
        with torch.inference_mode():
            times[res] = _median(lambda: model(img), repeats)
    mode = PARAMETERS_BY_NAME["global_mode"].default
    n = int(PARAMETERS_BY_NAME["global_every_n"].default) if mode == "every_n" else 1
    res = tuple(PARAMETERS_BY_NAME["global_resolution"].default)
    ours = 0.0 if mode in ("off", "background") else times[res] / n  # background: on its own thread, off the pose path
    out: dict = {"480x640 every frame": times[(480, 640)], "240x320 every frame": times[(240, 320)],
                 "ours": (f"default {mode} n={n} {res[0]}x{res[1]} (mean)", ours)}
    for k in (3, 5, 10):
        out[f"480x640 every {k} (mean)"] = times[(480, 640)] / k
    return out


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 1e3:.1f}"


def format_table(sections: list[tuple[str, list[Row], float]], peak: float) -> str:
    lines = ["| config | stage | plain ms | ours ms | ours/plain | GFLOP | plain GFLOP/s | ours GFLOP/s | ours % peak | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows, _ in sections:
        total_p = sum(r.plain_s for r in rows if r.plain_s is not None and r.stage not in ("encoder", "head", "frame (localize)"))
        total_o = sum(r.ours_s for r in rows if r.ours_s is not None and r.stage not in ("encoder", "head", "frame (localize)"))
        for r in rows + [Row("total (frame)", total_p, total_o, None, "preprocess+global+enc/head+publish")]:
            ratio = f"{r.ours_s / r.plain_s:.2f}" if r.plain_s and r.ours_s is not None else ""
            gp = f"{r.gflop / r.plain_s:.0f}" if r.gflop and r.plain_s else ""
            go = f"{r.gflop / r.ours_s:.0f}" if r.gflop and r.ours_s else ""
            pk = f"{100 * r.gflop / r.ours_s / peak:.0f} %" if r.gflop and r.ours_s else ""
            gf = f"{r.gflop:.1f}" if r.gflop else ""
            lines.append(f"| {name} | {r.stage} | {_ms(r.plain_s)} | {_ms(r.ours_s)} | {ratio} | {gf} | {gp} | {go} | "
                         f"{pk} | {r.note} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per stage (median)")
    parser.add_argument("--configs", default="ace,cpu,cpu240",
                        help="comma list of: ace (ACE + paper head, 480x640), cpu (XFeat + cpu-preset head, "
                             "480x640), cpu240 (the same at 240x320, the preset's resolution)")
    parser.add_argument("--no-global", action="store_true", help="skip the R2Former rows")
    args = parser.parse_args(argv)
    from glace_core.encoder import ACEEncoder
    from glace_core.head import GlaceHead
    from glace_core.training.config import TrainConfig

    cpu = TrainConfig.from_preset("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    mm, conv = measure_peak(args.repeats)
    peak = max(mm, conv)
    print(f"peak fp32 GEMM (best repeat): torch.mm 4096^3 (MKL) {mm:.0f} GFLOP/s, 1x1 conv as GEMM (oneDNN) "
          f"{conv:.0f} GFLOP/s; % peak uses {peak:.0f}")
    global_rows = {} if args.no_global else bench_global(args.repeats)
    sections = []
    for key in [c.strip() for c in args.configs.split(",") if c.strip()]:
        torch.manual_seed(0)
        if key == "ace":
            enc, head, hw = ACEEncoder().eval(), GlaceHead().eval(), (480, 640)
            name, grows = "ACE + paper head (768, global) 480x640", global_rows
        elif key in ("cpu", "cpu240"):
            from glace_core.xfeat_encoder import XFeatEncoder

            enc = XFeatEncoder().eval()
            head = GlaceHead(enc.out_channels, 0, cpu.head_channels, cpu.mlp_ratio, cpu.num_head_blocks).eval()
            hw = (480, 640) if key == "cpu" else (240, 320)
            name, grows = f"XFeat + cpu head ({cpu.head_channels}, no global) {hw[0]}x{hw[1]}", {}
        else:
            parser.error(f"unknown config {key!r}")
        rows, rel = bench_config(name, enc, head, *hw, args.repeats, grows)
        sections.append((name, rows, rel))
    print(format_table(sections, peak))
    for name, rows, rel in sections:
        print(f"{name}: max |ours - plain| / max |plain| = {rel:.1e}")
    if global_rows:
        print("global descriptor (R2Former DeiT-S, random weights), ms per frame: " + ", ".join(
            f"{k} {v * 1e3:.0f}" for k, v in global_rows.items() if k != "ours"))
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
