"""``glace-train SCENE OUTPUT_MAP [options]``: train a GLACE map (head) for a DSAC*-layout scene.

The options are those of GLACE's train_ace.py, with the same names and defaults (``--preset
paper``), plus --device, --precision, --seed and --preset. ``--preset cpu`` layers CPU-sized values
over the paper defaults (see glace_core/training/config.py); options given explicitly win over the preset.
Booleans take True/False like the reference (``--use_aug False``). ``--num_clusters K`` without
``--cluster_idx`` trains K heads, one per spatial cluster of the mapping frames, each for
``--max_iterations``, and writes them as one ensemble map (glace_core/head_ensemble.py).

Distributed: ``torchrun --nproc-per-node N -m glace_core.cli.train SCENE MAP ...``.
Exit codes: 0 done, 2 bad options or data, 130/143 interrupted by SIGINT/SIGTERM (no map written).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from pathlib import Path

from glace_core.cpu_features import PRECISIONS
from glace_core.training.config import DEPTH_MODES, LOSS_SCHEDULES, LOSS_TYPES, PRESETS, TrainConfig

HELP = {
    "global_feat": "condition the head on the global features of each image (features.npy of the split)",
    "feat_name": "file name of the global features inside each split folder",
    "feat_noise_std": "std of the Gaussian noise added to the global features during training",
    "num_decoder_clusters": "number of position-decoder centres (KMeans over the cameras); 1: mean camera centre",
    "head_channels": "width of the head",
    "mlp_ratio": "width of the head's blocks relative to head_channels",
    "encoder_path": "encoder weights file, or a named encoder: 'default' (the shipped default), 'xfeat', "
                    "'ace-random:<seed>'",
    "num_head_blocks": "number of extra residual blocks in the head",
    "learning_rate_min": "accepted for compatibility; unused, as in the reference (OneCycle schedule)",
    "learning_rate_max": "peak learning rate of the OneCycle schedule",
    "training_buffer_size": "number of sampled cells in the training buffer",
    "samples_per_image": "cells drawn per image and pass when filling the buffer",
    "batch_size": "cells per optimisation step (multiples of 512 use the reference's layout)",
    "max_iterations": "number of optimisation steps",
    "repro_loss_hard_clamp": "reprojection errors above this (px) count as invalid",
    "repro_loss_soft_clamp": "soft clamp of the robust loss (px; dyntanh: at the start)",
    "repro_loss_soft_clamp_min": "soft clamp of dyntanh at the end (px)",
    "repro_loss_type": "robust reprojection loss",
    "repro_loss_schedule": "how the dyntanh clamp shrinks over the iterations",
    "use_half": "fp16 autocast and gradient scaling (CUDA only; ignored on CPU)",
    "use_homogeneous": "the head predicts homogeneous coordinates",
    "use_aug": "scale, rotation, brightness and contrast augmentation",
    "aug_rotation": "max in-plane rotation of the augmentation (degrees)",
    "aug_scale": "max scale factor of the augmentation (range [1/s, s])",
    "image_resolution": "shorter side of the network input (px)",
    "depth_min": "predictions closer than this (m) count as invalid",
    "depth_target": "invalid predictions are pulled to this depth (m) along the pixel ray",
    "depth_max": "predictions farther than this (m) count as invalid",
    "use_depth": "ours: supervise the 3D point of cells with a known depth (the split's depth/ folder, "
                 "z-depth registered to the RGB image): off, auto (when there is one) or on (required)",
    "depth_loss_weight": "ours: weight of the 3D error (per metre) against the reprojection error (per px) "
                         "where depth supervises a cell",
    "novel_view_ratio": "ours: probability that a training-buffer image is a novel view of a mapping frame, "
                        "rendered from its depth from a camera moved and turned nearby (0: off; used only where "
                        "the split has depth/)",
    "novel_view_offset": "ours: max distance (m) of a novel view's camera from its mapping frame's",
    "novel_view_yaw": "ours: max turn (degrees) of a novel view's camera about its own y (down) axis",
    "keyframe_keypoints": "ours: XFeat keypoints per mapping frame written to <map>.keyframes.npz for the pose "
                          "refinement (glace_core.keyframes; 0: none; the cpu, quality and fast presets: 1024)",
    "num_clusters": "split the mapping frames into this many KMeans clusters of camera positions; without "
                    "--cluster_idx, train one head per cluster and write them as one ensemble map",
    "cluster_idx": "train only on the frames of this cluster (with --num_clusters), as the reference",
    "cluster_overlap": "a frame also joins every cluster whose centre is within this factor of the distance to "
                       "its nearest one (1: disjoint clusters, as the reference)",
    "render_visualization": "accepted for compatibility; True is refused (no 3D renderer in glace-ros)",
    "render_target_path": "accepted for compatibility (rendering is not supported)",
    "render_flipped_portrait": "accepted for compatibility (rendering is not supported)",
    "render_map_error_threshold": "accepted for compatibility (rendering is not supported)",
    "render_map_depth_filter": "accepted for compatibility (rendering is not supported)",
    "render_camera_z_offset": "accepted for compatibility (rendering is not supported)",
    "device": "auto (CUDA if available), cpu, cuda, cuda:N or mps",
    "precision": "CPU head training precision: fp32 (the default), auto (bf16 autocast, output layer fp32, where "
                 "the CPU has AVX512_BF16 or AMX; else fp32: about 0.6x the training time there, a few points less "
                 "accurate), or bf16 (refused with a warning without them); CUDA: use_half",
    "seed": "random seed (each distributed rank uses seed + rank)",
    "preset": "option set layered over the paper defaults: "
              + "; ".join(f"{name}: {', '.join(f'{k}={v}' for k, v in values.items()) or 'the reference defaults'}"
                          for name, values in PRESETS.items()),
}
CHOICES = {"precision": PRECISIONS, "use_depth": DEPTH_MODES, "repro_loss_type": LOSS_TYPES,
           "repro_loss_schedule": LOSS_SCHEDULES, "preset": tuple(PRESETS)}


def _strtobool(text: str) -> bool:
    """True/False (also yes/no, 1/0, on/off, any case) -> bool, like the reference's flags."""
    value = str(text).strip().lower()
    if value in ("y", "yes", "t", "true", "on", "1"):
        return True
    if value in ("n", "no", "f", "false", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _field_type(field: dataclasses.Field):
    hints = typing.get_type_hints(TrainConfig)
    hint = hints[field.name]
    if hint is bool:
        return _strtobool
    args = [a for a in typing.get_args(hint) if a is not type(None)]  # Optional[int] -> int
    return args[0] if args else hint


def build_parser() -> argparse.ArgumentParser:
    """The glace-train parser: SCENE, OUTPUT_MAP and one ``--<field>`` per TrainConfig field."""
    parser = argparse.ArgumentParser(prog="glace-train", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("scene", type=Path, help="DSAC*-layout scene folder (its train split is used)")
    parser.add_argument("output_map_file", type=Path, help="map (head) file to write; a <map>.json sidecar goes beside it")
    for field in dataclasses.fields(TrainConfig):
        kwargs = {"type": _field_type(field), "default": field.default, "help": HELP[field.name]}
        if field.name in CHOICES:
            kwargs["choices"] = CHOICES[field.name]
        parser.add_argument(f"--{field.name}", **kwargs)
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bars")
    return parser


def explicit_options(parser: argparse.ArgumentParser, argv: list[str] | None) -> dict:
    """The TrainConfig options given explicitly on the command line (not left at their default)."""
    quiet = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:  # same options, every default suppressed
        if action.option_strings and action.dest != "help":
            quiet._add_action(_copy_without_default(action))
        elif not action.option_strings:
            quiet.add_argument(action.dest, nargs=action.nargs)
    given = vars(quiet.parse_args(argv))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in given.items() if k in names and k != "preset"}


def _copy_without_default(action: argparse.Action) -> argparse.Action:
    import copy

    clone = copy.copy(action)
    clone.default = argparse.SUPPRESS
    clone.required = False
    return clone


def config_from_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    """Parse ``argv`` into (namespace, TrainConfig): paper defaults, then the preset, then explicit flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.from_preset(args.preset, **explicit_options(parser, argv))
    except ValueError as exc:
        parser.error(str(exc))
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = config_from_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from glace_core.dataset import DatasetError, SceneSplit
    from glace_core.training.trainer import TrainingInterrupted, train_map

    try:
        if not args.scene.is_dir():
            raise FileNotFoundError(f"scene folder not found: {args.scene}")
        dataset = SceneSplit(args.scene, "train")
        result = train_map(config, dataset, args.output_map_file, progress=not args.no_progress,
                           metadata={"scene": str(args.scene.resolve())})
    except TrainingInterrupted as exc:
        print(f"glace-train: {exc}; no map was written", file=sys.stderr)
        return 128 + exc.signum
    except (ValueError, FileNotFoundError, DatasetError) as exc:
        print(f"glace-train: error: {exc}", file=sys.stderr)
        return 2
    if result.output_path is not None:
        heads = f"{result.heads} heads, " if result.heads > 1 else ""
        print(f"wrote {result.output_path} ({heads}{result.frames} frames, {result.iterations} iterations, "
              f"buffer {result.buffer_seconds:.1f} s, training {result.train_seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
