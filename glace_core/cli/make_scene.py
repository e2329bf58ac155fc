"""``glace-make-scene OUT --seed S --n-train N --n-test M``: write one synthetic DSAC*-layout scene
(a procedural room textured with photo collages, exact poses, depth in mm) into OUT.

Rendering uses moderngl on EGL (Mesa llvmpipe works headless), else a PyTorch ray-caster.
Exit codes: 0 done, 2 bad options or rendering failure.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from glace_core.synthetic import BACKENDS, TRAJECTORIES, SceneConfig, make_scene

_DEFAULTS = SceneConfig()


def _resolution(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 480x640 (HxW), got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"resolution must be at least 8x8, got {text!r}")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glace-make-scene", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="scene folder to write (train/ and test/ inside)")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed,
                        help=f"room, textures and trajectory seed (default: {_DEFAULTS.seed})")
    parser.add_argument("--n-train", type=int, default=_DEFAULTS.n_train,
                        help=f"training frames (default: {_DEFAULTS.n_train})")
    parser.add_argument("--n-test", type=int, default=_DEFAULTS.n_test,
                        help=f"test frames (default: {_DEFAULTS.n_test})")
    parser.add_argument("--trajectory", choices=TRAJECTORIES, default=_DEFAULTS.trajectory,
                        help=f"camera path: a loop around the room or random views (default: {_DEFAULTS.trajectory})")
    h, w = _DEFAULTS.resolution
    parser.add_argument("--resolution", type=_resolution, default=_DEFAULTS.resolution, metavar="HxW",
                        help=f"image size (default: {h}x{w})")
    parser.add_argument("--backend", choices=BACKENDS, default=_DEFAULTS.backend,
                        help=f"renderer: gl (moderngl/EGL), torch (ray-caster) or auto (gl when an EGL context "
                             f"can be made) (default: {_DEFAULTS.backend})")
    parser.add_argument("--texels-per-m", type=float, default=_DEFAULTS.texels_per_m,
                        help=f"texture resolution on the surfaces (default: {_DEFAULTS.texels_per_m:g})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        info = make_scene(args.out, seed=args.seed, n_train=args.n_train, n_test=args.n_test,
                          trajectory=args.trajectory, resolution=args.resolution, backend=args.backend,
                          texels_per_m=args.texels_per_m, progress=True)
    except (ValueError, RuntimeError) as exc:
        print(f"glace-make-scene: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {info.counts['train']} train and {info.counts['test']} test frames to {info.root} "
          f"(backend {info.backend})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
