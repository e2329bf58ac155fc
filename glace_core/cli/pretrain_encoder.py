"""``glace-pretrain-encoder SCENES... --output ENC.pt``: pretrain an ACE-layout encoder over many scenes.

Each SCENE is a DSAC*-layout scene folder (its ``train`` split is used) or a split folder.
Distributed: ``torchrun --nproc_per_node N $(which glace-pretrain-encoder) SCENES... --output ENC.pt``.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from glace_core.pretraining.config import PretrainConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glace-pretrain-encoder", description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("scenes", nargs="*", type=Path,
                        help="DSAC*-layout scene folders (or @LIST: a text file with one folder per line); "
                             "may be omitted with --resume")
    parser.add_argument("--output", "-o", type=Path, required=True, help="encoder file to write (ACE layout)")
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint path (default: OUTPUT.ckpt)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (CUDA if available)")
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    helps = {"iterations": "optimiser steps", "batch_images": "images per step (one scene per step)",
             "image_height": "network input height (shorter side) in px",
             "depth_weight": "weight of the depth L1 term (metres); 0 disables depth supervision",
             "max_frames_per_scene": "0: all training frames of a scene, else an even subset"}
    for field in dataclasses.fields(PretrainConfig):
        parser.add_argument(f"--{field.name}", type=field.type if not isinstance(field.type, str)
                            else {"int": int, "float": float}[field.type],
                            default=field.default, help=helps.get(field.name, field.name.replace("_", " ")))
    return parser


def _expand(scenes: list[Path]) -> list[Path]:
    out: list[Path] = []
    for scene in scenes:
        text = str(scene)
        if text.startswith("@"):
            lines = Path(text[1:]).read_text(encoding="utf-8").splitlines()
            out.extend(Path(line.strip()) for line in lines if line.strip() and not line.startswith("#"))
        else:
            out.append(scene)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = PretrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)})
    scenes = _expand(args.scenes)
    if not scenes and args.resume is None:
        parser.error("give at least one scene folder (or --resume CHECKPOINT)")
    for scene in scenes:
        if not scene.is_dir():
            parser.error(f"scene folder not found: {scene}")
    from glace_core.pretraining.trainer import pretrain_encoder

    try:
        out = pretrain_encoder([str(s) for s in scenes], args.output, config, resume=args.resume,
                               checkpoint_path=args.checkpoint, device=args.device, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"glace-pretrain-encoder: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
