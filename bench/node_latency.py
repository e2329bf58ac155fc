"""End-to-end latency of the relocalizer node and its overhead over the offline pipeline.

    . scripts/env.sh && python bench/node_latency.py                      # the tests' tiny scene
    . scripts/env.sh && python bench/node_latency.py --scene S --map M.pt --split test --resolution 480

Measured in one run, on the same frames, after one warm-up frame each:

- offline: ``glace_core.localizer.Localizer.localize`` called directly (preprocess, network, RANSAC, covariance);
- node: an image and its CameraInfo published on a live rclpy graph (loopback, this process, a DDS
  domain of its own), the node's PoseStamped received; one frame at a time (lockstep), so no frame
  waits behind another.

The overhead (node median - offline median) is what ROS adds: serialisation and delivery both ways,
image conversion, CameraInfo matching, the worker hand-off and the message construction.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))


def _frames(scene: Path, split: str, limit: int):
    from relocalizer_scene import load_frames

    return load_frames(scene, split)[:limit]


def measure(map_path: str, frames, resolution: int, encoder: str = "", min_inliers: int = 0,
            repeats: int = 1) -> dict:
    """Median/p90 seconds of the offline pipeline and of the node (publish -> pose) over ``frames``."""
    import rclpy

    from glace_ros.image_conversion import numpy_to_image
    from glace_core.localizer import Localizer, LocalizerOptions
    from relocalizer_graph import RelocalizerGraph, make_context

    localizer = Localizer.load(map_path, encoder, "auto", options=LocalizerOptions(image_resolution=resolution))
    localizer.localize(frames[0].rgb, frames[0].K)  # warm-up
    offline = []
    for _ in range(repeats):
        for f in frames:
            t0 = time.perf_counter()
            localizer.localize(f.rgb, f.K)
            offline.append(time.perf_counter() - t0)

    context = make_context()
    graph = RelocalizerGraph(context, "latency_bench", {"map_path": str(map_path), "encoder_path": encoder,
                                                        "image_resolution": resolution,
                                                        "min_inlier_count": min_inliers})
    try:
        if not graph.wait_matched():
            raise RuntimeError("the node's topics did not match")
        h, w = frames[0].rgb.shape[:2]
        graph.localize_lockstep(numpy_to_image(frames[0].rgb, "rgb8"), frames[0].K, h, w, 1)  # warm-up
        node, processing, stamp = [], [], 10
        for _ in range(repeats):
            for f in frames:
                stamp += 1
                pose = graph.localize_lockstep(numpy_to_image(f.rgb, "rgb8"), f.K, *f.rgb.shape[:2], stamp)
                if pose is not None:
                    node.append(graph.poses[stamp][1] - graph.published_at[stamp])
                    processing.append(graph.node.stats.processing_s[-1])
    finally:
        graph.close()
        rclpy.shutdown(context=context)
    if not node:
        raise RuntimeError("the node answered no frame; check the map and min_inlier_count")
    return {"frames": len(offline), "answered": len(node),
            "offline_median_s": float(np.median(offline)), "offline_p90_s": float(np.percentile(offline, 90)),
            "node_median_s": float(np.median(node)), "node_p90_s": float(np.percentile(node, 90)),
            "node_pipeline_median_s": float(np.median(processing)),
            "overhead_median_s": float(np.median(node) - np.median(offline))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scene", default=None, help="DSAC*-layout scene (default: build the tests' tiny scene)")
    p.add_argument("--map", default=None, help="map (head) file for --scene")
    p.add_argument("--encoder", default="", help="encoder spec for --map (empty: the default)")
    p.add_argument("--split", default="test", help="split of --scene whose frames are used")
    p.add_argument("--resolution", type=int, default=None, help="image_resolution (default: the scene's)")
    p.add_argument("--frames", type=int, default=20, help="frames used")
    p.add_argument("--repeats", type=int, default=3, help="passes over the frames")
    p.add_argument("--work", default="/tmp/glace_node_latency", help="folder for the built tiny scene")
    args = p.parse_args(argv)
    if args.scene is None:
        from relocalizer_scene import build_tiny_scene

        tiny = build_tiny_scene(Path(args.work))
        frames, map_path, encoder = tiny.frames, str(tiny.map_path), tiny.encoder
        resolution = args.resolution or tiny.resolution
    else:
        if args.map is None:
            p.error("--map is required with --scene")
        frames, map_path, encoder = _frames(Path(args.scene), args.split, args.frames), args.map, args.encoder
        resolution = args.resolution or 480
    frames = frames[: args.frames]
    r = measure(map_path, frames, resolution, encoder, repeats=args.repeats)
    h, w = frames[0].rgb.shape[:2]
    print(f"node latency bench: {r['frames']} frames ({r['answered']} answered) of {w}x{h}, image_resolution "
          f"{resolution}, map {map_path}")
    print(f"{'':34}{'median':>10}{'p90':>10}")
    print(f"{'offline pipeline (localize)':34}{1e3 * r['offline_median_s']:>8.1f}ms{1e3 * r['offline_p90_s']:>8.1f}ms")
    print(f"{'node: image publish -> pose':34}{1e3 * r['node_median_s']:>8.1f}ms{1e3 * r['node_p90_s']:>8.1f}ms")
    print(f"{'node: its pipeline time':34}{1e3 * r['node_pipeline_median_s']:>8.1f}ms")
    print(f"{'node overhead (median difference)':34}{1e3 * r['overhead_median_s']:>8.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
