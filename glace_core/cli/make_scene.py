"""``glace-make-scene OUT --seed S --n-train N --n-test M``: write one synthetic DSAC*-layout scene
(a procedural room textured with photo collages, exact poses, depth in mm) into OUT.

Variants that look more like real buildings and make the test split harder (each off by default;
the defaults write the same scene as before, byte for byte; every variant is deterministic for a
seed):
  --texture sparse      painted walls, floor and ceiling, 2-4 framed photos a room, plain furniture
  --rooms N             N rooms (2-6) joined by corridors, 10-30 m across, the same furniture models
                        in several rooms; the loop trajectory tours every room
  --test-lighting changed   the test split under other lights (places, brightness, colour)
  --test-offset M, --test-yaw D   test views moved M metres sideways/up-down off the mapping path
                        and turned D degrees about the vertical (clamped to stay 0.5 m off walls)
  --test-camera fx,fy,cx,cy,WxH   another camera for the test split (written as a full K)
  --motion-blur PX      linear motion blur PX pixels long on the test images

Rendering uses moderngl on EGL (Mesa llvmpipe works headless), else a PyTorch ray-caster.
Exit codes: 0 done, 2 bad options or rendering failure.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from glace_core.synthetic import BACKENDS, LIGHTINGS, TEXTURES, TRAJECTORIES, Camera, SceneConfig, make_scene
from glace_core.synthetic.building import MAX_ROOMS

_DEFAULTS = SceneConfig()


def _resolution(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 480x640 (HxW), got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"resolution must be at least 8x8, got {text!r}")
    return h, w


def _camera(text: str) -> str:
    if not text:  # the default: the mapping camera
        return text
    try:
        Camera.from_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


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
    variants = parser.add_argument_group("variants (realistic buildings, harder test splits)")
    variants.add_argument("--texture", choices=TEXTURES, default=_DEFAULTS.texture,
                          help="dense: photo collages on every surface; sparse: painted walls, floor and ceiling "
                               "(smooth colour, faint variation), 2-4 framed photos a room, one colour a piece of "
                               f"furniture (default: {_DEFAULTS.texture})")
    variants.add_argument("--rooms", type=int, default=_DEFAULTS.rooms, metavar="N",
                          help=f"rooms, 1-{MAX_ROOMS}: 2 or more are joined by corridors into a building 10-30 m "
                               "across with furniture models repeated between rooms; the loop trajectory tours every "
                               f"room (default: {_DEFAULTS.rooms})")
    variants.add_argument("--test-lighting", choices=LIGHTINGS, default=_DEFAULTS.test_lighting,
                          help="changed: the test split is lit by other lights (moved ceiling lights and a low lamp "
                               "by a wall), 0.5-0.7x or 1.3-1.5x as bright, at 2700-3200 K or 6500-8000 K; the "
                               f"training images stay the same (default: {_DEFAULTS.test_lighting})")
    variants.add_argument("--test-offset", type=float, default=_DEFAULTS.test_offset, metavar="METRES",
                          help="move each test view this far off the mapping path, sideways and up/down (elevation "
                               "within 30 deg); shrunk where it would leave the free space (0.5 m from walls, "
                               f"0.35 m from furniture), with a warning (default: {_DEFAULTS.test_offset:g})")
    variants.add_argument("--test-yaw", type=float, default=_DEFAULTS.test_yaw, metavar="DEGREES",
                          help="turn each test view this far left or right about the vertical, shrunk (last) where "
                               f"the view would come nearer than 0.3 m to a surface (default: {_DEFAULTS.test_yaw:g})")
    variants.add_argument("--test-camera", type=_camera, default=_DEFAULTS.test_camera, metavar="fx,fy,cx,cy,WxH",
                          help="the test split's camera: focal lengths and principal point in pixels, width x "
                               "height (portrait allowed); its calibration files hold the full K (default: the "
                               "mapping camera)")
    variants.add_argument("--motion-blur", type=float, default=_DEFAULTS.motion_blur, metavar="PIXELS",
                          help="blur each test image along a straight streak this many pixels long, at a random "
                               f"angle per frame (default: {_DEFAULTS.motion_blur:g}, none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        info = make_scene(args.out, seed=args.seed, n_train=args.n_train, n_test=args.n_test,
                          trajectory=args.trajectory, resolution=args.resolution, backend=args.backend,
                          texels_per_m=args.texels_per_m, progress=True, texture=args.texture, rooms=args.rooms,
                          test_lighting=args.test_lighting, test_offset=args.test_offset, test_yaw=args.test_yaw,
                          test_camera=args.test_camera, motion_blur=args.motion_blur)
    except (ValueError, RuntimeError) as exc:
        print(f"glace-make-scene: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {info.counts['train']} train and {info.counts['test']} test frames to {info.root} "
          f"(backend {info.backend})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
