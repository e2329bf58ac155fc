"""glace-keyframes: add (or rebuild) the keyframes of a map from its mapping split.

    glace-keyframes SCENE MAP [--keyframe_keypoints 1024] [--use_depth True|False] [--device auto]

Writes ``MAP.keyframes.npz`` (``glace_core.keyframes``) beside the map, which the Localizer (glace-eval,
the node) then uses to refine poses (``glace_core.keyframe_refinement``). glace-train writes it itself
for the cpu, quality and fast presets; this tool is for maps made before, or made with other options.
SCENE is the DSAC*-layout scene the map was trained on (its ``train`` split).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from glace_core.cli.train import _strtobool
from glace_core.keyframes import DEFAULT_KEYFRAME_KEYPOINTS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glace-keyframes", description=__doc__.split("\n\n")[0])
    p.add_argument("scene", type=Path, help="the DSAC*-layout scene the map was trained on (its train split)")
    p.add_argument("map", type=Path, help="the map file (glace-train's output)")
    p.add_argument("--keyframe_keypoints", type=int, default=DEFAULT_KEYFRAME_KEYPOINTS,
                   help="keypoints kept per mapping frame (strongest first)")
    p.add_argument("--use_depth", type=_strtobool, default=True,
                   help="world points from the split's depth/ where it has one (False: from the map)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda[:N]")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from glace_core.dataset import DatasetError, SceneSplit
    from glace_core.keyframes import write_map_keyframes
    from glace_core.map_files import MapFileError

    try:
        if args.keyframe_keypoints < 1:
            raise ValueError(f"--keyframe_keypoints must be >= 1, got {args.keyframe_keypoints}")
        if not args.map.is_file():
            raise FileNotFoundError(f"map file not found: {args.map}")
        if not args.scene.is_dir():
            raise FileNotFoundError(f"scene folder not found: {args.scene}")
        path = write_map_keyframes(args.map, SceneSplit(args.scene, "train"), max_keypoints=args.keyframe_keypoints,
                                   use_depth=args.use_depth, device=args.device, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, DatasetError, MapFileError) as exc:
        print(f"glace-keyframes: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
