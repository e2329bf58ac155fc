"""The training buffer: encoder features of sampled cells, each with what the loss needs.

Each pass encodes every mapping image once, in random order (batch 1; fp16 autocast only on
CUDA), after augmentation (``glace_core.training.augment``). Without augmentation every pass would
encode the same input again, so the features are kept (fp16, up to ``FEATURE_CACHE_BYTES``) and
later passes only draw new cells. The valid mask is sampled at the cell
centres (nearest neighbour onto the feature grid) and ``samples_per_image`` cells are drawn with
replacement, uniformly over the valid cells (multinomial). Passes repeat until the buffer holds
``training_buffer_size`` rows.

A row: local feature (C,) fp16; ``target_px`` (2,), the centre of cell (x, y)
(``glace_core.geometry.cell_centres``: (8x+4, 8y+4) for stride 8);
``world_to_cam`` (3, 4); ``K`` and ``K_inv`` (3, 3) of the augmented image; ``img_idx``, the index
of the frame in the dataset (to look up its global feature at batch time); ``target_depth``, the
z-depth (m) at the cell centre when ``use_depth`` (nearest neighbour, like the mask), 0 = unknown.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from glace_core.geometry import cell_centres
from glace_core.head_ensemble import routing_descriptor
from glace_core.training.augment import augment_image, novel_view

_logger = logging.getLogger(__name__)
#: Without augmentation, the fp16 features of up to this many bytes of frames are kept between passes.
FEATURE_CACHE_BYTES = 1 << 30


@dataclass
class TrainingBuffer:
    features: torch.Tensor  # (N, C) float16
    target_px: torch.Tensor  # (N, 2) float32
    world_to_cam: torch.Tensor  # (N, 3, 4) float32
    K: torch.Tensor  # (N, 3, 3) float32
    K_inv: torch.Tensor  # (N, 3, 3) float32
    img_idx: torch.Tensor  # (N,) int64
    target_depth: torch.Tensor  # (N,) float32 z-depth (m) at the cell centre, 0 = unknown

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def subset(self, index: torch.Tensor) -> "TrainingBuffer":
        """A new buffer holding the rows at ``index`` (M,) (copies)."""
        return TrainingBuffer(**self.rows(index))

    def rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows at ``index`` (B,) as a dict of (B, ...) tensors."""
        return {"features": self.features[index], "target_px": self.target_px[index],
                "world_to_cam": self.world_to_cam[index], "K": self.K[index], "K_inv": self.K_inv[index],
                "img_idx": self.img_idx[index], "target_depth": self.target_depth[index]}


