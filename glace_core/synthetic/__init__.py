"""Synthetic DSAC*-layout scenes: procedural rooms textured with real photo collages, rendered with
moderngl/EGL or, when no GL context can be made, a pure-PyTorch ray-caster.

``make_scene(root, seed=3, n_train=48, n_test=6)`` writes ``root/{train,test}/{rgb,poses,
calibration,depth}`` and ``root/scene.json``; see ``writer`` for the layout. The room depends on the
seed only; the trajectory on the seed, the counts and the trajectory kind. Same seed, options and
backend → bit-identical files.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from glace_core.synthetic.camera import Camera
from glace_core.synthetic.room import Room, build_room
from glace_core.synthetic.trajectory import TRAJECTORIES, make_trajectory

__all__ = ["BACKENDS", "TRAJECTORIES", "Camera", "Room", "SceneConfig", "SceneInfo", "build_room",
           "make_renderer", "make_scene"]

_logger = logging.getLogger(__name__)

BACKENDS = ("auto", "gl", "torch")


@dataclass
class SceneConfig:
    """Options of one synthetic scene (the CLI flags of ``glace-make-scene``)."""

    seed: int = 0  # room, textures and trajectory all follow from it
    n_train: int = 200  # training frames
    n_test: int = 50  # test frames
    trajectory: str = "loop"  # "loop" or "random"
    resolution: tuple[int, int] = (480, 640)  # (H, W) pixels
    backend: str = "auto"  # "gl" (moderngl/EGL), "torch" (ray-caster) or "auto" (gl, else torch)
    texels_per_m: float = 200.0  # texture resolution on every surface

    def __post_init__(self):
        if self.n_train < 1 or self.n_test < 0:
            raise ValueError(f"need n_train >= 1 and n_test >= 0, got {self.n_train}, {self.n_test}")
        if self.trajectory not in TRAJECTORIES:
            raise ValueError(f"trajectory must be one of {TRAJECTORIES}, got {self.trajectory!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if len(self.resolution) != 2 or min(self.resolution) < 8:
            raise ValueError(f"resolution must be (H, W) with both >= 8, got {self.resolution}")
        self.resolution = (int(self.resolution[0]), int(self.resolution[1]))
        if not 20 <= self.texels_per_m <= 600:
            raise ValueError(f"texels_per_m must be in [20, 600], got {self.texels_per_m}")


@dataclass
class SceneInfo:
    """What ``make_scene`` wrote."""

    root: Path
    config: SceneConfig
    backend: str  # the backend that rendered ("gl" or "torch")
    K: np.ndarray  # (3, 3) intrinsics of every frame
    counts: dict = field(default_factory=dict)  # {"train": n, "test": m}


def make_renderer(room: Room, camera: Camera, backend: str = "auto"):
    """A renderer with ``render(pose) -> (rgb, depth)`` and ``close()``: GL for "gl", the PyTorch
    ray-caster for "torch", GL when an EGL context can be made for "auto" (else torch, logged).
    GL runs in a child process (``render_process``: Mesa's LLVM and torch's Triton crash together)."""
    from glace_core.synthetic.render_gl import GLUnavailable
    from glace_core.synthetic.render_process import GLProcessRenderer
    from glace_core.synthetic.render_torch import TorchRenderer

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return TorchRenderer(room, camera)
    try:
        return GLProcessRenderer(room, camera)
    except GLUnavailable as exc:
        if backend == "gl":
            raise
        _logger.warning("%s; rendering with the PyTorch ray-caster instead", exc)
        return TorchRenderer(room, camera)


def make_scene(root: str | os.PathLike, seed: int = 0, n_train: int = 200, n_test: int = 50,
               trajectory: str = "loop", resolution: tuple[int, int] = (480, 640), backend: str = "auto",
               texels_per_m: float = 200.0, progress: bool = False) -> SceneInfo:
    """Generate and write one synthetic scene under ``root`` (created; existing frames overwritten).

    resolution: (H, W). Returns a SceneInfo (paths, counts, the backend used)."""
    from tqdm import tqdm

    from glace_core.synthetic.writer import write_frame, write_scene_json

    config = SceneConfig(int(seed), int(n_train), int(n_test), trajectory, tuple(resolution), backend,
                         float(texels_per_m))
    root = Path(root)
    room_ss, traj_ss = np.random.SeedSequence(config.seed).spawn(2)
    room = build_room(room_ss, config.texels_per_m)
    camera = Camera.default(*config.resolution)
    train, test = make_trajectory(config.trajectory, room, camera, config.n_train, config.n_test,
                                  np.random.default_rng(traj_ss))
    renderer = make_renderer(room, camera, config.backend)
    try:
        bar = tqdm(total=len(train) + len(test), desc=f"scene {root.name}", unit="frame", disable=not progress)
        for split, poses in (("train", train), ("test", test)):
            for sub in ("rgb", "poses", "calibration", "depth"):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
            for i, pose in enumerate(poses):
                rgb, depth = renderer.render(pose)
                write_frame(root, split, i, rgb, depth, pose, camera.focal)
                bar.update()
        bar.close()
    finally:
        renderer.close()
    info = {"generator": "glace_core.synthetic", "config": asdict(config), "backend": renderer.backend,
            "K": camera.K.tolist(), "world": "z up, floor at z = 0; poses camera-to-world, OpenCV axes",
            "room": room.to_json()}
    write_scene_json(root, info)
    return SceneInfo(root, config, renderer.backend, camera.K, {"train": len(train), "test": len(test)})
