"""The tiny scene and map of the node tests, built once and cached.

``build_tiny_scene(work)`` renders a synthetic box room (``pretraining_fixtures.render``: real photos
on the walls, exact poses and depth) along a loop, the test frames half-way between training frames
(so a tiny map can localize them), trains a tiny map on it with ``glace-train``'s CPU
preset and few iterations, and runs the offline evaluation (``glace_core.evaluation``) on its test
frames, whose per-frame poses the node's answers are compared with. A second call with the same
``work`` folder reuses what is there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 11
HEIGHT, WIDTH = 96, 128  # rendered image size
RESOLUTION = 96  # image_resolution of the node and the evaluation (no resize)
N_TRAIN, N_TEST = 36, 8
ENCODER = "xfeat"  # the default encoder, named explicitly
MIN_INLIERS = 20  # of 12 x 16 = 192 cells
TRAIN_ITERATIONS = 300


@dataclass
class Frame:
    name: str  # file stem
    file_name: str  # image file name
    rgb: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray  # (3, 3), pixel centres at i + 0.5
    gt: np.ndarray  # (4, 4) camera-to-world


@dataclass
class TinyScene:
    root: Path
    map_path: Path
    encoder: str
    resolution: int
    min_inliers: int
    frames: list[Frame]  # the test split
    offline_poses: list[np.ndarray | None]  # offline evaluation, per test frame (None: no pose)
    offline_inliers: list[int]  # RANSAC inliers of the offline evaluation, per test frame
    offline_median_t: float  # metres
    offline_median_r: float  # degrees
    good_frame: int  # a test frame the offline evaluation localizes well (within 10 cm, the most inliers)


def pose_error(estimate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(translation error in m, rotation error in degrees) between two camera-to-world poses."""
    t = float(np.linalg.norm(estimate[:3, 3] - reference[:3, 3]))
    cos = (np.trace(estimate[:3, :3] @ reference[:3, :3].T) - 1.0) / 2.0
    return t, float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def load_frames(scene: Path, split: str) -> list[Frame]:
    """Frames of a DSAC*-layout split, read with glace_core.dataset (any file naming it accepts)."""
    from glace_core.dataset import SceneSplit

    data = SceneSplit(scene, split)
    frames = []
    for i in range(len(data)):
        item = data[i]
        rgb = np.ascontiguousarray(data.load_rgb(i))
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        frames.append(Frame(Path(item.name).stem, Path(item.rgb_path).name, rgb, np.asarray(item.K, np.float64),
                            np.asarray(item.pose, np.float64)))
    if not frames:
        raise ValueError(f"no images in {Path(scene) / split / 'rgb'}")
    return frames


def write_loop_scene(root: Path, seed: int = SEED, n_train: int = N_TRAIN, n_test: int = N_TEST,
                     height: int = HEIGHT, width: int = WIDTH) -> Path:
    """A DSAC*-layout scene: the camera circles the room's centre looking outwards (yaw following the
    loop, pitch and radius wobbling); test frames sit between training frames on the same loop."""
    from pretraining_fixtures import _look, _textures, render, write_frame

    rng = np.random.default_rng(seed)
    pool = _textures()
    textures = [pool[i] for i in rng.permutation(len(pool))[:6]]
    focal = 0.8 * width
    phase = rng.uniform(0, 2 * np.pi)

    def pose_at(u: float) -> np.ndarray:  # u in [0, 1): position on the loop
        a = phase + 2 * np.pi * u
        pose = np.eye(4)
        pose[:3, :3] = _look(a + 0.3 * np.sin(3 * a), 0.15 * np.sin(2 * a))
        radius = 0.5 + 0.1 * np.sin(5 * a)
        pose[:3, 3] = [radius * np.cos(a), 0.1 * np.sin(4 * a), radius * np.sin(a)]
        return pose

    test_u = [(i * n_train // n_test + 0.5) / n_train for i in range(n_test)]
    for split, positions in (("train", [i / n_train for i in range(n_train)]), ("test", test_u)):
        for sub in ("rgb", "poses", "calibration", "depth"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i, u in enumerate(positions):
            pose = pose_at(u)
            rgb, depth = render(textures, pose, focal, height, width, 2)
            write_frame(root / split, i, rgb, depth, pose, focal)
    return root


#: glace-train options of the tiny map after ``--preset cpu``: its encoder, size and few iterations.
TRAIN_OPTIONS = ["--encoder_path", ENCODER, "--device", "cpu", "--image_resolution", str(RESOLUTION),
                 "--max_iterations", str(TRAIN_ITERATIONS), "--training_buffer_size", str(N_TRAIN * 1024 * 2),
                 "--batch_size", "2048", "--head_channels", "128"]


def _train_map(scene: Path, map_path: Path) -> None:
    """A tiny map with glace-train's CPU preset and few iterations."""
    from glace_core.cli.train import main as train_main

    code = train_main([str(scene), str(map_path), "--preset", "cpu", *TRAIN_OPTIONS])
    if code not in (0, None) or not map_path.is_file():
        raise RuntimeError(f"glace-train failed (exit {code}) for the tiny scene {scene}")


def _offline_poses(scene: Path, map_path: Path, frames: list[Frame]) -> list[tuple[np.ndarray | None, int]]:
    """Per-frame (pose, inliers) of the offline evaluation (glace_core.evaluation) on the test split."""
    from glace_core.evaluation import evaluate_scene

    result = evaluate_scene(scene, map_path, split="test", encoder_path=ENCODER, image_resolution=RESOLUTION,
                            device="cpu")
    by_file = {r.file_name: r for r in result.frames}
    if set(by_file) != {f.file_name for f in frames}:
        raise RuntimeError(f"the evaluation saw frames {sorted(by_file)}, expected {[f.file_name for f in frames]}")
    records = [by_file[f.file_name] for f in frames]
    return [(r.camera_to_world if r.success else None, int(r.inliers)) for r in records]


def build_tiny_scene(work: Path) -> TinyScene:
    work = Path(work)
    scene, map_path, cache = work / "scene", work / "map.pt", work / "offline.json"
    if not (scene / "test" / "rgb").is_dir():
        write_loop_scene(scene)
    if not map_path.is_file():
        _train_map(scene, map_path)
    frames = load_frames(scene, "test")
    if cache.is_file():
        offline = [(None if p is None else np.array(p), n) for p, n in json.loads(cache.read_text())]
    else:
        offline = _offline_poses(scene, map_path, frames)
        cache.write_text(json.dumps([(None if p is None else p.tolist(), n) for p, n in offline]))
    errors = [pose_error(p, f.gt) if p is not None else (np.inf, np.inf) for (p, _), f in zip(offline, frames)]
    # the frame with the most RANSAC inliers among those localized within 10 cm (the inliers are the
    # regression's, the same with the keyframe refinement on or off)
    good = int(np.argmax([n if t < 0.1 else -1 for (t, _), (_, n) in zip(errors, offline)]))
    if not np.isfinite(errors[good][0]) or offline[good][1] < MIN_INLIERS:
        raise RuntimeError(f"the tiny map {map_path} localizes no test frame offline")
    return TinyScene(scene, map_path, ENCODER, RESOLUTION, MIN_INLIERS, frames, [p for p, _ in offline],
                     [n for _, n in offline], float(np.median([t for t, _ in errors])),
                     float(np.median([r for _, r in errors])), good)
