"""``make_scene``: one synthetic DSAC*-layout scene, its options (``SceneConfig``) and renderers.

The room depends on the seed, the texture, the room count and the test lighting; the trajectory
on the seed, the counts and the trajectory kind (the test options move, turn, blur or re-camera
the test split on top of it, each from a seed stream of its own). Default options write what they
always did, byte for byte; the variant options appear in ``scene.json`` only when set.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from glace_core.synthetic.build import LIGHTINGS, TEXTURES, build_rooms
from glace_core.synthetic.building import MAX_ROOMS
from glace_core.synthetic.camera import Camera
from glace_core.synthetic.room import Room
from glace_core.synthetic.trajectory import TRAJECTORIES, make_trajectory

_logger = logging.getLogger(__name__)

BACKENDS = ("auto", "gl", "torch")
#: The options that make a variant scene (written to scene.json only when they differ from the default).
VARIANT_FIELDS = ("texture", "rooms", "test_lighting", "test_offset", "test_yaw", "test_camera", "motion_blur")


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
    texture: str = "dense"  # "dense": photo collages everywhere; "sparse": paint, 2-4 pictures a room, plain furniture
    rooms: int = 1  # rooms joined by corridors (1: one room; 2-6: a building 10-30 m across)
    test_lighting: str = "same"  # "changed": other lights, brightness and colour temperature for the test split
    test_offset: float = 0.0  # metres the test views move sideways/up-down off the mapping path (clamped)
    test_yaw: float = 0.0  # degrees the test views turn about the vertical (clamped)
    test_camera: str = ""  # "fx,fy,cx,cy,WxH" of the test split's camera ("": the mapping camera)
    motion_blur: float = 0.0  # pixels (streak length) of linear motion blur on the test images

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
        if self.texture not in TEXTURES:
            raise ValueError(f"texture must be one of {TEXTURES}, got {self.texture!r}")
        if not 1 <= self.rooms <= MAX_ROOMS:
            raise ValueError(f"rooms must be in [1, {MAX_ROOMS}], got {self.rooms}")
        if self.test_lighting not in LIGHTINGS:
            raise ValueError(f"test_lighting must be one of {LIGHTINGS}, got {self.test_lighting!r}")
        if not 0 <= self.test_offset <= 3:
            raise ValueError(f"test_offset must be in [0, 3] metres, got {self.test_offset}")
        if not 0 <= self.test_yaw <= 180:
            raise ValueError(f"test_yaw must be in [0, 180] degrees, got {self.test_yaw}")
        if not 0 <= self.motion_blur <= 100:
            raise ValueError(f"motion_blur must be in [0, 100] pixels, got {self.motion_blur}")
        if self.test_camera:
            Camera.from_spec(self.test_camera)  # raises ValueError naming the problem

    def to_json(self) -> dict:
        """The options, the variant ones only where set (so a default scene.json is today's)."""
        defaults = {f.name: f.default for f in fields(self)}
        return {k: v for k, v in asdict(self).items() if k not in VARIANT_FIELDS or v != defaults[k]}


@dataclass
class SceneInfo:
    """What ``make_scene`` wrote."""

    root: Path
    config: SceneConfig
    backend: str  # the backend that rendered ("gl" or "torch")
    K: np.ndarray  # (3, 3) intrinsics of every training frame (and of the test frames without a test camera)
    counts: dict = field(default_factory=dict)  # {"train": n, "test": m}
    K_test: np.ndarray | None = None  # (3, 3) intrinsics of the test frames
    test_displacement: np.ndarray | None = None  # (m, 2) offset (m) and yaw (deg) each test frame got


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
               texels_per_m: float = 200.0, progress: bool = False, *, texture: str = "dense", rooms: int = 1,
               test_lighting: str = "same", test_offset: float = 0.0, test_yaw: float = 0.0, test_camera: str = "",
               motion_blur: float = 0.0) -> SceneInfo:
    """Generate and write one synthetic scene under ``root`` (created; existing frames overwritten).

    resolution: (H, W). The keyword-only options are the variants of ``SceneConfig``. Returns a
    SceneInfo (paths, counts, the backend used)."""
    from tqdm import tqdm

    from glace_core.synthetic.blur import motion_blur as blur_image
    from glace_core.synthetic.displace import displace_test_poses
    from glace_core.synthetic.writer import write_frame, write_scene_json

    config = SceneConfig(int(seed), int(n_train), int(n_test), trajectory, tuple(resolution), backend,
                         float(texels_per_m), texture, int(rooms), test_lighting, float(test_offset), float(test_yaw),
                         str(test_camera), float(motion_blur))
    root = Path(root)
    room_ss, traj_ss, move_ss, blur_ss = np.random.SeedSequence(config.seed).spawn(4)
    built = build_rooms(room_ss, config.texels_per_m, config.texture, config.rooms, config.test_lighting)
    camera = Camera.default(*config.resolution)
    test_camera = Camera.from_spec(config.test_camera) if config.test_camera else camera
    train, test = make_trajectory(config.trajectory, built.train, camera, config.n_train, config.n_test,
                                  np.random.default_rng(traj_ss))
    moved = None
    if config.test_offset > 0 or config.test_yaw > 0:
        test, moved = displace_test_poses(built.train, test_camera, test, config.test_offset, config.test_yaw,
                                          np.random.default_rng(move_ss))
    blur_angles = np.random.default_rng(blur_ss).uniform(0, np.pi, len(test))
    renderer = make_renderer(built.train, camera, config.backend)
    used = (built.train, camera)
    backend_used = renderer.backend
    try:
        bar = tqdm(total=len(train) + len(test), desc=f"scene {root.name}", unit="frame", disable=not progress)
        for split, poses, room, cam in (("train", train, built.train, camera), ("test", test, built.test, test_camera)):
            for sub in ("rgb", "poses", "calibration", "depth"):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
            if len(poses) and (room is not used[0] or cam != used[1]):
                renderer.close()
                renderer, used = make_renderer(room, cam, backend_used), (room, cam)
            for i, pose in enumerate(poses):
                rgb, depth = renderer.render(pose)
                if split == "test" and config.motion_blur > 0:
                    rgb = blur_image(rgb, config.motion_blur, float(blur_angles[i]))
                write_frame(root, split, i, rgb, depth, pose, cam.focal if cam is camera else cam.K)
                bar.update()
        bar.close()
    finally:
        renderer.close()
    info = {"generator": "glace_core.synthetic", "config": config.to_json(), "backend": backend_used,
            "K": camera.K.tolist(), "world": "z up, floor at z = 0; poses camera-to-world, OpenCV axes",
            "room": built.train.to_json()}
    if config.test_camera:
        info["K_test"] = test_camera.K.tolist()
    if built.test_lighting is not None:
        info["test_lighting"] = built.test_lighting.to_json()
    if moved is not None:
        info["test_displacement"] = {"offset_m": moved[:, 0].tolist(), "yaw_deg": moved[:, 1].tolist()}
    if config.motion_blur > 0:
        info["test_motion_blur"] = {"length_px": config.motion_blur, "angle_rad": blur_angles.tolist()}
    write_scene_json(root, info)
    return SceneInfo(root, config, backend_used, camera.K, {"train": len(train), "test": len(test)},
                     test_camera.K if config.test_camera else None, moved)
