"""Options of map training (``glace-train``): the reference train_ace.py options plus our own.

``TrainConfig`` holds every option of GLACE's train_ace.py with the same name and default (the
"paper" preset), plus ``device``, ``seed`` and ``preset``. The CLI builds one flag per field
(``glace_core.cli.train``), so the two cannot drift apart.

Presets layer values over the paper defaults; options given explicitly win over the preset:
``TrainConfig.from_preset("cpu", max_iterations=500)``.

The ``cpu`` preset: map a ~250-frame 480x640 scene in 4-8 minutes on 2 CPU cores (about four on
AVX-512 Zen 5 cores, 6-8 on AVX2-only ones; BENCHMARKS.md "Mapping time"), as an ensemble of 16 cluster heads (``glace_core.head_ensemble``). Measured on held-out
``glace-make-scene`` rooms (loop trajectory, 250 train / 50 test frames, seeds 100 and 101) with the
default XFeat encoder (BENCHMARKS.md "Encoders"). What it changes, and why:

- ``encoder_path="default"``: the shipped default encoder (XFeat, 64 channels). The official ACE
  encoder file is not shipped.
- ``global_feat=False``: no R2Former checkpoint ships and DeiT-S costs about a second per frame on
  CPU. It also shrinks the head input from 320 to 64 channels. Pass ``--global_feat True`` with a
  features.npy to use it.
- ``image_resolution=480`` (the paper's): finer cells give more precise poses (single head, seed
  100: 240 px 36 %, 360 px 46-50 %, 480 px 58 % within 5 cm/5 deg).
- ``head_channels=128`` (mlp_ratio 1, 1 block): a step costs 4x less than at 256.
- ``num_clusters=16``, ``cluster_overlap=1.3``: one head per KMeans cluster of camera positions,
  frames within 1.3x of their nearest centre's distance also join that cluster. One head over the
  whole room (8000 iterations) reached 64-66 % within 5 cm/5 deg: whole stretches of the loop whose
  textures repeat elsewhere were never learned. The same budget over 16 heads: 80-86 %.
- ``batch_size=2048``, ``max_iterations=1000`` per head (33M sampled cells in all, as 16 x 500 at
  4096): 86-90 % within 5 cm/5 deg, 100 % within 10 cm/10 deg; 16 x 500 at 4096: 80-86 %;
  16 x 650 at 4096: 82-84 %. More, smaller steps generalise better to the views between training
  views; the training frames themselves are fit to 99.6 % (median 0.8 cm) either way.
  Mapping wall time: 244 s for seed 101 (buffer 8 s, 0.014 s per step) on free cores.
- ``training_buffer_size=400_000`` with ``samples_per_image=1024``: 1.6 passes over 250 frames
  (1.2M rows: one point better, three times the buffer memory).
- ``use_aug=False``: test views here lie between training views (a few cm and degrees away); with
  short runs augmentation cost more than it gave in an earlier measurement (median 40 cm without,
  126 cm with, 1000 iterations at 240). Pass ``--use_aug True`` for longer runs.
- The issue-5 goal (90 % within 5 cm/5 deg) is met on seed 100 and missed on seed 101 (86 %). The
  failures are 5-10 cm / ~1 deg errors on test views, not gross ones.
- ``use_half`` stays True: it only has an effect on CUDA.
- ``keyframe_keypoints=1024`` (ours; the paper preset writes none): the map's keyframes file for the
  Localizer's pose refinement (``glace_core.keyframes``, ``glace_core.keyframe_refinement``): about 15 s
  and 36 MB for 250 frames; on the bench it takes the median error from 1.4-6.6 cm to 0.1-0.7 cm
  (BENCHMARKS.md "Keyframe refinement").

``use_depth`` (ours; the paper trains from RGB and poses alone, so its default and the "paper"
preset's is "off"): where the mapping split has z-depth registered to its images (``depth/``;
glace-make-scene writes it, ``glace-train --bag --depth-topic`` too), each sampled cell's 3D point is
also pulled to its depth point (``glace_core.training.loss``). The depth must be registered to the RGB
image (aligned depth of an RGB-D camera, rendered depth), not a raw depth sensor's own view. The cpu
and quality presets use "auto" (depth when the split has it, else nothing changes): on the bench
(BENCHMARKS.md "Depth supervision") it raised the share within 5 cm/5 deg on six of seven hard-scene
variants and on held-out room 100 (equal on room 101) and lowered the median error on all of them
but the other camera, where two training seeds disagreed in sign (within 5 cm/5 deg 40 % against 26 % on
one, 22 % against 32 % on the other; within 10 cm/10 deg 78 % against 90 %, then 80 % against 72 %).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

from glace_core.cpu_features import PRECISIONS
from glace_core.dataset import FEATURES_FILE
from glace_core.devices import check_device_spec

#: The reference's default encoder file name (train_ace.py ``--encoder_path``).
REFERENCE_ENCODER_PATH = "./ace_encoder_pretrained.pt"
LOSS_TYPES = ("l1", "l1+sqrt", "l1+log", "tanh", "dyntanh")
LOSS_SCHEDULES = ("circle", "linear")
#: ``use_depth``: never, when the mapping split has depth/, or always (an error without depth/).
DEPTH_MODES = ("off", "auto", "on")


@dataclass
class TrainConfig:
    """Map-training options; field names and defaults are those of GLACE's train_ace.py."""

    # GLACE additions
    global_feat: bool = True  # condition the head on the split's global features (features.npy)
    feat_name: str = FEATURES_FILE  # file name of the global features inside each split folder
    feat_noise_std: float = 0.1  # std of the Gaussian noise added to global features in training
    num_decoder_clusters: int = 1  # K > 1: position decoder over K KMeans centres of the cameras
    head_channels: int = 768  # head width h
    mlp_ratio: float = 1.0  # head block width = int(h * mlp_ratio)
    # model and optimisation
    encoder_path: str = REFERENCE_ENCODER_PATH  # encoder file, or "default"/"xfeat"/"ace-random:<seed>"
    num_head_blocks: int = 1  # residual blocks of the head after res3
    learning_rate_min: float = 0.0005  # accepted like the reference, which does not use it (OneCycle)
    learning_rate_max: float = 0.005  # OneCycle peak learning rate
    training_buffer_size: int = 16_000_000  # rows (sampled cells) in the training buffer
    samples_per_image: int = 1024  # cells drawn per image and pass
    batch_size: int = 40960  # cells per optimiser step
    max_iterations: int = 30000  # optimiser steps
    # reprojection loss
    repro_loss_hard_clamp: int = 1000  # errors above this (px) count as invalid
    repro_loss_soft_clamp: int = 50  # soft clamp of the robust loss at the start (px)
    repro_loss_soft_clamp_min: int = 1  # soft clamp at the end (dyntanh)
    repro_loss_type: str = "dyntanh"  # one of LOSS_TYPES
    repro_loss_schedule: str = "circle"  # one of LOSS_SCHEDULES (dyntanh clamp schedule)
    # precision and augmentation
    use_half: bool = True  # fp16 autocast + GradScaler (CUDA only; ignored on CPU)
    use_homogeneous: bool = True  # head predicts homogeneous coordinates
    use_aug: bool = True  # scale/rotation/brightness/contrast augmentation in the buffer
    aug_rotation: int = 15  # max rotation (degrees) of the augmentation
    aug_scale: float = 1.5  # scale factor range [1/aug_scale, aug_scale]
    image_resolution: int = 480  # shorter side of the network input (px)
    # depth handling in the loss
    depth_min: float = 0.1  # predictions closer than this (m) are invalid
    depth_target: float = 10  # invalid predictions are pulled to this depth (m) along the pixel ray
    depth_max: float = 1000  # predictions farther than this (m) are invalid
    # ours: depth supervision from the mapping split's depth/ (z-depth registered to the RGB image)
    use_depth: str = "off"  # one of DEPTH_MODES: off | auto (when the split has depth/) | on (required)
    depth_loss_weight: float = 10.0  # loss per metre of 3D error where depth is known (against px)
    # ours: novel views of the mapping frames rendered from their depth (training/augment.novel_view)
    novel_view_ratio: float = 0.0  # probability that a buffer image is a novel view (0: off; only with depth/)
    novel_view_offset: float = 0.3  # max distance (m) of a novel view's camera from the frame's
    novel_view_yaw: float = 15.0  # max turn (degrees) of a novel view's camera about its y axis
    # ours: keyframes for the pose refinement (glace_core.keyframes; XFeat encoders): keypoints per mapping frame
    keyframe_keypoints: int = 0  # 0: no keyframes file (the paper's map alone)
    # training on one spatial cluster of the mapping frames
    num_clusters: Optional[int] = None  # split the training frames into this many KMeans clusters
    cluster_idx: Optional[int] = None  # train only on the frames of this cluster (None: an ensemble of all)
    cluster_overlap: float = 1.0  # ours: a frame also joins clusters within this factor of its nearest (1: disjoint)
    # rendering (the reference's 3D visualisation; accepted for compatibility, True is refused)
    render_visualization: bool = False
    render_target_path: str = "renderings"
    render_flipped_portrait: bool = False
    render_map_error_threshold: int = 10
    render_map_depth_filter: int = 10
    render_camera_z_offset: int = 4
    # ours
    device: str = "auto"  # a glace_core.devices spec: "auto" (CUDA if available), "cpu", "cuda[:N]", "mps"
    # CPU head training: fp32 | auto (bf16 where the CPU has AVX512_BF16/AMX) | bf16. fp32 by default: on a
    # Zen 5 CPU bf16 took 0.52-0.70x the training time but gave 4-10 points less within 5 cm/5 deg on
    # the demo scene and two held-out rooms (BENCHMARKS.md "bf16 where the CPU has it", issue 17)
    precision: str = "fp32"
    seed: int = 42  # each distributed rank uses seed + rank
    preset: str = "paper"  # the preset these values were built from (PRESETS)

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides: Any) -> "TrainConfig":
        """The paper defaults, then ``PRESETS[preset]``, then ``overrides`` (explicit options)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown training preset {preset!r}; valid presets: {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}")
        config = replace(cls(), **{**PRESETS[preset], **overrides, "preset": preset})
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the first option outside its valid range."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown training preset {self.preset!r}; valid presets: {sorted(PRESETS)}")
        for name in ("feat_noise_std", "learning_rate_min"):
            if getattr(self, name) < 0:
                raise ValueError(f"training option {name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("num_decoder_clusters", "head_channels", "mlp_ratio", "learning_rate_max",
                     "training_buffer_size", "samples_per_image", "batch_size", "max_iterations",
                     "repro_loss_hard_clamp", "repro_loss_soft_clamp", "aug_scale", "image_resolution",
                     "depth_min", "depth_target", "depth_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"training option {name} must be > 0, got {getattr(self, name)!r}")
        if self.num_head_blocks < 0 or self.repro_loss_soft_clamp_min < 0 or self.aug_rotation < 0:
            raise ValueError("num_head_blocks, repro_loss_soft_clamp_min and aug_rotation must be >= 0, got "
                             f"{self.num_head_blocks}, {self.repro_loss_soft_clamp_min}, {self.aug_rotation}")
        if self.aug_scale < 1:
            raise ValueError(f"aug_scale must be >= 1 (1 disables scaling), got {self.aug_scale}")
        if self.image_resolution < 16:
            raise ValueError(f"image_resolution must be at least 16 px, got {self.image_resolution}")
        if self.depth_min >= self.depth_max:
            raise ValueError(f"depth_min ({self.depth_min}) must be smaller than depth_max ({self.depth_max})")
        if self.repro_loss_type not in LOSS_TYPES:
            raise ValueError(f"repro_loss_type must be one of {LOSS_TYPES}, got {self.repro_loss_type!r}")
        if self.repro_loss_schedule not in LOSS_SCHEDULES:
            raise ValueError(f"repro_loss_schedule must be one of {LOSS_SCHEDULES}, "
                             f"got {self.repro_loss_schedule!r}")
        if not 0.0 <= self.novel_view_ratio <= 1.0:
            raise ValueError(f"novel_view_ratio must be in [0, 1], got {self.novel_view_ratio}")
        if self.novel_view_offset < 0 or self.novel_view_yaw < 0:
            raise ValueError("novel_view_offset and novel_view_yaw must be >= 0, got "
                             f"{self.novel_view_offset}, {self.novel_view_yaw}")
        if self.keyframe_keypoints < 0:
            raise ValueError(f"keyframe_keypoints must be >= 0 (0: no keyframes), got {self.keyframe_keypoints}")
        if self.use_depth not in DEPTH_MODES:
            raise ValueError(f"use_depth must be one of {DEPTH_MODES}, got {self.use_depth!r}")
        if not self.depth_loss_weight >= 0:
            raise ValueError(f"depth_loss_weight must be >= 0, got {self.depth_loss_weight!r}")
        check_device_spec(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.training_buffer_size < self.batch_size:
            raise ValueError(f"training_buffer_size ({self.training_buffer_size}) must be at least "
                             f"batch_size ({self.batch_size})")
        if self.cluster_idx is not None and self.num_clusters is None:
            raise ValueError(f"cluster_idx={self.cluster_idx} needs num_clusters (the number of clusters it is one of)")
        if self.num_clusters is not None and self.num_clusters < 1:
            raise ValueError(f"num_clusters must be >= 1, got {self.num_clusters}")
        if self.cluster_idx is not None and not 0 <= self.cluster_idx < self.num_clusters:
            raise ValueError(f"cluster_idx must be in [0, num_clusters={self.num_clusters}), got {self.cluster_idx}")
        if not self.cluster_overlap >= 1.0:
            raise ValueError(f"cluster_overlap must be >= 1 (1: disjoint clusters), got {self.cluster_overlap}")
        if self.render_visualization:
            raise ValueError("render_visualization True is not supported: glace-ros has no 3D renderer "
                             "(the render_* options are accepted for compatibility only)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Values each preset layers over the paper defaults (see the module docstring for the reasons).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {
        "encoder_path": "default",
        "global_feat": False,
        "head_channels": 128,
        "num_head_blocks": 1,
        "batch_size": 2048,
        "max_iterations": 1000,
        "num_clusters": 16,
        "cluster_overlap": 1.3,
        "training_buffer_size": 400_000,
        "samples_per_image": 1024,
        "image_resolution": 480,
        "use_aug": False,
        "use_depth": "auto",
        "keyframe_keypoints": 1024,
    },
}
#: ``quality``: the cpu preset with augmentation (scale, rotation, brightness, contrast) and twice the
#: iterations per head: about 2x its mapping time, for views further from the mapping run, other
#: cameras and other light (BENCHMARKS.md "Hard scenes").
PRESETS["quality"] = {**PRESETS["cpu"], "use_aug": True, "max_iterations": 2000}
#: ``fast``: the cpu preset with a quarter of its batch (512 cells per head and step, same 1000
#: steps) and a higher peak learning rate (0.008): a 250-frame room in about two minutes on 2 AVX2
#: cores instead of six to seven, at 90-94 % within 5 cm/5 deg on the held-out rooms and the demo
#: scene against 92-96 % (with depth; BENCHMARKS.md "Mapping in two minutes"). At 512 cells and the
#: cpu preset's 0.005 the held-out rooms lost 4-6 points; at 0.003 8 more.
PRESETS["fast"] = {**PRESETS["cpu"], "batch_size": 512, "learning_rate_max": 0.008}
