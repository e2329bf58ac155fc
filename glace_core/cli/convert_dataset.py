"""``glace-convert-dataset {7scenes,12scenes,cambridge,aachen} RAW_DIR OUT_DIR``: convert a public
relocalisation dataset from its raw release layout into DSAC*-layout scenes under OUT_DIR
(``7scenes_<scene>``, ``12scenes_<apt>_<room>``, ``Cambridge_<Scene>``, ``aachen``).

RAW_DIR holds the unpacked release (or one scene of it). ``--download`` fetches the public
archives into RAW_DIR first (see each converter's docstring in glace_core/converters/ for the
URLs); without internet access it fails with a message saying what to fetch by hand.
Exit codes: 0 done, 2 bad options or data.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from glace_core.converters import DATASETS, ConversionError, converter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glace-convert-dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which dataset RAW_DIR holds")
    parser.add_argument("raw_dir", type=Path, help="the raw release folder (or one scene folder of it)")
    parser.add_argument("out_dir", type=Path, help="folder that receives the converted scene folders")
    parser.add_argument("--scene", default=None,
                        help="convert only this scene (7scenes: chess; 12scenes: apt1_kitchen; cambridge: "
                             "KingsCollege) (default: all scenes found)")
    parser.add_argument("--pgt", type=Path, default=None, metavar="PATH",
                        help="7scenes/12scenes: take poses from SfM pseudo ground truth: a folder with "
                             "<scene>_<split>.txt or one list file (lines 'image qw qx qy qz tx ty tz [f]', "
                             "world-to-camera) (default: the dataset's own poses)")
    parser.add_argument("--download", action="store_true",
                        help="download and unpack the public archives into RAW_DIR first (default: off)")
    parser.add_argument("--depth", choices=("registered", "raw", "none"), default="registered",
                        help="7scenes depth maps: registered to the RGB camera, raw (unregistered) or none "
                             "(default: registered)")
    parser.add_argument("--resolution", type=int, default=480,
                        help="cambridge: shorter image side written (PIL bilinear); 0 keeps the raw images "
                             "(default: 480)")
    parser.add_argument("--link", action="store_true",
                        help="symlink unchanged images instead of copying them (default: copy)")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Convert as ``args`` say; returns {scene: {split: frame count}}."""
    module = converter(args.dataset)
    options = {"scene": args.scene, "download_missing": args.download, "link": args.link}
    if args.pgt is not None:
        if args.dataset not in ("7scenes", "12scenes"):
            raise ConversionError(f"--pgt applies to 7scenes and 12scenes, not {args.dataset}")
        options["pgt"] = args.pgt
    if args.dataset == "7scenes":
        options["depth"] = args.depth
    if args.dataset == "cambridge":
        options["resolution"] = args.resolution
    if not args.download and not args.raw_dir.is_dir():
        raise ConversionError(f"raw folder {args.raw_dir} does not exist (pass --download to fetch the dataset)")
    return module.convert(args.raw_dir, args.out_dir, **options)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        counts = run(args)
    except (ConversionError, ValueError, OSError) as exc:
        print(f"glace-convert-dataset: error: {exc}", file=sys.stderr)
        return 2
    for scene, splits in counts.items():
        print(f"{scene}: " + ", ".join(f"{split} {n} frames" for split, n in splits.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
