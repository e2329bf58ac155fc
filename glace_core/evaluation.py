"""Offline evaluation of a map (``glace-eval``, GLACE_SPEC.md section d).

For each frame of a split: preprocess (shorter side ``image_resolution``), encode, predict scene
coordinates with the head (global features from the split's ``features.npy`` when the head has a
global input), then estimate the pose with ``dsac_native.estimate_pose`` using the full fx, fy,
cx, cy of the preprocessed K and the same RANSAC seed for every frame. An ensemble map gives one
set of scene coordinates per routed head (``glace_core.map_predictor``); each gets RANSAC and the
pose with the most inliers is kept.

Errors follow the reference: ``t_err = ||t_gt - t_est||`` (m), ``r_err`` = angle of
``R_est R_gt^T`` (degrees). A frame where RANSAC found no pose counts with infinite errors.

Output files (``write_eval_outputs``, both atomic, next to the map file):

- ``poses_<scene>_<session>.txt``: one line per frame,
  ``name qw qx qy qz tx ty tz r_err_deg t_err_m inliers`` with the **world-to-camera** pose
  (quaternion ``qw >= 0``) as the reference writes it. Without ground truth (a split whose poses
  are all identity, or ``has_ground_truth`` False) the two error columns are ``nan``; a frame without
  a pose has the identity pose, ``inf`` errors and 0 inliers.
- ``test_<scene>_<session>.txt``: ``median_r_deg median_t_cm avg_time_s``.

Global features when the head has a global input: the split's ``--feat_name`` file; else, with a
``global_features_checkpoint``, R2Former is run on each image; else zeros (with a warning, as the
relocalizer node does without a descriptor), which degrades a map trained with real features.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def _global_source(dataset, head, feat_name: str, checkpoint: str | os.PathLike | None, device: torch.device):
    """(features (N, G) tensor or None, descriptor module or None) for a head with global input."""
    from glace_core.training.trainer import load_global_features

    g = int(getattr(head, "global_channels", 0))
    if g == 0:
        return None, None
    feats = load_global_features(dataset, feat_name)
    if feats is not None:
        if feats.shape[1] != g:
            raise ValueError(f"global features {feat_name} have width {feats.shape[1]}, the map expects {g}")
        return torch.from_numpy(feats).to(device), None
    if checkpoint:
        from glace_core.r2former import load_r2former

        return None, load_r2former(checkpoint, device)
    _logger.warning("the map has a %d-wide global input but the split has no %s and no R2Former checkpoint was "
                    "given: using zero global features (accuracy of a GLACE map drops)", g, feat_name)
    return torch.zeros(len(dataset), g, device=device), None


def evaluate_scene(scene, map_path: str | os.PathLike, *, split: str = "test", encoder_path: str | None = None,
                   image_resolution: int | None = None, hypotheses: int = 64, threshold: float = 10.0,
                   inlier_alpha: float = 100.0, max_pixel_error: float = 100.0, feat_name: str = "features.npy",
                   device: str = "auto", seed: int = 0, num_threads: int = 0,
                   global_features_checkpoint: str | os.PathLike | None = None, scene_name: str | None = None,
                   progress: bool = False, fast_inference: bool = True,
                   ensemble_candidates: int = 2) -> EvalResult:
    """Localise every frame of ``scene`` (a scene folder, using ``split``, or any object with the
    SceneSplit interface) against the map at ``map_path``. Returns per-frame records and a summary.
    ``image_resolution`` None means the map's training resolution (sidecar), else 480 (the reference's).
    ``fast_inference``: on CPU, run encoder and head through ``glace_core.fast_inference`` (same
    scene coordinates within 1e-4; timed together as "network"); False or CUDA: the plain modules,
    timed as "encoder" and "head". ``ensemble_candidates``: heads of an ensemble map tried per frame
    (the best-routed ones; 0: all); RANSAC runs on each and the pose with most inliers is kept."""
    import dsac_native
    from tqdm import tqdm

    from glace_core.encoder_registry import resolve_map_encoder
    from glace_core.geometry import pose_errors
    from glace_core.map_files import check_encoder_compatibility, training_resolution
    from glace_core.map_predictor import MapPredictor
    from glace_core.network import load_map
    from glace_core.preprocess import preprocess_image
    from glace_core.training.trainer import resolve_device

    if int(ensemble_candidates) < 0:
        raise ValueError(f"ensemble_candidates must be >= 0 (0: every head), got {ensemble_candidates!r}")
    for name, value in (("hypotheses", hypotheses), ("threshold", threshold), ("inlier_alpha", inlier_alpha),
                        ("max_pixel_error", max_pixel_error), ("image_resolution", image_resolution)):
        if value is not None and not value > 0:  # image_resolution None: the map's (checked below)
            raise ValueError(f"{name} must be > 0, got {value!r}")
    if isinstance(scene, (str, os.PathLike)):
        from glace_core.dataset import SceneSplit

        scene_name = scene_name or Path(scene).resolve().name
        dataset = SceneSplit(scene, split)
    else:
        dataset = scene
        scene_name = scene_name or getattr(dataset, "name", "scene")
    dev = resolve_device(device)
    head = load_map(map_path, dev)
    encoder = resolve_map_encoder(encoder_path, head.metadata, dev)
    check_encoder_compatibility(head, encoder)
    trained_at = training_resolution(head)
    if image_resolution is None:
        image_resolution = trained_at or 480
        _logger.info("image_resolution %d (%s)", image_resolution,
                     "the map's training resolution" if trained_at else "the reference default")
    elif trained_at is not None and int(trained_at) != int(image_resolution):
        _logger.warning("the map was trained at image_resolution %s but is evaluated at %s: pass "
                        "--image_resolution %s unless this is intended", trained_at, image_resolution, trained_at)
    stride = int(getattr(encoder, "stride", 8))
    global_feats, descriptor = _global_source(dataset, head, feat_name, global_features_checkpoint, dev)
    with_gt = _has_ground_truth(dataset)
    use_amp = dev.type == "cuda"
    predictor = MapPredictor(encoder, head, fast=fast_inference, candidates=ensemble_candidates)

    records: list[FrameRecord] = []
    for i in tqdm(range(len(dataset)), desc="localising", disable=not progress):
        frame = dataset[i]
        rgb = dataset.load_rgb(i)
        image, K = preprocess_image(rgb, frame.K, resolution=int(image_resolution))
        K = np.asarray(K, dtype=np.float64)
        t0 = time.perf_counter()
        g = None
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
            if descriptor is not None:
                rgb3 = rgb if rgb.ndim == 3 else np.repeat(rgb[:, :, None], 3, axis=2)
                g = descriptor(torch.from_numpy(np.array(rgb3)).permute(2, 0, 1)[None].float().div(255).to(dev))
            elif global_feats is not None:
                g = global_feats[i:i + 1]
        tg = time.perf_counter()
        candidates = predictor(image, g)
        t2 = time.perf_counter()
        stage_times = {"global": tg - t0, **predictor.timings}
        best = None
        for k, sc in candidates:
            coords = np.ascontiguousarray(sc[0].float().cpu().numpy(), dtype=np.float32)
            result = dsac_native.estimate_pose(
                coords, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), subsampling=stride,
                hypotheses=int(hypotheses), threshold=float(threshold), inlier_alpha=float(inlier_alpha),
                max_reprojection_error=float(max_pixel_error), seed=int(seed), num_threads=int(num_threads))
            if best is None or (result.success, result.inlier_count) > (best[1].success, best[1].inlier_count):
                best = (k, result)
        head_index, result = best
        t3 = time.perf_counter()
        pose = np.asarray(result.camera_to_world, dtype=np.float64) if result.success else None
        if pose is not None and not np.all(np.isfinite(pose)):
            pose = None
        if not with_gt:
            t_err = r_err = float("nan")
        elif pose is None:
            t_err = r_err = float("inf")
        else:
            t_err, r_err = (float(v) for v in pose_errors(pose, np.asarray(frame.pose, dtype=np.float64)))
        file_name = Path(getattr(frame, "rgb_path", None) or frame.name).name
        records.append(FrameRecord(str(frame.name), file_name, pose, pose is not None,
                                   int(result.inlier_count) if pose is not None else 0, t_err, r_err,
                                   {**stage_times, "ransac": t3 - t2}, head_index))
    return EvalResult(scene_name, records, summarize(records, with_gt))


def summarize(records: list[FrameRecord], with_gt: bool = True) -> dict[str, Any]:
    """Accuracy table (glace_core.geometry.accuracy_table), median errors and mean times per frame."""
    from glace_core.geometry import accuracy_table

    n = len(records)
    keys = [k for k in ("global", "encoder", "head", "network", "ransac") if any(k in r.times for r in records)]
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
    """Write ``poses_<scene>_<session>.txt`` and ``test_<scene>_<session>.txt`` next to the map (atomic)."""
    from glace_core.io_utils import atomic_write_text

    folder = Path(map_path).resolve().parent
    poses_path = folder / f"poses_{result.scene_name}_{session}.txt"
    test_path = folder / f"test_{result.scene_name}_{session}.txt"
    lines = [poses_file_line(r.file_name, r.camera_to_world, r.r_err_deg, r.t_err_m, r.inliers) + "\n"
             for r in result.frames]
    atomic_write_text(poses_path, "".join(lines))
    s = result.summary
    atomic_write_text(test_path, f"{s['median_r_deg']} {s['median_t_cm']} {s['avg_time_s']}\n")
    return poses_path, test_path