def cell_mask(mask: np.ndarray, grid_hw: tuple[int, int], stride: int) -> np.ndarray:
    """Nearest-neighbour resize of a pixel mask (H, W) to the feature grid (h, w) bool/mask dtype:
    the mask at the pixel holding each cell centre (``geometry.cell_centres``, clamped to the image)."""
    centres = cell_centres(*grid_hw, stride)  # (h, w, 2) (u, v)
    rows = np.minimum(np.floor(centres[:, 0, 1]).astype(np.int64), mask.shape[0] - 1)
    cols = np.minimum(np.floor(centres[0, :, 0]).astype(np.int64), mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def cell_targets(grid_hw: tuple[int, int], stride: int) -> np.ndarray:
    """(h * w, 2) float32 pixel (u, v) of every cell centre (``geometry.cell_centres``), row-major."""
    return cell_centres(*grid_hw, stride).reshape(-1, 2).astype(np.float32)


def build_training_buffer(dataset, frame_indices: Sequence[int], encoder: nn.Module, *, buffer_size: int,
                          samples_per_image: int, image_resolution: int, use_aug: bool, aug_scale: float,
                          aug_rotation: float, device: torch.device, rng: np.random.Generator,
                          generator: torch.Generator, progress: bool = True,
                          descriptor_sink: dict[int, torch.Tensor] | None = None,
                          use_depth: bool = False, novel_view_ratio: float = 0.0, novel_view_offset: float = 0.3,
                          novel_view_yaw: float = 15.0) -> TrainingBuffer:
    """Fill a TrainingBuffer of ``buffer_size`` rows from the frames ``frame_indices`` of ``dataset``
    (anything with ``load_rgb(i)`` and ``[i]`` giving ``pose`` (4, 4) cam-to-world and ``K`` (3, 3)).

    use_depth: fill ``target_depth`` from ``dataset.load_depth_m(i)`` (H, W) metres; otherwise it is 0.

    novel_view_ratio: the probability that a frame's rows come from a novel view of it
    (``augment.novel_view``, up to ``novel_view_offset`` m and ``novel_view_yaw`` degrees away; needs
    the frame's depth) instead of the frame itself. 0 (the default) draws nothing from ``rng`` for it.

    descriptor_sink: without augmentation, receives ``{frame index: routing descriptor (D,)}`` of
    every frame encoded (``glace_core.head_ensemble.routing_descriptor``), so an ensemble's routing
    index needs no second encoder pass."""
    from tqdm import tqdm

    if not frame_indices:
        raise ValueError("the training buffer needs at least one mapping frame")
    stride = int(getattr(encoder, "stride", 8))
    channels = int(encoder.out_channels)
    use_amp = device.type == "cuda"
    buf = TrainingBuffer(
        features=torch.empty(buffer_size, channels, dtype=torch.float16, device=device),
        target_px=torch.empty(buffer_size, 2, dtype=torch.float32, device=device),
        world_to_cam=torch.empty(buffer_size, 3, 4, dtype=torch.float32, device=device),
        K=torch.empty(buffer_size, 3, 3, dtype=torch.float32, device=device),
        K_inv=torch.empty(buffer_size, 3, 3, dtype=torch.float32, device=device),
        img_idx=torch.empty(buffer_size, dtype=torch.int64, device=device),
        target_depth=torch.zeros(buffer_size, dtype=torch.float32, device=device))

    def encode(image: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            return encoder(image.to(device))

    filled, passes = 0, 0
    cache: dict[int, tuple] = {}  # without augmentation every pass sees the same features: encode once
    cached_bytes = 0
    bar = tqdm(total=buffer_size, disable=not progress, desc="training buffer", unit="row", unit_scale=True)
    try:
        while filled < buffer_size:
            passes += 1
            added_this_pass = 0
            for i in rng.permutation(np.asarray(frame_indices)):
                if filled >= buffer_size:
                    break
                if int(i) in cache:
                    aug, feats = cache[int(i)]
                else:
                    frame = dataset[int(i)]
                    depth = dataset.load_depth_m(int(i)) if use_depth or novel_view_ratio > 0 else None
                    aug = augment_image(dataset.load_rgb(int(i)), frame.K, frame.pose, image_resolution,
                                        use_aug=use_aug, aug_scale=aug_scale, aug_rotation=aug_rotation, rng=rng,
                                        depth=depth)
                    feats = encode(aug.image)  # (1, C, h, w)
                    if descriptor_sink is not None and not use_aug:
                        descriptor_sink[int(i)] = routing_descriptor(feats)[0].cpu()
                    if not use_aug and cached_bytes + feats.numel() * 2 <= FEATURE_CACHE_BYTES:
                        feats = feats.to(torch.float16)
                        cache[int(i)] = (aug, feats)
                        cached_bytes += feats.numel() * 2
                view, view_feats = aug, feats
                if novel_view_ratio > 0 and rng.random() < novel_view_ratio:
                    novel = novel_view(aug, rng, novel_view_offset, novel_view_yaw)
                    if novel is not None:
                        view, view_feats = novel, encode(novel.image)
                grid = tuple(view_feats.shape[-2:])
                valid = torch.from_numpy(cell_mask(view.mask, grid, stride).reshape(-1).astype(np.float32))
                if valid.sum() == 0:
                    continue
                n = min(samples_per_image, buffer_size - filled)
                cells = torch.multinomial(valid, n, replacement=True, generator=generator)
                rows = slice(filled, filled + n)
                buf.features[rows] = view_feats[0].reshape(channels, -1)[:, cells.to(device)].t().to(torch.float16)
                buf.target_px[rows] = torch.from_numpy(cell_targets(grid, stride))[cells].to(device)
                w2c = np.linalg.inv(view.cam_to_world)[:3]
                buf.world_to_cam[rows] = torch.from_numpy(w2c).float().to(device)
                buf.K[rows] = torch.from_numpy(view.K).float().to(device)
                buf.K_inv[rows] = torch.from_numpy(np.linalg.inv(view.K)).float().to(device)
                buf.img_idx[rows] = int(i)
                if use_depth and view.depth is not None:
                    cell_depth = torch.from_numpy(cell_mask(view.depth, grid, stride).reshape(-1).astype(np.float32))
                    buf.target_depth[rows] = cell_depth[cells].to(device)
                filled += n
                added_this_pass += n
                bar.update(n)
            if added_this_pass == 0:
                raise ValueError("no mapping frame has a valid cell to sample (every mask is empty)")
    finally:
        bar.close()
    _logger.info("training buffer: %d rows from %d frames in %d passes", filled, len(frame_indices), passes)
    return buf
