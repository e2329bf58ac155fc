"""Real time on this machine: the live node's latency, the offline stage times, mapping time and accuracy.

    . scripts/env.sh && python bench/realtime.py [--scene demo_out/scene --map demo_out/map.pt]
        [--frames 1000] [--precisions fp32,auto] [--mapping [cpu,fast]] [--frames 0 --precisions fp32]

One run, every configuration measured in it (``--precisions``, the first is the reference the ratios
and pose changes are against). A configuration is a precision, optionally with ``@RATIO`` for the
``early_accept_ratio`` (``fp32@0``: every candidate head on every frame, as before early accept) and
``+norefine`` for the keyframe refinement off (``auto+norefine``; maps with a keyframes file):

1. Offline, ``glace_core.localizer.Localizer.localize`` over the scene's test frames (a warm-up pass,
   then a timed pass): median per-stage times (preprocess, global, encoder/head or network, ransac,
   statistics, total; median and p90), accuracy (5 cm/5 deg, 10 cm/10 deg, medians), the candidate
   heads run per frame and, against the first configuration, the median pose change per frame.
2. Through the live node (``glace_ros.relocalizer_node`` in its own process, as glace-replay-eval
   starts it, reliable images over the shared-memory profile): ``--frames`` images (the test frames
   cycled, new stamps), each published with its CameraInfo after the previous pose arrived
   (lockstep), the latency from publishing to receiving the pose: p50, p90, p99, max, stalls over
   100 ms, the throughput 1 / mean latency, and the node's overhead over the offline median; from
   the node's /diagnostics, its mean time from receiving an image to publishing the pose and the
   localizer's share of it, which splits the end-to-end mean into localize, the node's own work
   around it, and what happens outside the node (transport and the executors of both processes).
3. ``--mapping PRESETS`` (``--mapping`` alone: cpu,fast): for each preset, the wall time of
   ``glace-train --preset P`` (``P+option=value``: with ``--option value`` too) on the scene (its
   train split, in a fresh process) and the accuracy of that map on the test split (``Localizer``,
   fp32), with the time against the first preset's.
   ``--frames 0`` skips the node part (the offline part of ``--map`` still runs).

The machine's load average is printed before and after: absolute times on shared machines are noisy,
the ratios against the first configuration in the same run less so.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

STALL_MS = 100.0


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def parse_config(text: str) -> tuple[str, float | None, bool]:
    """``PRECISION[@RATIO][+norefine]`` -> (precision, early_accept_ratio or None for the default, keyframe
    refinement on)."""
    text, _, flag = text.partition("+")
    if flag not in ("", "norefine"):
        raise SystemExit(f"unknown configuration suffix +{flag} (only +norefine)")
    precision, _, ratio = text.partition("@")
    return precision, (float(ratio) if ratio else None), flag != "norefine"


def localizer_options(config: str):
    from glace_core.localizer import LocalizerOptions

    from glace_core.localizer import RefinementOptions

    precision, early, refine = parse_config(config)
    return LocalizerOptions(precision=precision, refinement=RefinementOptions(enabled=refine),
                            **({} if early is None else {"early_accept_ratio": early}))


def offline(scene: Path, map_path: Path, config: str) -> dict:
    """Per-frame stage times, accuracy and poses of ``Localizer.localize`` on the test split."""
    from glace_core.dataset import SceneSplit
    from glace_core.geometry import accuracy_table, pose_errors
    from glace_core.localizer import Localizer

    localizer = Localizer.load(map_path, device="cpu", options=localizer_options(config))
    split = SceneSplit(scene, "test")
    frames = [(split.load_rgb(i), split[i].K, np.asarray(split[i].pose)) for i in range(len(split))]
    for rgb, K, _ in frames:
        localizer.localize(rgb, K)  # warm-up: every graph built
    stages: dict[str, list[float]] = {}
    poses, heads, t_err, r_err = [], [], [], []
    for rgb, K, gt in frames:
        loc = localizer.localize(rgb, K)
        for k, v in loc.timings.items():
            stages.setdefault(k, []).append(v * 1e3)
        poses.append(loc.camera_to_world)
        heads.append(len(loc.candidates))
        t, r = pose_errors(loc.camera_to_world, gt) if loc.success else (np.inf, np.inf)
        t_err.append(t)
        r_err.append(r)
    acc = accuracy_table(np.array(t_err), np.array(r_err))
    return {"stages": {k: float(np.median(v)) for k, v in stages.items()},
            "p90": {k: float(np.percentile(v, 90)) for k, v in stages.items()}, "accuracy": acc, "poses": poses,
            "heads": float(np.mean(heads)),
            "median_t_cm": float(np.median(t_err) * 100), "median_r_deg": float(np.median(r_err))}


def through_node(scene: Path, map_path: Path, config: str, n_frames: int) -> dict:
    """Lockstep latency (ms) of ``n_frames`` images through the node in its own process."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CameraInfo, Image

    from glace_core.dataset import SceneSplit
    from glace_ros.image_conversion import numpy_to_image
    from glace_ros.qos import pose_qos, reliable_image_qos
    from glace_ros.replay_node import NodeProcess, ros_environment
    from glace_ros.stamps import stamp_to_ns

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
    from relocalizer_graph import camera_info_msg, header

    split = SceneSplit(scene, "test")
    frames = [(numpy_to_image(split.load_rgb(i), "rgb8"), split[i].K) for i in range(len(split))]
    h, w = split.load_rgb(0).shape[:2]
    env = ros_environment()
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR", "FASTDDS_DEFAULT_PROFILES_FILE"):
        os.environ.setdefault(key, env[key])
    precision, early, refine = parse_config(config)
    name = f"realtime_{os.getpid()}_{config.replace('@', '_at_').replace('.', '_').replace('+', '_')}"
    params = {"map_path": str(map_path), "image_topic": f"/{name}/image", "camera_info_topic": f"/{name}/info",
              "image_qos": "reliable", "precision": precision, "min_inlier_count": 0, "keyframe_refinement": refine,
              **({} if early is None else {"early_accept_ratio": early}),
              "max_position_stddev": 0.0, "max_rotation_stddev": 0.0, "tf_mode": "none"}
    log = Path(tempfile.mkdtemp(prefix="glace-realtime-")) / "node.log"
    node = NodeProcess(name, params, None, env, log)
    ctx = rclpy.Context()
    rclpy.init(args=[], context=ctx)
    ros = rclpy.create_node(f"{name}_bench", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(ros)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    arrived: dict[int, float] = {}
    cond = threading.Condition()

    def on_pose(msg):
        with cond:
            arrived[stamp_to_ns(msg.header.stamp)] = time.perf_counter()
            cond.notify_all()

    inside: dict[str, list[float]] = {"latency_ms": [], "processing_ms": []}

    def on_diagnostics(msg):  # the node's own means over its last 20 frames, about once a second
        for status in msg.status:
            if name in status.name and len(arrived) > 40:  # after the warm-up frames
                for kv in status.values:
                    if kv.key in inside and kv.value != "nan":
                        inside[kv.key].append(float(kv.value))

    try:
        sub = ros.create_subscription(PoseStamped, f"/{name}/pose", on_pose, pose_qos(10))
        ros.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, pose_qos(10))
        image_pub = ros.create_publisher(Image, params["image_topic"], reliable_image_qos(5))
        info_pub = ros.create_publisher(CameraInfo, params["camera_info_topic"], reliable_image_qos(5))
        deadline = time.monotonic() + 300
        while image_pub.get_subscription_count() == 0 or sub.get_publisher_count() == 0:
            if not node.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not start; {log}:\n{node.log_tail()}")
            time.sleep(0.1)
        time.sleep(1.0)
        latencies = []
        for i in range(n_frames + 20):  # 20 warm-up frames, not counted
            msg, K = frames[i % len(frames)]
            stamp = (i + 1) * 10 ** 7
            msg.header = header(stamp, "camera_optical_frame")
            info_pub.publish(camera_info_msg(K, h, w, stamp, "camera_optical_frame"))
            t0 = time.perf_counter()
            image_pub.publish(msg)
            with cond:
                if not cond.wait_for(lambda: stamp in arrived, 30.0):
                    raise RuntimeError(f"no pose for frame {i} within 30 s; {log}:\n{node.log_tail()}")
            if i >= 20:
                latencies.append((arrived[stamp] - t0) * 1e3)
    finally:
        ex.shutdown(timeout_sec=2.0)
        spinner.join(5.0)
        ros.destroy_node()
        rclpy.shutdown(context=ctx)
        node.stop()
    lat = np.array(latencies)
    return {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
            "p99": float(np.percentile(lat, 99)), "max": float(lat.max()), "mean": float(lat.mean()),
            "stalls": int((lat > STALL_MS).sum()), "frames": int(lat.size),
            **{f"inside_{k}": float(np.mean(v)) if v else float("nan") for k, v in inside.items()}}


