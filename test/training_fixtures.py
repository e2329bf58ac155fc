"""Helpers of the training/evaluation tests: an in-memory mapping dataset and a small scene on disk.

``MemoryDataset`` is the minimal SceneSplit interface ``glace_core.training.train_map`` accepts
(what a bag reader would hand over without writing a DSAC* folder). ``small_scene`` writes a
DSAC*-layout scene with exact poses and depth (``glace_core.synthetic.make_scene`` when present,
else the box room of ``pretraining_fixtures``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class MemoryFrame:
    name: str
    rgb_path: str
    pose: np.ndarray  # (4, 4) cam-to-world
    K: np.ndarray  # (3, 3)
    depth_path: str | None
    index: int


class MemoryDataset:
    """Frames held in memory: images (N, H, W, 3) uint8, poses (N, 4, 4), K (3, 3) shared."""

    def __init__(self, images: np.ndarray, poses: np.ndarray, K: np.ndarray, features: np.ndarray | None = None,
                 depths: np.ndarray | None = None):
        self.images, self._poses, self.K, self._features = images, np.asarray(poses, np.float64), K, features
        self.depths = depths  # (N, H, W) float32 metres, 0 = unknown, or None
        self.names = [f"frame-{i:03d}" for i in range(len(images))]
        self.has_ground_truth = True

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> MemoryFrame:
        return MemoryFrame(self.names[i], self.names[i] + ".png", self._poses[i], self.K, None, i)

    @property
    def poses(self) -> np.ndarray:
        return self._poses

    @property
    def camera_centres(self) -> np.ndarray:
        return self._poses[:, :3, 3]

    def load_rgb(self, i: int) -> np.ndarray:
        return self.images[i]

    @property
    def has_depth(self) -> bool:
        return self.depths is not None

    def load_depth_m(self, i: int) -> np.ndarray:
        if self.depths is None:
            raise ValueError("no depth")
        return self.depths[i]

    def global_features(self):
        return self._features


def random_dataset(n: int = 3, h: int = 32, w: int = 48, seed: int = 0, features: bool = False) -> MemoryDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    poses = np.repeat(np.eye(4)[None], n, axis=0)
    poses[:, :3, 3] = rng.normal(size=(n, 3))
    K = np.array([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]])
    feats = None
    if features:
        feats = rng.normal(size=(n, 256)).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return MemoryDataset(images, poses, K, feats)


def small_scene(root: Path, seed: int = 3, n_train: int = 24, n_test: int = 6, height: int = 96,
                width: int = 128) -> Path:
    """A DSAC*-layout scene with train/test splits at ``height`` x ``width``."""
    from pretraining_fixtures import write_box_scene

    return write_box_scene(root, seed, n_train, n_test, height, width)
