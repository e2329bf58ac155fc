"""Options of encoder pretraining; the CLI's flags map one-to-one onto these fields."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class PretrainConfig:
    """Pretraining options. Defaults suit a CPU run over many small synthetic scenes."""

    iterations: int = 3000  # optimiser steps (each step: one scene, ``batch_images`` images of it)
    batch_images: int = 4  # images per step, all from one scene
    image_height: int = 120  # network input height (shorter side); ACE maps at 480
    learning_rate: float = 1e-3  # OneCycle peak learning rate (encoder and heads)
    weight_decay: float = 0.01  # AdamW weight decay
    head_channels: int = 256  # width of each per-scene head (GlaceHead without global input)
    num_head_blocks: int = 1  # residual blocks of each per-scene head
    depth_weight: float = 10.0  # weight of the L1 (metres) on camera-space points where depth exists; 0: off
    aug_scale: float = 1.25  # random rescale by s ~ U(1/aug_scale, aug_scale); 1: off
    aug_jitter: float = 0.1  # brightness and contrast jitter (fraction); 0: off
    max_frames_per_scene: int = 0  # 0: use every training frame of a scene, else an even subset
    repro_loss_soft_clamp: float = 50.0  # dyntanh clamp at the start (px)
    repro_loss_soft_clamp_min: float = 1.0  # dyntanh clamp at the end (px)
    repro_loss_hard_clamp: float = 1000.0  # reprojection errors above this (px) count as invalid
    depth_min: float = 0.1  # predictions closer than this (m) count as invalid
    depth_max: float = 1000.0  # predictions farther than this (m) count as invalid
    depth_target: float = 10.0  # invalid predictions are pulled to this depth (m) along the pixel ray
    grad_clip: float = 10.0  # max gradient norm; 0: off
    seed: int = 42  # each rank uses seed + rank
    checkpoint_every: int = 250  # iterations between checkpoints; 0: only at the end
    log_every: int = 50  # iterations between loss log lines

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its valid range."""
        positive = ("iterations", "batch_images", "image_height", "learning_rate", "head_channels",
                    "aug_scale", "repro_loss_soft_clamp", "repro_loss_soft_clamp_min",
                    "repro_loss_hard_clamp", "depth_min", "depth_max", "depth_target")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"pretraining option {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "depth_weight", "aug_jitter", "max_frames_per_scene", "grad_clip",
                     "num_head_blocks", "checkpoint_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"pretraining option {name} must be >= 0, got {getattr(self, name)!r}")
        if self.aug_scale < 1:
            raise ValueError(f"aug_scale must be >= 1 (1 = off), got {self.aug_scale}")
        if self.image_height < 16:
            raise ValueError(f"image_height must be at least 16 px, got {self.image_height}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PretrainConfig":
        """Build from a dict (e.g. a checkpoint's), refusing unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown pretraining options {unknown}; valid: {sorted(known)}")
        return cls(**data)
