"""The one path from an image and its intrinsics to a camera pose: :class:`Localizer`.

glace-eval (``glace_core.evaluation``), the relocalizer node, replay-eval (through the node) and
the benchmarks all localise through ``Localizer.localize``. One frame goes through:

1. ``preprocess_image``: the shorter side resized to the network resolution (the map's training
   resolution by default, else the reference's 480), grayscale, normalised; K scaled alike. With
   ``match_focal`` (the default) and a map whose sidecar records its mapping frames' focal length,
   a query camera whose focal length differs by more than 10 % is resized so that its focal length
   at network resolution matches the map's (``preprocess.network_resolution``): the encoder then
   sees textures at the scale it was mapped at (BENCHMARKS.md "Focal matching").
2. The global descriptor, for heads with a global input (:class:`GlobalDescriptorSource`):
   features given by the caller (a split's ``features.npy``), or R2Former on the RGB image every
   frame, every N frames (reused in between), in the background (its own thread, at most every N
   frames; the frame uses the latest finished descriptor and never waits, except the first frame,
   which computes its own), or never (zeros, which lowers a GLACE map's accuracy).
3. ``MapPredictor``: scene coordinates (3, h, w) per candidate head (one for a single head; the
   ``ensemble_candidates`` best-routed heads of an ensemble map), in ``LocalizerOptions.precision``
   on the CPU fast path (``glace_core.cpu_features``: bf16 where the CPU has it under "auto").
4. ``dsac_native.estimate_pose`` with the full fx, fy, cx, cy of the network K. Early accept
   (``early_accept_ratio``, default 0.3): the best-routed head runs and is solved first, and when
   its inliers are at least that share of the cells it is kept and the other candidates' heads
   never run (it runs on about 3 frames in 10 of the bench scenes). Otherwise (or with 0) the other
   candidates run, and ``ensemble_fusion`` makes one pose of them: "union" (the default) solves one
   RANSAC over the cells of every candidate (``glace_core.ensemble_fusion``), so heads that agree
   reinforce each other and a head that is wrong is outvoted; "best" solves each candidate and
   keeps the one with the most inliers (a successful pose beats a failed one; ties keep the
   better-routed head), ACE's rule for ensembles. With several candidates to solve and
   ``ransac.num_threads`` 0 (all cores) they are solved at the same time, one thread each, the
   cores shared among them (the solver releases the GIL; each solve has its own random generator
   from the seed, so the poses are those of the solves one after another).
5. Keyframe refinement (``LocalizerOptions.refinement``, on by default; maps with a keyframes file,
   ``glace_core.keyframes``): XFeat keypoints of the image (its keypoint head, and descriptors
   sampled from the encoder features step 3 computed) are matched to the mapping frames nearest to
   the pose, and a PnP RANSAC on those matches refines it (``glace_core.keyframe_refinement``).
6. The residuals of the winner's cells under its pose (:func:`reprojection_statistics`; after
   "union", the cells of the candidate head with the most inliers under the fused pose) and the
   6x6 pose covariance from them (``glace_core.pose_covariance``). A refined pose's inlier count,
   residuals and covariance are those of its keypoint inliers instead (with their own calibration,
   ``RefinementOptions.covariance``).

RANSAC options (:class:`RansacOptions`) take their defaults from the native solver
(``dsac_native.Options()``: 64 hypotheses, 10 px, alpha 100, 100 px clamp), so they are declared
once, in ``dsac_native/include/dsac_native/types.hpp``.

Poses are camera-to-world (4, 4) float64 in OpenCV optical axes (x right, y down, z forward).
A ``Localizer`` is not thread-safe (the every-N descriptor cache and the fast path are state).

Threads (measured on 2 shared AMD EPYC cores, AVX2, other jobs running: load average 3.3-4.2;
interleaved A/B in one run, medians; rough, the load changes from minute to minute):

- torch's OpenMP threads should sleep between layers (``OMP_WAIT_POLICY=PASSIVE``, set by
  ``scripts/env.sh`` and the launch file; it has to be in the environment before torch loads).
  Spinning, encoder + 2 heads at 480x640 took 1167 ms per frame, passive 88 ms; with one torch
  thread 89 ms (spinning) / 80 ms (passive).
- RANSAC of 2 candidates at 60x80 cells (synthetic, 50 % / 80 % outliers): one thread each
  against one after another with all cores: 0.56x with a core to spare (load 4.2, 6.8 against
  12.2 ms), 1.03x when the other jobs took both cores (load 3.3, passive OpenMP, 4.1 against
  4.0 ms). Kept: it never cost more than the noise, and the poses are identical.
- The background descriptor runs at nice ``global_descriptors.BACKGROUND_NICE``: network part of the pose path
  (480x640, R2Former at 480x640 on its thread, passive OpenMP) 1.06-1.16x of no descriptor at all,
  against 2.4-2.6x at nice 0 and a 1.2-1.5 s stall every 5th frame in "every_n" mode. The cost:
  on a machine that other processes keep busy the descriptor is starved (none finished in 60
  frames at nice 10, 4 at nice 0), so its refresh then lags by seconds.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import dsac_native
import numpy as np
import torch
from torch import nn

from glace_core.cpu_features import PRECISIONS, resolve_precision
from glace_core.devices import resolve_device
from glace_core.ensemble_fusion import ENSEMBLE_FUSIONS, fuse_candidates
from glace_core.geometry import check_K
from glace_core.global_descriptors import GLOBAL_MODES, GlobalDescriptorSource
from glace_core.head_ensemble import routing_descriptor
from glace_core.keyframe_refinement import Refinement, RefinementOptions, keypoint_statistics, refine_pose
from glace_core.keyframes import Keyframes, KeypointExtractor, load_map_keyframes
from glace_core.map_files import mapping_poses, training_focal, training_resolution
from glace_core.map_predictor import DEFAULT_CANDIDATES, MapPredictor
from glace_core.pose_covariance import (CovarianceCalibration, MappingViews, cell_texture, covariance_from_residuals,
                                       reprojection_statistics)
from glace_core.preprocess import (DEFAULT_RESOLUTION, FOCAL_STEP_PX, STD, network_resolution, preprocess_image,
                                  resized_shape)

_logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_EARLY_ACCEPT_RATIO", "DEFAULT_ENSEMBLE_FUSION", "ENSEMBLE_FUSIONS", "GLOBAL_MODES",
           "LocalizationError", "RansacOptions", "LocalizerOptions", "Localization", "Localizer",
           "GlobalDescriptorSource", "RefinementOptions", "reprojection_statistics"]

_NATIVE = dsac_native.Options()
#: LocalizerOptions.early_accept_ratio's default (BENCHMARKS.md "Early accept": on seven bench scenes
#: the same number of frames within 5 cm/5 deg as running every candidate, the second head run on 29 %)
DEFAULT_EARLY_ACCEPT_RATIO = 0.3
#: LocalizerOptions.ensemble_fusion's default (BENCHMARKS.md "Fused candidates": the same poses where early
#: accept keeps the first head, more within 5 cm/5 deg and 10 cm/10 deg where the frame's heads disagree)
DEFAULT_ENSEMBLE_FUSION = "union"


class LocalizationError(ValueError):
    """A frame that cannot be localised (bad image or intrinsics); the message names the problem."""


@dataclass(frozen=True)
class RansacOptions:
    """Options of ``dsac_native.estimate_pose``; the defaults are the native solver's own."""

    hypotheses: int = _NATIVE.hypotheses  # pose hypotheses per frame
    threshold: float = _NATIVE.threshold  # inlier threshold, px
    inlier_alpha: float = _NATIVE.inlier_alpha  # scale of the soft inlier count
    max_reprojection_error: float = _NATIVE.max_reprojection_error  # px; errors are clamped to it when scoring
    max_refinement_iterations: int = _NATIVE.max_refinement_iterations
    seed: int = _NATIVE.seed  # the same frame and seed give the same pose
    num_threads: int = _NATIVE.num_threads  # 0: all cores
    max_candidates: int = _NATIVE.max_candidates  # P3P candidates drawn at most (the stopping rule may stop earlier)
    confidence: float = _NATIVE.confidence  # the stopping rule's confidence of having drawn an all-inlier sample
    prescore_cells: int = _NATIVE.prescore_cells  # random cells each candidate is ranked on before full scoring

    def __post_init__(self):
        for name in ("hypotheses", "threshold", "inlier_alpha", "max_reprojection_error"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"RANSAC {name} must be a finite number > 0, got {value!r}")
        for name in ("max_refinement_iterations", "seed", "num_threads"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"RANSAC {name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("max_candidates", "prescore_cells"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RANSAC {name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 < float(self.confidence) < 1.0:
            raise ValueError(f"RANSAC confidence must be in (0, 1), got {self.confidence!r}")

    def solver_kwargs(self) -> dict:
        """Keyword arguments of ``dsac_native.estimate_pose`` (names identical to the fields)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class LocalizerOptions:
    """Per-frame choices of :meth:`Localizer.localize` (the node may change them at run time)."""

    image_resolution: int = 0  # network input height (shorter side); 0: the map's training resolution, else 480
    #: with image_resolution 0: resize a query whose focal length differs from the mapping frames' by
    #: more than 10 % so that the two match at network resolution (maps whose sidecar records it)
    match_focal: bool = True
    ensemble_candidates: int = DEFAULT_CANDIDATES  # heads of an ensemble map tried per frame (0: all)
    global_mode: str = "every_frame"  # one of GLOBAL_MODES
    global_every_n: int = 1  # frames a descriptor is reused for in "every_n" mode
    ransac: RansacOptions = field(default_factory=RansacOptions)
    covariance: CovarianceCalibration = field(default_factory=CovarianceCalibration)
    max_input_pixels: int = 0  # network inputs (after resizing) larger than this are refused; 0: no limit
    precision: str = "auto"  # CPU fast path: "auto" (bf16 where the CPU has it), "fp32" or "bf16"; CUDA: fp16 autocast
    #: an ensemble frame's best-routed head is kept without running the other candidates when its
    #: RANSAC inliers are at least this share of the cells (0: every candidate always runs)
    early_accept_ratio: float = DEFAULT_EARLY_ACCEPT_RATIO
    #: how an ensemble frame's candidates become one pose when more than one runs: "best" (ACE's rule,
    #: the candidate with the most inliers) or "union" (one RANSAC over all their cells, ``ensemble_fusion``)
    ensemble_fusion: str = DEFAULT_ENSEMBLE_FUSION
    #: keyframe refinement of the pose (maps with a keyframes file; ``glace_core.keyframe_refinement``)
    refinement: RefinementOptions = field(default_factory=RefinementOptions)

    def __post_init__(self):
        if self.ensemble_fusion not in ENSEMBLE_FUSIONS:
            raise ValueError(f"ensemble_fusion must be one of {ENSEMBLE_FUSIONS}, got {self.ensemble_fusion!r}")
        if not 0.0 <= float(self.early_accept_ratio) <= 1.0:
            raise ValueError(f"early_accept_ratio must be in [0, 1] (0: off), got {self.early_accept_ratio!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if int(self.max_input_pixels) < 0:
            raise ValueError(f"max_input_pixels must be >= 0 (0: no limit), got {self.max_input_pixels!r}")
        if int(self.image_resolution) < 0:
            raise ValueError(f"image_resolution must be > 0 (0: the map's), got {self.image_resolution!r}")
        if int(self.ensemble_candidates) < 0:
            raise ValueError(f"ensemble_candidates must be >= 0 (0: every head), got {self.ensemble_candidates!r}")
        if self.global_mode not in GLOBAL_MODES:
            raise ValueError(f"global_mode must be one of {GLOBAL_MODES}, got {self.global_mode!r}")
        if int(self.global_every_n) < 1:
            raise ValueError(f"global_every_n must be >= 1, got {self.global_every_n!r}")


@dataclass
class Localization:
    """What one frame gave.

    ``camera_to_world`` (4, 4) float64 is None when RANSAC failed. ``scene_coordinates`` (3, h, w)
    float32 are the winning head's, ``K_network`` (3, 3) the intrinsics at network resolution.
    ``candidates`` lists ``(head index, inlier count)`` of every head tried, best-routed first (after
    ``ensemble_fusion`` "union": each head's inlier cells under the fused pose). ``inlier_count``,
    ``statistics`` and ``covariance`` are the cells' (RANSAC inliers), or, when ``refinement`` was applied,
    its keypoint inliers'.
    ``covariance`` is (36,) float64 in ROS PoseWithCovariance order (x, y, z, rot_x, rot_y, rot_z;
    position in the map frame) or None without a pose. ``timings`` holds seconds per stage:
    preprocess, global, network (or encoder and head), ransac, refine, statistics, total.
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
    head_index: int = 0
    candidates: list[tuple[int, int]] = field(default_factory=list)
    global_computed: bool = False  # the descriptor was computed for this frame (False: given, reused, zeros, none)
    #: distance of the pose from the nearest mapping camera (``pose_covariance.MappingViews``; m, with
    #: 30 deg of turn counting as 1 m); nan without a pose or when the map does not record its cameras
    mapping_view_distance_m: float = float("nan")
    #: ``reprojection_statistics`` of the pose, with the inliers' texture (what the covariance was
    #: computed from); None without a pose
    statistics: dict | None = None
    #: what the keyframe refinement did (None: not tried: off, no keyframes, or no regressed pose)
    refinement: Refinement | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise LocalizationError(f"image must be (H, W, 3) RGB or (H, W) gray uint8, got {image.shape} {image.dtype}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise LocalizationError(f"image of {image.shape[1]}x{image.shape[0]} px is too small (minimum 8x8)")
    return image


class Localizer:
    """Encoder + map (a head or an ensemble) + optional global descriptor + dsac_native, on one device.

    encoder: (1, 1, H, W) -> (1, C, h, w) with ``stride``; model: a GlaceHead or HeadEnsemble;
    descriptor: RGB (1, 3, H, W) in [0, 1] -> (1, G), or None; keyframes: the map's
    (``glace_core.keyframes``), or None (no refinement).
    """

    def __init__(self, encoder: nn.Module, model: nn.Module, device: torch.device | str | None = None,
                 descriptor: nn.Module | None = None, *, fast_inference: bool = True,
                 options: LocalizerOptions | None = None, keyframes: Keyframes | None = None):
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.encoder = encoder.eval().to(self.device)
        self.model = model.eval().to(self.device)
        self.descriptor = None if descriptor is None else descriptor.eval().to(self.device)
        self.global_channels = int(getattr(model, "global_channels", 0))
        self.stride = int(getattr(encoder, "stride", 8))
        #: the image_resolution the map was trained at (its sidecar), else the reference's 480
        self.trained_resolution = training_resolution(model) or DEFAULT_RESOLUTION
        #: the mapping frames' focal length (px) at trained_resolution (its sidecar), else None
        self.map_focal = training_focal(model)
        #: the mapping cameras (its sidecar), for the covariance's distance term; None when not recorded
        poses = mapping_poses(model)
        self.mapping_views = MappingViews(poses) if poses is not None else None
        self.fast_inference = bool(fast_inference) and self.device.type == "cpu"
        self.options = options or LocalizerOptions()
        self.globals = GlobalDescriptorSource(self.global_channels, self.descriptor, self.device)
        self._predictor: MapPredictor | None = None  # built at the first frame (snapshots the weights)
        self._warm_keys: set[tuple] = set()  # _warm_key()s warm_up built for _predictor
        self._ransac_pool: ThreadPoolExecutor | None = None  # solves the candidates after the first
        self.keyframes = keyframes
        self._keypoints: KeypointExtractor | None = None
        if keyframes is not None:
            try:
                self._keypoints = KeypointExtractor(self.encoder, fast=self.fast_inference)
            except ValueError as exc:  # an encoder without XFeat's keypoint head
                _logger.warning("keyframe refinement off: %s", exc)
                self.keyframes = None

    @classmethod
    def load(cls, map_path: str | os.PathLike, encoder_path: str | None = None, device: str = "auto",
             global_checkpoint: str | os.PathLike | None = None, global_resolution: tuple[int, int] = (480, 640),
             *, fast_inference: bool = True, options: LocalizerOptions | None = None) -> "Localizer":
        """Load the map, its encoder (None or "": the one its sidecar names, else the default) and
        the optional R2Former checkpoint, and the map's keyframes file when it has one (``<map>.keyframes.npz``).
        Raises FileNotFoundError (missing or unset file), MapFileError (corrupt or wrong layout),
        EncoderMismatchError or ValueError (bad device); every message names the file."""
        from glace_core.encoder_registry import resolve_map_encoder
        from glace_core.map_files import check_encoder_compatibility
        from glace_core.network import load_map

        dev = resolve_device(device)
        if map_path is None or not str(map_path) or str(map_path) == ".":
            raise FileNotFoundError("map_path is not set: give the GLACE map (head) file to localize against")
        map_path = Path(map_path).expanduser()
        if map_path.is_dir():
            raise FileNotFoundError(f"map_path {map_path} is a directory, not a map file")
        if not map_path.is_file():
            raise FileNotFoundError(f"map file not found: {map_path}")
        model = load_map(map_path, dev)
        encoder = resolve_map_encoder(encoder_path or None, model.metadata, dev)
        check_encoder_compatibility(model, encoder)
        descriptor = None
        if global_checkpoint:
            from glace_core.r2former import load_r2former

            descriptor = load_r2former(Path(global_checkpoint).expanduser(), dev, tuple(global_resolution))
        keyframes = load_map_keyframes(map_path)
        if keyframes is not None:
            _logger.info("keyframes of %s: %d frames, %d keypoints", map_path, len(keyframes), keyframes.num_keypoints)
        return cls(encoder, model, dev, descriptor, fast_inference=fast_inference, options=options,
                   keyframes=keyframes)

    @property
    def zero_global_reason(self) -> str | None:
        """Why the head gets zero global features (None when it has no global input or a descriptor)."""
        if self.global_channels and self.descriptor is None:
            return "no global descriptor checkpoint is set"
        return None

    def resolution(self, image_resolution: int | None = None) -> int:
        """The network input height for a requested ``image_resolution`` (None/0: the map's)."""
        return int(image_resolution) if image_resolution else self.trained_resolution

    def frame_resolution(self, K: np.ndarray, height: int, width: int, options: LocalizerOptions | None = None) -> int:
        """The network input height (shorter side) for an image of ``height`` x ``width`` with
        intrinsics ``K`` (3, 3): ``options.image_resolution`` when set; else the map's, changed by
        focal matching (``match_focal``, ``preprocess.network_resolution``) when the map records its
        focal length."""
        opt = options or self.options
        if opt.image_resolution or not opt.match_focal:
            return self.resolution(opt.image_resolution)
        res = network_resolution(K, height, width, self.trained_resolution, self.map_focal)
        if opt.max_input_pixels and res > self.trained_resolution:  # best effort: never why a frame is refused
            while res > self.trained_resolution and np.prod(resized_shape(height, width, res)) > opt.max_input_pixels:
                res -= FOCAL_STEP_PX
            res = max(res, self.trained_resolution)
        return res

    def refresh_fast_path(self) -> None:
        """Forget the fast path's snapshot of the weights (rebuilt at the next frame)."""
        self._predictor = None
        self._warm_keys = set()

    def warm_up(self, height: int, width: int, options: LocalizerOptions | None = None,
                K: np.ndarray | None = None) -> None:
        """Build everything a (height, width) image with intrinsics ``K`` needs before the first real
        one: the encoder's graph and that of every head of an ensemble (any may be routed later;
        building one on first use stalls that frame), the keypoint head's graph of the keyframe
        refinement, and the global descriptor. K None: a camera
        with the map's focal length (no focal change), or focal = width for maps that do not record
        it. Forgets the descriptor of the blank warm-up image afterwards."""
        opt = options or self.options
        if K is None:
            f = float(width)
            if self.map_focal:
                f = self.map_focal * min(height, width) / self.trained_resolution
            K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
        blank = np.zeros((int(height), int(width), 3), np.uint8)
        out = self.localize(blank, K, options=dataclasses.replace(opt, ensemble_candidates=0, early_accept_ratio=0.0))
        if self._keypoints is not None and out.refinement is None:  # a blank image has no pose to refine
            tensor, _ = preprocess_image(blank, K, resolution=self.frame_resolution(K, *blank.shape[:2], opt))
            self._keypoints_of(tensor.to(self.device))
        self.globals.reset()
        self._warm_keys.add(self._warm_key(height, width, K, opt))

    def warm_up_once(self, height: int, width: int, K: np.ndarray, options: LocalizerOptions | None = None) -> bool:
        """:meth:`warm_up` unless the network input an image of this size and intrinsics K (3, 3) gives
        (focal matching included) was warmed up already at the current precision; True when it warmed
        up. For callers that meet a new camera mid-run (the node, glace-eval): the first frame of a
        new size builds every head's graph at once, not one head at a time at later frames."""
        opt = options or self.options
        if self._warm_key(height, width, K, opt) in self._warm_keys:
            return False
        self.warm_up(height, width, opt, K)
        return True

    def _warm_key(self, height: int, width: int, K: np.ndarray, options: LocalizerOptions) -> tuple:
        """(network input height, width, resolved precision) of an image."""
        shape = resized_shape(height, width, self.frame_resolution(K, height, width, options))
        return (*shape, self._resolve_precision(options.precision)[0])

    def precision(self, requested: str | None = None) -> str:
        """What the network runs in for a requested ``precision`` (None: the options'): "fp32" or
        "bf16" on the CPU fast path (``glace_core.cpu_features.resolve_precision``), "fp32" on the
        plain path, "fp16-autocast" on CUDA."""
        if self.device.type == "cuda":
            return "fp16-autocast"
        return self._resolve_precision(requested or self.options.precision)[0]

    def _resolve_precision(self, requested: str) -> tuple[str, str | None]:
        """(the MapPredictor's precision, "fp32" or "bf16"; why a "bf16" request runs fp32, or None)."""
        if self.fast_inference:
            return resolve_precision(requested, self.device.type)
        if requested == "bf16" and self.device.type == "cpu":
            return "fp32", f"precision {requested!r} needs the fast path: the plain modules run fp32"
        return "fp32", None

    def predict(self, image: torch.Tensor, global_features: torch.Tensor | None,
                ensemble_candidates: int, precision: str | None = None) -> list[tuple[int, np.ndarray]]:
        """Normalised gray image (1, 1, H, W) -> ``[(head index, scene coordinates (3, ceil(H/8),
        ceil(W/8)) float32), ...]``, best-routed head first. ``precision``: one of
        ``cpu_features.PRECISIONS`` (None: the options'); a change rebuilds the fast path."""
        return list(self.predict_iter(image, global_features, ensemble_candidates, precision))

    def predict_iter(self, image: torch.Tensor, global_features: torch.Tensor | None,
                     ensemble_candidates: int, precision: str | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """:meth:`predict` one candidate at a time: each head runs when its candidate is asked for."""
        requested = precision or self.options.precision
        resolved, reason = self._resolve_precision(requested)
        if self._predictor is None or self._predictor.precision != resolved:
            if reason:
                _logger.warning(reason)
            elif self.fast_inference and requested != "fp32":
                _logger.info("precision %r: the CPU fast path runs %s", requested, resolved)
            self._predictor = MapPredictor(self.encoder, self.model, fast=self.fast_inference, precision=resolved)
            self._warm_keys = set()
        self._predictor.candidates = int(ensemble_candidates)
        for k, sc in self._predictor.iterate(image.to(self.device), global_features):
            yield k, np.ascontiguousarray(sc[0].float().cpu().numpy(), dtype=np.float32)

    @property
    def network_timings(self) -> dict[str, float]:
        return dict(self._predictor.timings) if self._predictor is not None else {}

    def localize(self, image: np.ndarray, K: np.ndarray, *, options: LocalizerOptions | None = None,
                 global_features: torch.Tensor | np.ndarray | None = None) -> Localization:
        """Localise one image.

        image: (H, W, 3) uint8 RGB or (H, W) uint8 gray; K: (3, 3) intrinsics of ``image`` (pixel
        centres at i + 0.5). ``global_features`` (G,) or (1, G): given features for a head with a
        global input, instead of the descriptor. Raises LocalizationError for a bad image or K; a
        failed RANSAC is a Localization with ``success`` False.
        """
        opt = options or self.options
        t0 = time.perf_counter()
        image = _check_image(image)
        try:
            K = check_K(K, image_size=image.shape[:2])
            resolution = self.frame_resolution(K, image.shape[0], image.shape[1], opt)
            size = resized_shape(image.shape[0], image.shape[1], resolution)
            if opt.max_input_pixels and size[0] * size[1] > opt.max_input_pixels:
                raise ValueError(f"an image of {image.shape[1]}x{image.shape[0]} px becomes a {size[1]}x{size[0]} "
                                 f"network input at image_resolution {resolution}, more than max_input_pixels "
                                 f"{opt.max_input_pixels} (aspect ratio {max(size) / min(size):.1f}:1)")
            tensor, K_net = preprocess_image(image, K, resolution=resolution)
        except ValueError as exc:
            raise LocalizationError(str(exc)) from exc
        t1 = time.perf_counter()
        computed = False
        if global_features is not None and self.global_channels:
            g = torch.as_tensor(np.asarray(global_features, dtype=np.float32) if not torch.is_tensor(global_features)
                                else global_features).reshape(1, -1).float().to(self.device)
            if g.shape[1] != self.global_channels:
                raise LocalizationError(f"global features have width {g.shape[1]}, the map expects {self.global_channels}")
        else:
            g, computed = self.globals(image, opt.global_mode, int(opt.global_every_n))
        t2 = time.perf_counter()
        K_net = np.asarray(K_net, dtype=np.float64)
        stream = self.predict_iter(tensor, g, opt.ensemble_candidates, opt.precision)
        ransac_s = 0.0

        def solve(cands: list[tuple[int, np.ndarray]], fused: bool = False):
            """The candidates solved one by one (``_solve``) or, with ``fused``, as one (``fuse_candidates``);
            the seconds count as the frame's RANSAC time."""
            nonlocal ransac_s
            t = time.perf_counter()
            out = (fuse_candidates(cands, K_net, opt.ransac.solver_kwargs(), self.stride) if fused
                   else self._solve(cands, K_net, opt.ransac))
            ransac_s += time.perf_counter() - t
            return out

        fused = None
        if opt.early_accept_ratio > 0:  # the best-routed head first; the others only if it is not good enough
            first = next(stream)
            solved = solve([first])
            r = solved[0][2]
            if not (r.success and r.inlier_count >= opt.early_accept_ratio * first[1][0].size):
                rest = list(stream)
                if rest and opt.ensemble_fusion == "union":
                    fused = solve([first, *rest], fused=True)
                if rest and fused is None:
                    solved += solve(rest)
        else:  # every candidate, their RANSACs at the same time
            candidates = list(stream)
            if len(candidates) > 1 and opt.ensemble_fusion == "union":
                fused = solve(candidates, fused=True)
            solved = solve(candidates) if fused is None else []
        if fused is not None:  # the union's pose, with the statistics of its best-agreeing head
            head, sc, result = fused.head, fused.scene_coordinates, fused
            candidate_inliers = fused.head_inliers
        else:
            head, sc, result = solved[0]
            for entry in solved[1:]:  # most inliers wins; a success beats a failure; ties keep the earlier
                if (entry[2].success, entry[2].inlier_count) > (result.success, result.inlier_count):
                    head, sc, result = entry
            candidate_inliers = [(k, int(r.inlier_count) if r.success else 0) for k, _, r in solved]
        t3 = time.perf_counter()
        refinement = self._refine(tensor, K_net, result, opt)
        t4 = time.perf_counter()
        out = self._statistics(sc, result, K_net, opt, tensor, refinement)
        t5 = time.perf_counter()
        out.head_index, out.global_computed, out.refinement = head, computed, refinement
        out.candidates = candidate_inliers
        out.timings = {"preprocess": t1 - t0, "global": t2 - t1, **self.network_timings, "ransac": ransac_s,
                       "refine": t4 - t3, "statistics": t5 - t4, "total": t5 - t0}
        return out

    def _refine(self, image: torch.Tensor, K_net: np.ndarray, result, opt: LocalizerOptions) -> Refinement | None:
        """The keyframe refinement of a regressed pose (None when off, without keyframes or without a pose)."""
        if not (opt.refinement.enabled and self.keyframes is not None and result.success):
            return None
        pose = np.asarray(result.camera_to_world, dtype=np.float64)
        if not np.all(np.isfinite(pose)):
            return None
        pixels, descriptors, query_global = self._keypoints_of(image, opt.refinement.max_keypoints)
        return refine_pose(self.keyframes, pixels, descriptors, K_net, pose, opt.refinement, seed=opt.ransac.seed,
                           pixel_scale=min(image.shape[-2:]) / DEFAULT_RESOLUTION, query_global=query_global)

    def _keypoints_of(self, image: torch.Tensor,
                      max_keypoints: int | None = None) -> tuple[np.ndarray, np.ndarray, Callable[[], np.ndarray]]:
        """(keypoint pixels (N, 2), descriptors (N, 64), a function returning the routing descriptor (G,)) of
        the network input ``image`` (1, 1, H, W), from the encoder features of its frame
        (``MapPredictor.features``). The descriptor is computed only if the refinement's retrieval asks for it
        (most frames are refined from their nearest keyframes)."""
        feats = self._predictor.features if self._predictor is not None else None
        if feats is None or tuple(feats.shape[-2:]) != tuple(-(-d // self.stride) for d in image.shape[-2:]):
            with torch.inference_mode():  # the fused single-head path does not expose them: one more pass
                feats = self.encoder(image.to(self.device))
        pixels, descriptors = self._keypoints(image, feats, max_keypoints)
        return pixels, descriptors, lambda: routing_descriptor(feats)[0].float().cpu().numpy()

    def _solve(self, candidates: list[tuple[int, np.ndarray]], K_net: np.ndarray, ransac: RansacOptions) -> list:
        """``[(head, scene coordinates, dsac_native result), ...]`` in the order of ``candidates``.

        Several candidates with ``num_threads`` 0 (all cores): solved at the same time, the first on
        this thread and the others on a pool, each with ``cores // concurrent`` solver threads (the
        solver releases the GIL). The same poses as one after another: each solve draws from its own
        generator seeded by ``seed``, and its result does not depend on the thread count."""
        fx, fy, cx, cy = (float(v) for v in (K_net[0, 0], K_net[1, 1], K_net[0, 2], K_net[1, 2]))
        kwargs = ransac.solver_kwargs()
        cores = _cores()
        concurrent = min(len(candidates), cores) if ransac.num_threads == 0 else 1
        if concurrent > 1:
            kwargs["num_threads"] = max(1, cores // concurrent)

        def solve(sc: np.ndarray):
            return dsac_native.estimate_pose(sc, fx, fy, cx, cy, subsampling=self.stride, **kwargs)

        if concurrent == 1:
            return [(k, sc, solve(sc)) for k, sc in candidates]
        if self._ransac_pool is None:
            self._ransac_pool = ThreadPoolExecutor(cores - 1, "glace-ransac")
        futures = [self._ransac_pool.submit(solve, sc) for _, sc in candidates[1:]]
        first = solve(candidates[0][1])
        results = [first] + [f.result() for f in futures]
        return [(k, sc, r) for (k, sc), r in zip(candidates, results)]

    def _statistics(self, sc: np.ndarray, result, K_net: np.ndarray, opt: LocalizerOptions,
                    image: torch.Tensor, refinement: Refinement | None = None) -> Localization:
        """The Localization of ``result``'s pose, or of the refined pose when ``refinement`` was applied:
        then the statistics, the inlier count and the covariance are those of its keypoint inliers
        (``keyframe_refinement.keypoint_statistics``, ``RefinementOptions.covariance``)."""
        num_cells = int(sc.shape[1] * sc.shape[2])
        refined = refinement is not None and refinement.applied
        pose = np.asarray(result.camera_to_world, dtype=np.float64) if result.success else None
        if refined:
            pose = refinement.camera_to_world
        if pose is not None and not np.all(np.isfinite(pose)):
            pose = None
        mean_err = depth = novelty = float("nan")
        cov = stats = None
        inliers = int(result.inlier_count)
        if pose is not None:
            if self.mapping_views is not None:
                novelty = self.mapping_views.distance(pose)
            if refined:
                stats = keypoint_statistics(refinement, pose)
                inliers, observations, calibration = stats["inliers"], refinement.matches, opt.refinement.covariance
            else:
                texture = cell_texture(image, sc.shape[1:], self.stride, STD * 255.0)
                stats = reprojection_statistics(sc, pose, K_net, opt.ransac.threshold, self.stride, texture)
                observations, calibration = num_cells, opt.covariance
            mean_err, depth = stats["mean_error_px"], stats["median_depth_m"]
            if stats["inliers"] >= 3:
                cov = covariance_from_residuals(stats, observations, K_net, pose, calibration, novelty)
        return Localization(success=pose is not None, camera_to_world=pose,
                            inlier_count=inliers, num_cells=num_cells,
                            mean_inlier_error_px=mean_err, median_inlier_depth_m=depth, covariance=cov,
                            mapping_view_distance_m=novelty, statistics=stats,
                            scene_coordinates=sc, K_network=K_net)
