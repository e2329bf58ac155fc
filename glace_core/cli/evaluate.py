"""``glace-eval SCENE MAP [options]``: localise the test frames of a scene against a map.

The options are those of GLACE's test_ace.py, with the same names and defaults, plus --device,
--seed, --num_threads, --split, --global-features-checkpoint and --precision. Writes
``poses_<scene>_<session>.txt`` (world-to-camera poses, the reference's format) and
``test_<scene>_<session>.txt`` next to the map file, and prints the accuracy. See
glace_core/evaluation.py for the file formats. Exit codes: 0 done, 2 bad options or data.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from glace_core.cpu_features import PRECISIONS
from glace_core.localizer import DEFAULT_EARLY_ACCEPT_RATIO, DEFAULT_ENSEMBLE_FUSION, ENSEMBLE_FUSIONS, RansacOptions
from glace_core.map_predictor import DEFAULT_CANDIDATES

#: the reference's RANSAC flags (test_ace.py) -> RansacOptions fields, plus --seed, --max_candidates and --num_threads
RANSAC_FLAGS = (("--hypotheses", "-hyps", "hypotheses", "RANSAC hypotheses per frame"),
                ("--threshold", "-t", "threshold", "inlier threshold (px)"),
                ("--inlieralpha", "-ia", "inlier_alpha", "alpha of the soft inlier count"),
                ("--maxpixelerror", "-maxerrr", "max_reprojection_error",
                 "reprojection errors are clamped at this value (px) when scoring"),
                ("--seed", None, "seed", "RANSAC seed (the same for every frame)"),
                ("--max_candidates", None, "max_candidates", "RANSAC P3P candidates drawn at most per head"),
                ("--num_threads", None, "num_threads",
                 "RANSAC threads; 0: all cores, shared by the candidate heads of an ensemble, solved at once"))


def add_ransac_arguments(parser: argparse.ArgumentParser, defaults: bool = True,
                         only: tuple[str, ...] | None = None) -> None:
    """The reference's RANSAC flags (``only``: these fields); their defaults are RansacOptions' (the
    native solver's). ``defaults`` False: every flag defaults to None (a caller that forwards only
    the flags given)."""
    d = RansacOptions()
    for flag, short, name, text in RANSAC_FLAGS:
        if only is not None and name not in only:
            continue
        value = getattr(d, name)
        names = [flag] + ([short] if short else [])
        parser.add_argument(*names, dest=name, type=type(value), default=value if defaults else None,
                            help=text if defaults else f"{text} (default: the node's, {value})")


def ransac_options(args: argparse.Namespace) -> RansacOptions:
    """RansacOptions from the flags of ``add_ransac_arguments`` (None keeps the default)."""
    given = {name: getattr(args, name) for _, _, name, _ in RANSAC_FLAGS if getattr(args, name, None) is not None}
    return RansacOptions(**given)


def _strtobool(text: str) -> bool:
    from glace_core.cli.train import _strtobool as strtobool

    return strtobool(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glace-eval", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("scene", type=Path, help="DSAC*-layout scene folder")
    parser.add_argument("network", type=Path, help="map (head) file to evaluate")
    parser.add_argument("--scene_id", type=int, default=-1,
                        help="scene of a multi-scene (rooms) dataset; only -1 (a single scene) is supported")
    parser.add_argument("--feat_name", default="features.npy", help="global features file in the split folder")
    parser.add_argument("--encoder_path", default=None,
                        help="encoder weights file or named encoder ('xfeat', 'ace-random:<seed>'); "
                             "None: the encoder the map's sidecar names, else the shipped default")
    parser.add_argument("--session", "-sid", default="", help="name of this run, appended to the output file names")
    parser.add_argument("--image_resolution", type=int, default=None,
                        help="shorter side of the network input (px); default: the resolution the map was trained "
                             "at (from its sidecar), else 480 as the reference")
    parser.add_argument("--match_focal", type=_strtobool, default=True,
                        help="without --image_resolution: resize a test image whose focal length differs from the "
                             "mapping frames' by more than 10 %% so that the two match at network resolution "
                             "(maps whose sidecar records their focal length)")
    add_ransac_arguments(parser)
    for name, default in (("render_visualization", False), ("render_target_path", "renderings"),
                          ("render_flipped_portrait", False), ("render_sparse_queries", False),
                          ("render_pose_error_threshold", 20), ("render_map_depth_filter", 10),
                          ("render_camera_z_offset", 4), ("render_frame_skip", 1)):
        kind = _strtobool if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{name}", type=kind, default=default,
                            help="accepted for compatibility (glace-ros has no 3D renderer; True is refused)"
                            if name == "render_visualization" else "accepted for compatibility")
    parser.add_argument("--split", default="test", help="split folder of the scene to evaluate")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--global-features-checkpoint", dest="global_features_checkpoint", default=None,
                        help="R2Former checkpoint to compute global features when the split has no --feat_name")
    parser.add_argument("--plain_inference", action="store_true",
                        help="on CPU, run the plain PyTorch encoder and head instead of the fast path "
                             "(glace_core.fast_inference; same scene coordinates within 1e-4)")
    parser.add_argument("--ensemble_candidates", type=int, default=DEFAULT_CANDIDATES,
                        help="for an ensemble map (glace-train --num_clusters): heads tried per frame, the best-routed "
                             "first, made one pose by --ensemble_fusion (0: every head)")
    parser.add_argument("--early_accept_ratio", type=float, default=DEFAULT_EARLY_ACCEPT_RATIO,
                        help="for an ensemble map: keep the best-routed head's pose without running the other "
                             "candidates when its RANSAC inliers are at least this share of the cells (0: off)")
    parser.add_argument("--ensemble_fusion", choices=ENSEMBLE_FUSIONS, default=DEFAULT_ENSEMBLE_FUSION,
                        help="for an ensemble map, when more than one candidate runs: 'union' solves one RANSAC over "
                             "the cells of every candidate, 'best' solves each and keeps the most inliers (ACE's rule)")
    parser.add_argument("--keyframe_refinement", type=_strtobool, default=True,
                        help="refine each pose against the map's keyframes (<map>.keyframes.npz, written by glace-train's "
                             "cpu presets and glace-keyframes) when it has them")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="CPU fast path: auto (bf16 where the CPU has AVX512_BF16 or AMX, else fp32), fp32, or "
                             "bf16 (encoder and heads in bf16, the heads' last layer in fp32; on a CPU without bf16 "
                             "fp32 runs, with a warning); CUDA runs fp16 autocast")
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    return parser


def format_summary(summary: dict) -> str:
    """The printed report: accuracy percentages, medians, time per frame with its breakdown."""
    lines = [f"frames: {summary['frames']} (localised: {summary['localised']})"]
    accuracy = summary.get("accuracy") or {}
    if summary.get("with_ground_truth"):
        for key, value in accuracy.items():
            if key.startswith("pct") or "within" in key or key.endswith("%"):
                lines.append(f"{key}: {value:.1f}%")
        lines.append(f"median error: {summary['median_r_deg']:.2f} deg, {summary['median_t_cm']:.1f} cm")
    else:
        lines.append("no ground truth: accuracy not computed")
    t = summary["time_per_frame_s"]
    names = {"global": "global descriptor", "network": "encoder+head", "head": "head(s)", "ransac": "RANSAC",
             "refine": "keyframe refinement"}
    parts = ", ".join(f"{names.get(k, k)} {v * 1000:.1f} ms" for k, v in t.items())
    lines.append(f"avg time per frame: {summary['avg_time_s'] * 1000:.1f} ms ({parts})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scene_id != -1:
        parser.error("--scene_id: multi-scene (rooms) datasets are not supported; use -1")
    if args.render_visualization:
        parser.error("--render_visualization True is not supported (glace-ros has no 3D renderer)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from glace_core.dataset import DatasetError
    from glace_core.evaluation import evaluate_scene, write_eval_outputs

    try:
        if not args.scene.is_dir():
            raise FileNotFoundError(f"scene folder not found: {args.scene}")
        result = evaluate_scene(
            args.scene, args.network, split=args.split, encoder_path=args.encoder_path,
            image_resolution=args.image_resolution, ransac=ransac_options(args), feat_name=args.feat_name,
            device=args.device,
            global_features_checkpoint=args.global_features_checkpoint, progress=not args.no_progress,
            fast_inference=not args.plain_inference, ensemble_candidates=args.ensemble_candidates,
            precision=args.precision, early_accept_ratio=args.early_accept_ratio, match_focal=args.match_focal,
            ensemble_fusion=args.ensemble_fusion, keyframe_refinement=args.keyframe_refinement)
        poses_path, test_path = write_eval_outputs(result, args.network, args.session)
    except (ValueError, FileNotFoundError, DatasetError) as exc:
        print(f"glace-eval: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result.summary))
    print(f"wrote {poses_path} and {test_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
