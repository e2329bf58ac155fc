"""Offline evaluation of a map (``glace-eval``, GLACE_SPEC.md section d).

Every frame of a split goes through ``glace_core.localizer.Localizer.localize``, the path the
relocalizer node uses too (preprocessing, global features, scene coordinates of every candidate
head, RANSAC on each with the same seed for every frame, most inliers wins, covariance).

Errors follow the reference: ``t_err = ||t_gt - t_est||`` (m), ``r_err`` = angle of
``R_est R_gt^T`` (degrees). A frame where RANSAC found no pose counts with infinite errors.

Output files (``write_eval_outputs``, both atomic, next to the map file):

- ``poses_<scene>_<session>.txt`` (``poses_<scene>.txt`` without a session): one line per frame,
  ``name qw qx qy qz tx ty tz r_err_deg t_err_m inliers`` with the **world-to-camera** pose
  (quaternion ``qw >= 0``) as the reference writes it. Without ground truth (a split whose poses
  are all identity, or ``has_ground_truth`` False) the two error columns are ``nan``; a frame without
  a pose has the identity pose, ``inf`` errors and 0 inliers.
- ``test_<scene>_<session>.txt`` (``test_<scene>.txt``): ``median_r_deg median_t_cm avg_time_s``.

Global features when the head has a global input: the split's ``--feat_name`` file; else, with a
``global_features_checkpoint``, R2Former is run on each image; else zeros (with a warning, as the
relocalizer node does without a descriptor), which degrades a map trained with real features.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glace_core.localizer import (DEFAULT_EARLY_ACCEPT_RATIO, DEFAULT_ENSEMBLE_FUSION, Localizer, LocalizerOptions,
                                  RansacOptions, RefinementOptions)
from glace_core.map_files import training_resolution
from glace_core.map_predictor import DEFAULT_CANDIDATES

_logger = logging.getLogger(__name__)


@dataclass
class FrameRecord:
    name: str  # frame name as the dataset gives it
    file_name: str  # image file name (what the poses file writes)
    camera_to_world: np.ndarray | None  # (4, 4) estimate, None if RANSAC gave no pose
    success: bool
    inliers: int
    t_err_m: float  # nan without ground truth, inf without a pose
    r_err_deg: float
    times: dict[str, float] = field(default_factory=dict)  # seconds: encoder, head, ransac
    head: int = 0  # the head of an ensemble map whose pose was kept (0 for a single head)
    covariance: np.ndarray | None = None  # (36,) ROS-order pose covariance, None without a pose


@dataclass
class EvalResult:
    scene_name: str
    frames: list[FrameRecord]
    summary: dict[str, Any]


def _quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    from glace_core.geometry import rotation_matrix_to_quaternion

    q = np.asarray(rotation_matrix_to_quaternion(np.asarray(R, dtype=np.float64)), dtype=np.float64)
    q = q / np.linalg.norm(q)
    return tuple(float(v) for v in (-q if q[0] < 0 else q))


def poses_file_line(name: str, cam_to_world: np.ndarray | None, r_err: float, t_err: float, inliers: int) -> str:
    """One poses-file line (no newline): ``name qw qx qy qz tx ty tz r_err_deg t_err_m inliers``.

    cam_to_world: (4, 4) estimate (None: identity is written); the line holds its inverse, the
    world-to-camera pose, with a unit quaternion (qw >= 0).
    """
    if any(c.isspace() for c in str(name)) or not str(name):
        raise ValueError(f"poses file names must be non-empty and without spaces, got {name!r}")
    if cam_to_world is None:
        w2c = np.eye(4)
    else:
        c2w = np.asarray(cam_to_world, dtype=np.float64)
        if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
            raise ValueError(f"cam_to_world must be a finite (4, 4) matrix, got shape {c2w.shape}")
        w2c = np.linalg.inv(c2w)
    qw, qx, qy, qz = _quaternion(w2c[:3, :3])
    tx, ty, tz = (float(v) for v in w2c[:3, 3])
    return (f"{name} {qw:.9f} {qx:.9f} {qy:.9f} {qz:.9f} {tx:.9f} {ty:.9f} {tz:.9f} "
            f"{float(r_err):.6f} {float(t_err):.6f} {int(inliers)}")


def _has_ground_truth(dataset) -> bool:
    flag = getattr(dataset, "has_ground_truth", None)
    if flag is not None:
        return bool(flag)
    poses = np.asarray(dataset.poses, dtype=np.float64)
    return not np.allclose(poses, np.eye(4)[None])


def _given_global_features(dataset, localizer, feat_name: str, checkpoint) -> np.ndarray | None:
    """(N, G) features of the split for a map with a global input, when the split has ``feat_name``;
    None otherwise (the localizer then runs its descriptor, or gives zeros with a warning)."""
    from glace_core.dataset import load_global_features

    g = localizer.global_channels
    if g == 0:
        return None
    feats = load_global_features(dataset, feat_name)
    if feats is not None:
        if feats.shape[1] != g:
            raise ValueError(f"global features {feat_name} have width {feats.shape[1]}, the map expects {g}")
        return feats
    if not checkpoint:
        _logger.warning("the map has a %d-wide global input but the split has no %s and no R2Former checkpoint was "
                        "given: using zero global features (accuracy of a GLACE map drops)", g, feat_name)
    return None


def evaluate_scene(scene, map_path: str | os.PathLike, *, split: str = "test", encoder_path: str | None = None,
                   image_resolution: int | None = None, ransac: RansacOptions | None = None,
                   feat_name: str = "features.npy", device: str = "auto",
                   global_features_checkpoint: str | os.PathLike | None = None, scene_name: str | None = None,
                   progress: bool = False, fast_inference: bool = True,
                   ensemble_candidates: int = DEFAULT_CANDIDATES, precision: str = "auto",
                   early_accept_ratio: float = DEFAULT_EARLY_ACCEPT_RATIO, match_focal: bool = True,
                   ensemble_fusion: str = DEFAULT_ENSEMBLE_FUSION, keyframe_refinement: bool = True) -> EvalResult:
    """Localise every frame of ``scene`` (a scene folder, using ``split``, or any object with the
    SceneSplit interface) against the map at ``map_path`` with ``glace_core.localizer.Localizer``.
    Returns per-frame records and a summary. ``image_resolution`` None means the map's training
    resolution (sidecar), else 480 (the reference's). ``ransac``: RANSAC options (None: the native
    solver's defaults; the same seed for every frame). ``fast_inference``: on CPU, the fused encoder
    and head of ``glace_core.fast_inference`` (same scene coordinates within 1e-4); False: the plain
    modules. ``ensemble_candidates``: heads of an ensemble map tried per frame (0: all);
    ``early_accept_ratio``: the best-routed head is kept alone when its inlier share reaches it (0: off);
    ``ensemble_fusion``: how the candidates that run become one pose ("union" or "best", ``LocalizerOptions``).
    ``keyframe_refinement``: refine poses with the map's keyframes file when it has one
    (``LocalizerOptions.refinement``). ``match_focal``: with ``image_resolution`` None, a test camera whose focal length differs from the
    mapping frames' is resized to match it (``LocalizerOptions.match_focal``).
    ``precision``: the CPU fast path's, one of ``glace_core.cpu_features.PRECISIONS`` ("auto": bf16
    where the CPU has it, else fp32). The localizer is warmed up (``Localizer.warm_up_once``) for each
    network input size before its first frame, so frame times exclude graph builds, as in the node."""
    from tqdm import tqdm

    from glace_core.geometry import pose_errors

    if image_resolution is not None and not image_resolution > 0:
        raise ValueError(f"image_resolution must be > 0, got {image_resolution!r}")
    if isinstance(scene, (str, os.PathLike)):
        from glace_core.dataset import SceneSplit

        scene_name = scene_name or Path(scene).resolve().name
        dataset = SceneSplit(scene, split)
    else:
        dataset = scene
        scene_name = scene_name or getattr(dataset, "name", "scene")
    options = LocalizerOptions(image_resolution=int(image_resolution or 0), ensemble_candidates=ensemble_candidates,
                               early_accept_ratio=early_accept_ratio, ensemble_fusion=ensemble_fusion,
                               global_mode="every_frame",
                               ransac=ransac or RansacOptions(), precision=precision, match_focal=bool(match_focal),
                               refinement=RefinementOptions(enabled=bool(keyframe_refinement)))
    localizer = Localizer.load(map_path, encoder_path, device, global_features_checkpoint,
                               fast_inference=fast_inference, options=options)
    trained_at = localizer.trained_resolution
    if image_resolution is None:
        _logger.info("image_resolution %d (the map's training resolution, else the reference default)", trained_at)
    elif training_resolution(localizer.model) is not None and int(trained_at) != int(image_resolution):
        _logger.warning("the map was trained at image_resolution %s but is evaluated at %s: pass "
                        "--image_resolution %s unless this is intended", trained_at, image_resolution, trained_at)
    given = _given_global_features(dataset, localizer, feat_name, global_features_checkpoint)
    with_gt = _has_ground_truth(dataset)

    records: list[FrameRecord] = []
    for i in tqdm(range(len(dataset)), desc="localising", disable=not progress):
        frame = dataset[i]
        rgb = dataset.load_rgb(i)
        # graph builds of a new size are start-up, not per-frame time
        if localizer.warm_up_once(*rgb.shape[:2], frame.K):
            res = localizer.frame_resolution(frame.K, *rgb.shape[:2])
            if res != localizer.resolution(image_resolution):
                focal = float(np.sqrt(frame.K[0, 0] * frame.K[1, 1]))
                _logger.info("%dx%d images of focal length %.1f px: network resolution %d, matched to the map's "
                             "focal length %.1f px (match_focal)", rgb.shape[1], rgb.shape[0], focal, res,
                             localizer.map_focal)
        loc = localizer.localize(rgb, frame.K, global_features=None if given is None else given[i])
        pose = loc.camera_to_world
        if not with_gt:
            t_err = r_err = float("nan")
        elif pose is None:
            t_err = r_err = float("inf")
        else:
            t_err, r_err = (float(v) for v in pose_errors(pose, np.asarray(frame.pose, dtype=np.float64)))
        file_name = Path(getattr(frame, "rgb_path", None) or frame.name).name
        times = {k: v for k, v in loc.timings.items() if k not in ("statistics", "total")}
        records.append(FrameRecord(str(frame.name), file_name, pose, loc.success, loc.inlier_count if loc.success else 0,
                                   t_err, r_err, times, loc.head_index, loc.covariance))
    return EvalResult(scene_name, records, summarize(records, with_gt))


def summarize(records: list[FrameRecord], with_gt: bool = True) -> dict[str, Any]:
    """Accuracy table (glace_core.geometry.accuracy_table), median errors and mean times per frame."""
    from glace_core.geometry import accuracy_table

    n = len(records)
    keys = [k for k in ("preprocess", "global", "encoder", "head", "network", "ransac", "refine")
            if any(k in r.times for r in records)]
    times = {k: float(np.mean([r.times.get(k, 0.0) for r in records])) for k in keys} if n else {}
    summary: dict[str, Any] = {"frames": n, "localised": sum(r.success for r in records),
                               "with_ground_truth": bool(with_gt and n), "time_per_frame_s": times,
                               "avg_time_s": float(sum(times.values())) if n else float("nan")}
    if with_gt and n:
        t = np.array([r.t_err_m for r in records], dtype=np.float64)
        r = np.array([r.r_err_deg for r in records], dtype=np.float64)
        summary["accuracy"] = accuracy_table(t, r)
        order = n // 2  # the reference's median: the element at index n // 2 of the sorted errors
        summary["median_t_cm"] = float(np.sort(t)[order] * 100.0)
        summary["median_r_deg"] = float(np.sort(r)[order])
    else:
        summary["accuracy"] = {}
        summary["median_t_cm"] = summary["median_r_deg"] = float("nan")
    return summary


def write_eval_outputs(result: EvalResult, map_path: str | os.PathLike, session: str = "") -> tuple[Path, Path]:
    """Write ``poses_<scene>_<session>.txt`` and ``test_<scene>_<session>.txt`` next to the map (atomic;
    without a session: ``poses_<scene>.txt`` and ``test_<scene>.txt``)."""
    from glace_core.io_utils import atomic_write_text

    folder = Path(map_path).resolve().parent
    suffix = f"{result.scene_name}_{session}" if session else result.scene_name
    poses_path = folder / f"poses_{suffix}.txt"
    test_path = folder / f"test_{suffix}.txt"
    lines = [poses_file_line(r.file_name, r.camera_to_world, r.r_err_deg, r.t_err_m, r.inliers) + "\n"
             for r in result.frames]
    atomic_write_text(poses_path, "".join(lines))
    s = result.summary
    atomic_write_text(test_path, f"{s['median_r_deg']} {s['median_t_cm']} {s['avg_time_s']}\n")
    return poses_path, test_path