def mapping_table(scene: Path, presets: list[str]) -> None:
    """Map ``scene`` with each preset, one after the other (each in a fresh process, never a cached
    map), and print time and accuracy."""
    from bench_scenes import glace_train, training_spec

    work = Path(tempfile.mkdtemp(prefix="glace-realtime-map-"))
    rows = []
    for spec in presets:
        preset, extra, label = training_spec(spec)
        seconds = glace_train(scene, work / f"map_{label}.pt", preset, extra)
        acc = offline(scene, work / f"map_{label}.pt", "fp32")
        rows.append((spec, seconds, acc))
        print(f"[mapping {spec}] {seconds:.0f} s, load average {_load()}", flush=True)
    print(f"\n## mapping ({scene}, glace-train --preset P, wall time of the process) and the map's accuracy")
    print("| preset | mapping | against " + presets[0] + " | 5 cm/5 deg | 10 cm/10 deg | median |\n|---|---|---|---|---|---|")
    for preset, seconds, acc in rows:
        print(f"| {preset} | {seconds:.0f} s | {seconds / rows[0][1]:.2f} | {acc['accuracy']['pct_5cm_5deg']:.0f} % | "
              f"{acc['accuracy']['pct_10cm_10deg']:.0f} % | {acc['median_t_cm']:.2f} cm / {acc['median_r_deg']:.2f} deg |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", type=Path, default=Path("demo_out/scene"), help="DSAC*-layout scene (test split used)")
    p.add_argument("--map", type=Path, default=Path("demo_out/map.pt"), help="its map")
    p.add_argument("--frames", type=int, default=1000, help="frames through the live node per configuration")
    p.add_argument("--precisions", default="fp32,auto",
                   help="configurations, the reference first: PRECISION or PRECISION@EARLY_ACCEPT_RATIO (fp32@0: "
                        "every candidate head on every frame)")
    p.add_argument("--mapping", nargs="?", const="cpu,fast", default="",
                   help="also map the scene with these presets (comma-separated; alone: cpu,fast), each "
                        "PRESET[+option=value...] (cpu+precision=fp32: glace-train --preset cpu --precision fp32): "
                        "time and accuracy")
    args = p.parse_args(argv)
    from glace_core.cpu_features import cpu_features

    precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    print(f"load average before: {_load()}; CPU features: {sorted(cpu_features())}")
    results = {}
    for precision in precisions:
        results[precision] = {"offline": offline(args.scene, args.map, precision)}
        if args.frames > 0:
            results[precision]["node"] = through_node(args.scene, args.map, precision, args.frames)
        print(f"[{precision}] done, load average {_load()}", flush=True)
    base = precisions[0]
    print("\n## offline stage times (median ms per frame)")
    keys = list(results[base]["offline"]["stages"])
    print("| configuration | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for prec, r in results.items():
        print(f"| {prec} | " + " | ".join(f"{r['offline']['stages'].get(k, float('nan')):.1f}" for k in keys) + " |")
    print("\n## offline stage times (p90 ms per frame: where the tail comes from)")
    print("| configuration | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for prec, r in results.items():
        print(f"| {prec} | " + " | ".join(f"{r['offline']['p90'].get(k, float('nan')):.1f}" for k in keys) + " |")
    if args.frames > 0:
        print("\n## through the live node (lockstep, ms)")
        print("| configuration | frames | p50 | p90 | p99 | max | stalls > 100 ms | poses/s (1/mean) | "
              "overhead p50 - offline | p50 / first |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for prec, r in results.items():
            n, off = r["node"], r["offline"]["stages"]["total"]
            print(f"| {prec} | {n['frames']} | {n['p50']:.1f} | {n['p90']:.1f} | {n['p99']:.1f} | {n['max']:.1f} | "
                  f"{n['stalls']} | {1000 / n['mean']:.1f} | {n['p50'] - off:.1f} | "
                  f"{n['p50'] / results[base]['node']['p50']:.2f} |")
        print("\n## where the node's time goes (mean ms per frame; inside the node: its /diagnostics)")
        print("| configuration | end to end | image received -> pose published | localize | in the node, "
              "around localize | outside the node (transport, executors) |\n|---|---|---|---|---|---|")
        for prec, r in results.items():
            n = r["node"]
            print(f"| {prec} | {n['mean']:.1f} | {n['inside_latency_ms']:.1f} | {n['inside_processing_ms']:.1f} | "
                  f"{n['inside_latency_ms'] - n['inside_processing_ms']:.1f} | {n['mean'] - n['inside_latency_ms']:.1f} |")
    print("\n## accuracy (test split)")
    print("| configuration | 5 cm/5 deg | 10 cm/10 deg | median | heads run per frame | median pose change vs " + base +
          " |\n|---|---|---|---|---|---|")
    from glace_core.geometry import pose_errors

    for prec, r in results.items():
        acc, ref = r["offline"], results[base]["offline"]["poses"]
        moves = [pose_errors(a, b) for a, b in zip(acc["poses"], ref) if a is not None and b is not None]
        change = f"{np.median([m[0] for m in moves]) * 100:.3f} cm / {np.median([m[1] for m in moves]):.3f} deg" \
            if moves else "n/a"
        print(f"| {prec} | {acc['accuracy']['pct_5cm_5deg']:.0f} % | {acc['accuracy']['pct_10cm_10deg']:.0f} % | "
              f"{acc['median_t_cm']:.1f} cm / {acc['median_r_deg']:.2f} deg | {acc['heads']:.2f} | {change} |")
    if args.mapping:
        mapping_table(args.scene, [s.strip() for s in args.mapping.split(",") if s.strip()])
    print(f"\nload average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
