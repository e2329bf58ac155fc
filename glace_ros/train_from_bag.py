"""The ``glace-train`` (``ros2 run glace_ros train_map``) console entry point: map training from a
DSAC*-layout scene (:mod:`glace_core.cli.train`) or, with ``--bag``, straight from a rosbag2
(converted to a temporary scene by :func:`glace_ros.bag_to_scene.bag_to_scene`).

It lives in glace_ros because bags are a ROS concept here; glace_core never imports it.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from glace_ros.bag_io import BagError
from glace_ros.bag_to_scene import BagSource, bag_to_scene

__all__ = ["bag_argument_parser", "train_main_with_bag", "main"]


def bag_argument_parser() -> argparse.ArgumentParser:
    """The bag options of ``glace-train`` (the others belong to the scene training CLI)."""
    d = BagSource()
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("training from a rosbag2 (replaces the scene argument)")
    g.add_argument("--bag", default=None, help="rosbag2 folder (or .mcap/.db3 file) to train from")
    g.add_argument("--image-topic", default=None, help="Image or CompressedImage topic (default: the bag's only one)")
    g.add_argument("--camera-info-topic", default=None, help="CameraInfo topic (default: the bag's only one)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--pose-topic", default=None,
                     help="camera poses: PoseStamped, PoseWithCovarianceStamped, Odometry or TransformStamped")
    src.add_argument("--tf-frames", nargs=2, metavar=("MAP", "CAMERA"), default=None,
                     help="camera poses from the bag's /tf and /tf_static: MAP -> CAMERA (an optical frame)")
    g.add_argument("--max-pose-gap", type=float, default=d.max_pose_gap_s,
                   help=f"seconds: trajectory gaps longer than this are not interpolated (default {d.max_pose_gap_s})")
    g.add_argument("--every-nth", type=int, default=d.every_nth, help="use every n-th image of the bag (default 1)")
    g.add_argument("--depth-topic", default=None,
                   help="depth registered to the images (16UC1 mm or 32FC1 m, e.g. aligned_depth_to_color), "
                        "written as the scene's depth/ for --use_depth")
    g.add_argument("--depth-tolerance", type=float, default=d.depth_tolerance_s,
                   help=f"seconds: the depth message nearest in stamp within this is the image's "
                        f"(default {d.depth_tolerance_s})")
    g.add_argument("--keep-scene", default=None, help="write the bag's frames into this folder and keep it")
    return p


def train_main_with_bag(argv: list[str] | None, scene_train_main: Callable[[list[str]], int],
                        prog: str = "glace-train") -> int:
    """``glace-train`` with ``--bag``: without it, ``argv`` goes to ``scene_train_main`` unchanged;
    with it, the bag becomes a temporary DSAC*-layout scene (``train`` split) that is passed as the
    first positional argument, followed by the remaining arguments. Returns the exit code (2 with
    a one-line message for a damaged bag or bad bag options)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        bag_argument_parser().print_help()
        print("\nWith --bag, leave out the scene argument. Scene training options:\n")
        return scene_train_main(argv)
    args, rest = bag_argument_parser().parse_known_args(argv)
    if args.bag is None:
        given = [f for f in ("image_topic", "camera_info_topic", "pose_topic", "tf_frames", "keep_scene",
                             "depth_topic")
                 if getattr(args, f) is not None]
        if given:
            print(f"{prog}: error: {', '.join('--' + f.replace('_', '-') for f in given)} only apply with --bag",
                  file=sys.stderr)
            return 2
        return scene_train_main(rest)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source = BagSource(image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                       pose_topic=args.pose_topic, tf_frames=tuple(args.tf_frames) if args.tf_frames else None,
                       max_pose_gap_s=args.max_pose_gap, every_nth=args.every_nth,
                       depth_topic=args.depth_topic, depth_tolerance_s=args.depth_tolerance)
    scene = Path(args.keep_scene) if args.keep_scene else Path(tempfile.mkdtemp(prefix="glace-bag-scene-"))
    try:
        try:
            if args.keep_scene and (scene / "train").exists():
                raise ValueError(f"--keep-scene {scene} already has a train split")
            conversion = bag_to_scene(args.bag, scene, source, split="train")
        except (BagError, ValueError, FileNotFoundError) as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        print(conversion.summary())
        return scene_train_main([str(scene)] + rest)
    finally:
        if not args.keep_scene:
            shutil.rmtree(scene, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run ``glace-train`` with ``argv`` (default: the command line); returns the exit code."""
    from glace_core.cli.train import main as scene_train_main

    return train_main_with_bag(argv, scene_train_main)


if __name__ == "__main__":
    sys.exit(main())
