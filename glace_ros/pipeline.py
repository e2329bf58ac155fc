"""The relocalization pipeline without ROS: image + intrinsics -> camera pose, with timings.

One frame goes through:

1. ``glace_core.preprocess.preprocess_image``: resize the shorter side to ``image_resolution``,
   grayscale, normalise; K scaled alike.
2. The global descriptor (heads with global input only): R2Former on the RGB image, every frame,
   every N frames (reused in between) or never. Without a checkpoint, or in mode "off", the head gets
   zero global features: a GLACE head was trained with real descriptors, so its accuracy then drops
   (a warning is logged once).
3. Encoder + head -> scene coordinates ``(3, h, w)`` float32, stride 8, map frame. An ensemble
   map (``glace_core.head_ensemble``) gives one set per routed head (``ensemble_candidates``).
4. ``dsac_native.estimate_pose`` with fx, fy, cx, cy of the network-resolution K; for an ensemble,
   on each candidate, keeping the pose with the most inliers.
5. The residuals of the valid cells under the estimated pose give the inlier ratio, the mean inlier
   reprojection error and the median inlier depth, from which ``covariance_from_ransac`` builds the
   6x6 pose covariance (ROS order x, y, z, rot_x, rot_y, rot_z).

Step 3 is ``glace_core.map_predictor.MapPredictor``. On CPU it runs ``glace_core.fast_inference``
(channels-last, global input folded into a bias, a frozen oneDNN graph per image size; for an
ensemble, one for the encoder and one per head): the same scene coordinates as the plain modules
within 1e-4 relative, in about 0.7x the time (BENCHMARKS.md "Inference (CPU)"). It snapshots the
modules' weights at the first frame; call ``refresh_fast_path()`` after changing them. CUDA runs the
plain modules under fp16 autocast as before.

``localize_async`` splits a frame: the caller's thread runs steps 1-3, a single worker thread runs
steps 4-5, so RANSAC of frame k overlaps the network pass of frame k+1. Results are those of
``localize`` for the same seed (RANSAC gets the same scene coordinates and options).

The class is used by the node from one worker thread; it is not thread-safe (the every-N descriptor
cache is state). ``localize_async`` may be called from one thread; its futures complete in order.
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from glace_core.map_files import training_resolution

_logger = logging.getLogger(__name__)

__all__ = ["PipelineError", "RansacOptions", "FrameResult", "RelocalizationPipeline", "resolve_device",
           "reprojection_statistics"]

GLOBAL_MODES = ("every_frame", "every_n", "off")


class PipelineError(ValueError):
    """A frame the pipeline cannot process (bad image or intrinsics); the message names the problem."""


@dataclass(frozen=True)
class RansacOptions:
    """dsac_native options (reference defaults: 64 hypotheses, 10 px, alpha 100, 100 px clamp)."""

    hypotheses: int = 64
    threshold: float = 10.0  # px
    inlier_alpha: float = 100.0
    max_reprojection_error: float = 100.0  # px
    seed: int = 0
    max_refinement_iterations: int = 100
    num_threads: int = 0  # 0: all cores


@dataclass
class FrameResult:
    """What one frame gave.

    ``camera_to_world`` (4, 4) float64 is None when RANSAC failed. ``scene_coordinates`` is the
    network output (3, h, w) float32 and ``K_network`` the (3, 3) intrinsics at network resolution.
    ``timings`` holds seconds per stage: preprocess, global, network, ransac, statistics, total.
    ``covariance`` is (36,) float64 (ROS PoseWithCovariance order) or None without a pose.
    """

    success: bool
    camera_to_world: np.ndarray | None
    inlier_count: int
    num_cells: int
    mean_inlier_error_px: float
    median_inlier_depth_m: float
    covariance: np.ndarray | None
    scene_coordinates: np.ndarray
    K_network: np.ndarray
    global_computed: bool  # the descriptor was computed for this frame (False: reused, zeros or none)
    timings: dict[str, float] = field(default_factory=dict)
    head_index: int = 0  # the ensemble head whose pose this is (0 for a single-head map)


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda if available else cpu; "cpu"; "cuda" (raises ValueError without CUDA)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        return torch.device(device)
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


def reprojection_statistics(scene_coordinates: np.ndarray, camera_to_world: np.ndarray, K: np.ndarray,
                            threshold: float, stride: int = 8) -> tuple[int, int, float, float]:
    """Residuals of the grid under a pose.

    scene_coordinates: (3, h, w) world points of cells whose centres are pixels (stride·x + stride/2,
    stride·y + stride/2); K: (3, 3) at that resolution. Returns (inlier_count, valid_cells,
    mean inlier reprojection error in px, median inlier depth in m); cells with non-finite points
    or points behind the camera are not valid; inliers have error < threshold.
    """
    sc = np.asarray(scene_coordinates, dtype=np.float64)
    if sc.ndim != 3 or sc.shape[0] != 3:
        raise ValueError(f"scene_coordinates must be (3, h, w), got {sc.shape}")
    _, h, w = sc.shape
    world_T_cam = np.asarray(camera_to_world, dtype=np.float64)
    R, t = world_T_cam[:3, :3], world_T_cam[:3, 3]
    pts = sc.reshape(3, -1)
    cam = R.T @ (pts - t[:, None])  # world -> camera
    ys, xs = np.mgrid[0:h, 0:w]
    px = np.stack([xs.reshape(-1) * stride + stride / 2.0, ys.reshape(-1) * stride + stride / 2.0])
    valid = np.all(np.isfinite(cam), axis=0) & (cam[2] > 1e-6)
    if not np.any(valid):
        return 0, 0, float("nan"), float("nan")
    cam, px = cam[:, valid], px[:, valid]
    u = K[0, 0] * cam[0] / cam[2] + K[0, 1] * cam[1] / cam[2] + K[0, 2]
    v = K[1, 1] * cam[1] / cam[2] + K[1, 2]
    err = np.hypot(u - px[0], v - px[1])
    inl = err < threshold
    n = int(inl.sum())
    if n == 0:
        return 0, int(valid.sum()), float("nan"), float("nan")
    return n, int(valid.sum()), float(err[inl].mean()), float(np.median(cam[2, inl]))


class RelocalizationPipeline:
    """Encoder + head (+ R2Former) + dsac_native, on one device.

    encoder: module (1, 1, H, W) -> (1, C, h, w) with ``stride``; head: ``forward(features,
    global_features or None) -> (1, 3, h, w)`` with ``global_channels``; descriptor: module RGB
    (1, 3, H, W) in [0, 1] -> (1, G) or None.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, device: torch.device | str = "cpu",
                 descriptor: nn.Module | None = None, fast_inference: bool = True, ensemble_candidates: int = 2):
        self.device = torch.device(device)
        self.encoder = encoder.eval().to(self.device)
        self.head = head.eval().to(self.device)
        self.descriptor = None if descriptor is None else descriptor.eval().to(self.device)
        self.global_channels = int(getattr(head, "global_channels", 0))
        self.stride = int(getattr(encoder, "stride", 8))
        #: the image_resolution the map was trained at (its sidecar), else the reference's 480
        self.trained_resolution = training_resolution(head) or 480
        self._cached_global: torch.Tensor | None = None
        self._frames_since_global = 0
        self.zero_global_reason: str | None = None
        if self.global_channels and self.descriptor is None:
            self.zero_global_reason = "no global_checkpoint is set"
        #: use glace_core.fast_inference on CPU (False: the plain modules, e.g. for comparisons)
        self.fast_inference = bool(fast_inference) and self.device.type == "cpu"
        #: heads of an ensemble map tried per frame (best-routed first; 0: all); see glace_core.map_predictor
        self.ensemble_candidates = int(ensemble_candidates)
        if self.ensemble_candidates < 0:
            raise ValueError(f"ensemble_candidates must be >= 0 (0: every head), got {ensemble_candidates}")
        self._fast = None  # the MapPredictor, built at the first frame
        self._ransac_executor: ThreadPoolExecutor | None = None

    @classmethod
    def load(cls, map_path: str | os.PathLike, encoder_path: str = "", device: str = "auto",
             global_checkpoint: str = "", global_resolution: tuple[int, int] = (480, 640),
             fast_inference: bool = True, ensemble_candidates: int = 2) -> "RelocalizationPipeline":
        """Load the map, the encoder (empty: the shipped default) and the optional R2Former checkpoint.

        Raises FileNotFoundError (a file is missing), MapFileError (a file is corrupt or of the wrong
        layout), EncoderMismatchError (map and encoder do not fit) or ValueError (bad device); every
        message names the file.
        """
        from glace_core.encoder_registry import resolve_map_encoder
        from glace_core.map_files import check_encoder_compatibility
        from glace_core.network import load_map

        dev = resolve_device(device)
        map_path = Path(map_path)
        if not str(map_path) or str(map_path) == ".":
            raise FileNotFoundError("map_path is not set: give the GLACE map (head) file to localize against")
        if not map_path.is_file():
            raise FileNotFoundError(f"map file not found: {map_path}")
        head = load_map(map_path, dev)
        encoder = resolve_map_encoder(encoder_path or None, head.metadata, dev)
        check_encoder_compatibility(head, encoder)
        descriptor = None
        if global_checkpoint:
            from glace_core.r2former import load_r2former

            descriptor = load_r2former(global_checkpoint, dev, tuple(global_resolution))
        return cls(encoder, head, dev, descriptor, fast_inference=fast_inference,
                   ensemble_candidates=ensemble_candidates)

    # ------------------------------------------------------------------ stages

    def _global_features(self, rgb: np.ndarray, mode: str, every_n: int) -> tuple[torch.Tensor | None, bool]:
        """(1, G) features for the head (None for heads without global input) and whether computed now."""
        if not self.global_channels:
            return None, False
        if mode not in GLOBAL_MODES:
            raise ValueError(f"global_mode must be one of {GLOBAL_MODES}, got {mode!r}")
        if self.descriptor is None or mode == "off":
            return torch.zeros(1, self.global_channels, device=self.device), False
        reuse = (mode == "every_n" and self._cached_global is not None and self._frames_since_global < every_n)
        if reuse:
            self._frames_since_global += 1
            return self._cached_global, False
        image = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            feats = self.descriptor(image).float()
        if feats.shape != (1, self.global_channels):
            raise ValueError(f"global descriptor gives {tuple(feats.shape)}, the head expects (1, {self.global_channels})")
        self._cached_global, self._frames_since_global = feats, 1
        return feats, True

    def refresh_fast_path(self) -> None:
        """Forget the fast path's snapshot of the weights (it is rebuilt at the next frame)."""
        self._fast = None

    def predict_candidates(self, image: torch.Tensor, global_features: torch.Tensor | None,
                           ensemble_candidates: int | None = None) -> list[tuple[int, np.ndarray]]:
        """Normalised gray image (1, 1, H, W) -> ``[(head index, scene coordinates (3, ceil(H/8),
        ceil(W/8)) float32), ...]``: one entry for a single head, the routed heads of an ensemble
        (``ensemble_candidates`` of them; None: the pipeline's ``ensemble_candidates``)."""
        if self._fast is None:
            from glace_core.map_predictor import MapPredictor

            self._fast = MapPredictor(self.encoder, self.head, fast=self.fast_inference,
                                      candidates=self.ensemble_candidates)
        count = self.ensemble_candidates if ensemble_candidates is None else int(ensemble_candidates)
        if count < 0:
            raise ValueError(f"ensemble_candidates must be >= 0 (0: every head), got {count}")
        self._fast.candidates = count
        return [(k, np.ascontiguousarray(sc[0].float().cpu().numpy(), dtype=np.float32))
                for k, sc in self._fast(image.to(self.device), global_features)]

    def predict(self, image: torch.Tensor, global_features: torch.Tensor | None) -> np.ndarray:
        """Normalised gray image (1, 1, H, W) -> scene coordinates (3, ceil(H/8), ceil(W/8)) float32
        (of the best-routed head for an ensemble map)."""
        return self.predict_candidates(image, global_features)[0][1]

    def localize(self, image: np.ndarray, K: np.ndarray, *, image_resolution: int = 480,
                 ransac: RansacOptions = RansacOptions(), global_mode: str = "every_frame",
                 global_every_n: int = 1,
                 ensemble_candidates: int | None = None) -> FrameResult:
        """Localize one image.

        image: (H, W, 3) uint8 RGB or (H, W) uint8 gray; K: (3, 3) intrinsics of ``image`` (pixel
        centres at i + 0.5). Raises PipelineError for bad images or intrinsics; a failed RANSAC is a
        result with ``success`` False.
        """
        return self._solve(self._network_pass(image, K, image_resolution, global_mode, global_every_n,
                                              ensemble_candidates), ransac)

    def localize_async(self, image: np.ndarray, K: np.ndarray, *, image_resolution: int = 480,
                       ransac: RansacOptions = RansacOptions(), global_mode: str = "every_frame",
                       global_every_n: int = 1,
                       ensemble_candidates: int | None = None) -> "Future[FrameResult]":
        """``localize`` with RANSAC on a single worker thread: returns once the network pass is done.

        Preprocessing, the global descriptor and the network run in the caller's thread (bad inputs
        raise PipelineError here); RANSAC and the statistics run on the worker, so the caller can
        start the next frame's network pass meanwhile. The future's FrameResult equals what
        ``localize`` returns for the same inputs and seed; futures complete in submission order.
        """
        stage = self._network_pass(image, K, image_resolution, global_mode, global_every_n, ensemble_candidates)
        if self._ransac_executor is None:
            self._ransac_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glace-ransac")
        return self._ransac_executor.submit(self._solve, stage, ransac)

    def close(self) -> None:
        """Finish pending ``localize_async`` work and stop its worker thread."""
        if self._ransac_executor is not None:
            self._ransac_executor.shutdown(wait=True)
            self._ransac_executor = None

    def _network_pass(self, image: np.ndarray, K: np.ndarray, image_resolution: int, global_mode: str,
                      global_every_n: int, ensemble_candidates: int | None = None) -> dict:
        """Steps 1-3: checks, preprocessing, global descriptor, scene coordinates (and their timings)."""
        from glace_core.preprocess import preprocess_image

        t0 = time.perf_counter()
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise PipelineError(f"image must be (H, W, 3) or (H, W) uint8, got {image.shape} {image.dtype}")
        if image.shape[0] < 8 or image.shape[1] < 8:
            raise PipelineError(f"image of {image.shape[1]}x{image.shape[0]} px is too small (minimum 8x8)")
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise PipelineError(f"K must be a finite (3, 3) matrix with positive focal lengths, got {K.tolist()}")
        try:
            tensor, K_net = preprocess_image(image, K, resolution=int(image_resolution))
        except ValueError as exc:
            raise PipelineError(f"preprocessing failed: {exc}") from exc
        K_net = np.asarray(K_net, dtype=np.float64)
        t1 = time.perf_counter()
        rgb = image if image.ndim == 3 else None
        if rgb is None and self.global_channels and self.descriptor is not None and global_mode != "off":
            rgb = np.repeat(image[:, :, None], 3, axis=2)
        global_features, computed = self._global_features(rgb, global_mode, max(int(global_every_n), 1))
        t2 = time.perf_counter()
        candidates = self.predict_candidates(tensor, global_features, ensemble_candidates)
        t3 = time.perf_counter()
        return {"candidates": candidates, "K_net": K_net, "computed": computed,
                "timings": {"preprocess": t1 - t0, "global": t2 - t1, "network": t3 - t2}}

    def _solve(self, stage: dict, ransac: RansacOptions) -> FrameResult:
        """Steps 4-5 on the output of ``_network_pass``: RANSAC, residual statistics, covariance."""
        import dsac_native

        K_net, computed = stage["K_net"], stage["computed"]
        t3 = time.perf_counter()
        best = None
        for k, coords in stage["candidates"]:
            found = dsac_native.estimate_pose(
                coords, float(K_net[0, 0]), float(K_net[1, 1]), float(K_net[0, 2]), float(K_net[1, 2]),
                subsampling=self.stride, hypotheses=int(ransac.hypotheses), threshold=float(ransac.threshold),
                inlier_alpha=float(ransac.inlier_alpha), max_reprojection_error=float(ransac.max_reprojection_error),
                max_refinement_iterations=int(ransac.max_refinement_iterations), seed=int(ransac.seed),
                num_threads=int(ransac.num_threads))
            if best is None or (found.success, found.inlier_count) > (best[2].success, best[2].inlier_count):
                best = (k, coords, found)
        head_index, sc, result = best
        t4 = time.perf_counter()
        num_cells = int(sc.shape[1] * sc.shape[2])
        pose = np.asarray(result.camera_to_world, dtype=np.float64) if result.success else None
        if pose is not None and not np.all(np.isfinite(pose)):
            pose = None
        inliers, mean_err, depth, cov = int(result.inlier_count), float("nan"), float("nan"), None
        if pose is not None:
            from glace_ros.pose_messages import covariance_from_ransac

            n, _, mean_err, depth = reprojection_statistics(sc, pose, K_net, float(ransac.threshold), self.stride)
            if n >= 1 and np.isfinite(depth) and depth > 0:
                focal = 0.5 * (K_net[0, 0] + K_net[1, 1])
                cov = covariance_from_ransac(n, num_cells, mean_err, focal, depth, rotation_cam_to_world=pose[:3, :3])
        t5 = time.perf_counter()
        return FrameResult(
            success=pose is not None, camera_to_world=pose, inlier_count=inliers, num_cells=num_cells,
            mean_inlier_error_px=mean_err, median_inlier_depth_m=depth, covariance=cov, scene_coordinates=sc,
            K_network=K_net, global_computed=computed, head_index=head_index,
            timings={**stage["timings"], "ransac": t4 - t3, "statistics": t5 - t4,
                     "total": sum(stage["timings"].values()) + (t5 - t3)})
