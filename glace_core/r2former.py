"""R2Former global image descriptor (GLACE_SPEC.md section e): distilled DeiT-S -> (N, 256) unit vectors.

The backbone is timm's distilled ViT (patch 16, dim 384, depth 12, 6 heads, mlp 4, qkv bias,
LayerNorm eps 1e-6, cls + dist tokens). Its two Linear 384 -> 256 heads (``head``, ``head_dist``)
are averaged and L2-normalised. Input: RGB in [0, 1] -> ImageNet normalisation -> bilinear resize
(antialias off) to a fixed resolution, (480, 640) as in GLACE's extract_features.py.

The official checkpoint ``CVPR23_DeitS_Rerank.pth`` is ``{'model_state_dict': {...}}``; its keys
starting with ``module.backbone.`` (prefix stripped) are the backbone's timm keys. Its pos_embed has
1202 tokens (2 + 30x40 for 480x640); other resolutions resample the 30x40 grid (bicubic).
Weights are never downloaded.
"""
from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.deit import VisionTransformerDistilled
from torch import nn

from glace_core.map_files import MapFileError, load_checkpoint, load_state_dict_strict

_logger = logging.getLogger(__name__)

DESCRIPTOR_DIM = 256
PATCH_SIZE = 16
DEFAULT_RESOLUTION = (480, 640)
#: Resolution the official checkpoint's pos_embed was trained for (30 x 40 patches + 2 tokens).
CHECKPOINT_RESOLUTION = (480, 640)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_PREFIX = "module.backbone."
_NUM_PREFIX_TOKENS = 2  # cls + dist


def _check_resolution(resolution: tuple[int, int], arg: str = "resolution") -> tuple[int, int]:
    if len(tuple(resolution)) != 2:
        raise ValueError(f"{arg} must be (height, width), got {resolution!r}")
    h, w = (int(v) for v in resolution)
    if h <= 0 or w <= 0 or h % PATCH_SIZE or w % PATCH_SIZE:
        raise ValueError(f"{arg} must be positive multiples of {PATCH_SIZE}, got {resolution!r}")
    return h, w


class R2FormerDescriptor(nn.Module):
    """RGB images ``(N, 3, H, W)`` in [0, 1] -> L2-normalised global descriptors ``(N, 256)`` float32.

    resolution: (height, width) the images are resized to (multiples of 16), default (480, 640).
    init_weights: random timm initialisation; False leaves the parameters uninitialised for loading.
    """

    def __init__(self, resolution: tuple[int, int] = DEFAULT_RESOLUTION, init_weights: bool = True):
        super().__init__()
        self.resolution = _check_resolution(resolution)
        self.backbone = VisionTransformerDistilled(
            img_size=self.resolution, patch_size=PATCH_SIZE, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4,
            qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=DESCRIPTOR_DIM,
            weight_init="" if init_weights else "skip")
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.resolution[0] // PATCH_SIZE, self.resolution[1] // PATCH_SIZE

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` RGB in [0, 1] -> ImageNet-normalised ``(N, 3, *resolution)`` on the model's device."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"R2Former expects RGB images (N, 3, H, W), got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"R2Former expects float images in [0, 1], got dtype {images.dtype}")
        x = images.to(device=self.image_mean.device, dtype=torch.float32)
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(f"R2Former expects images in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
        x = (x - self.image_mean) / self.image_std
        if tuple(x.shape[-2:]) != self.resolution:
            x = F.interpolate(x, size=self.resolution, mode="bilinear", align_corners=False, antialias=False)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Descriptors ``(N, 256)`` float32 with unit L2 norm for RGB ``images`` ``(N, 3, H, W)`` in [0, 1]."""
        out = self.backbone(self.preprocess(images))  # mean of head(cls) and head_dist(dist)
        return F.normalize(out.float(), p=2, dim=1)

    def load_backbone_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str = "state dict",
                                 checkpoint_resolution: tuple[int, int] | None = None) -> None:
        """Load timm-named backbone weights strictly, resampling pos_embed to this resolution if needed.

        checkpoint_resolution: the resolution the pos_embed grid belongs to; None means this model's
        resolution if the token count fits it, else CHECKPOINT_RESOLUTION (the official 480x640).
        """
        sd = dict(state_dict)
        pos = sd.get("pos_embed")
        expected_tokens = self.backbone.pos_embed.shape[1]
        if isinstance(pos, torch.Tensor) and pos.ndim == 3 and pos.shape[1] != expected_tokens:
            if checkpoint_resolution is None:
                checkpoint_resolution = CHECKPOINT_RESOLUTION
            ch, cw = _check_resolution(checkpoint_resolution, "checkpoint_resolution")
            old_grid = (ch // PATCH_SIZE, cw // PATCH_SIZE)
            if pos.shape[1] != old_grid[0] * old_grid[1] + _NUM_PREFIX_TOKENS:
                raise MapFileError(
                    f"{source}: pos_embed has {pos.shape[1]} tokens; neither this model's "
                    f"{expected_tokens} ({self.resolution}) nor {old_grid[0]}x{old_grid[1]}+2 "
                    f"(checkpoint resolution {checkpoint_resolution}); pass checkpoint_resolution")
            sd["pos_embed"] = resample_abs_pos_embed(pos.float(), new_size=list(self.grid_size),
                                                     old_size=list(old_grid), num_prefix_tokens=_NUM_PREFIX_TOKENS)
            _logger.info("resampled R2Former pos_embed from %s to %s patches", old_grid, self.grid_size)
        load_state_dict_strict(self.backbone, {k: v.float() for k, v in sd.items()}, source)


def load_r2former(checkpoint_path: str | os.PathLike, device: str | torch.device = "cpu",
                  resolution: tuple[int, int] = DEFAULT_RESOLUTION,
                  checkpoint_resolution: tuple[int, int] | None = None) -> R2FormerDescriptor:
    """Load ``CVPR23_DeitS_Rerank.pth`` (weights only) into an R2FormerDescriptor in eval mode on ``device``.

    Uses the ``model_state_dict`` entries starting with ``module.backbone.`` (prefix stripped),
    loaded with strict key/shape checks; other entries (e.g. the reranker) are ignored.
    """
    path = Path(checkpoint_path)
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model_state_dict"), Mapping):
        found = list(checkpoint)[:8] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise MapFileError(f"{path} is not an R2Former checkpoint: expected a dict with 'model_state_dict', "
                           f"found {found}")
    backbone = {k[len(CHECKPOINT_PREFIX):]: v for k, v in checkpoint["model_state_dict"].items()
                if isinstance(k, str) and k.startswith(CHECKPOINT_PREFIX)}
    if not backbone:
        raise MapFileError(f"{path}: 'model_state_dict' has no keys starting with {CHECKPOINT_PREFIX!r}")
    bad = [k for k, v in backbone.items() if not isinstance(v, torch.Tensor) or not v.is_floating_point()]
    if bad:
        raise MapFileError(f"{path}: backbone entries are not floating-point tensors: {bad[:5]}")
    model = R2FormerDescriptor(resolution, init_weights=False)
    model.load_backbone_state_dict(backbone, str(path), checkpoint_resolution)
    _logger.info("loaded R2Former backbone (%d tensors) from %s at %s", len(backbone), path, model.resolution)
    return model.eval().to(device)
