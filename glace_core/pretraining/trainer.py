"""ACE-style encoder pretraining: one shared encoder, one small head per scene, trained jointly.

Each step picks one scene (at random), draws ``batch_images`` augmented images of it, encodes them
with the shared ACE-layout encoder, regresses scene coordinates with that scene's head (a GlaceHead
without global input, its offset set to the scene's mean camera centre) and minimises
``glace_core.pretraining.loss.pretrain_loss`` (reprojection + optional depth term). Encoder and
heads are optimised together with AdamW and a OneCycle schedule.

Distributed: under ``torchrun`` (WORLD_SIZE > 1) every rank loads all scenes, seeds with
``seed + rank`` and the model is wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA;
``find_unused_parameters`` because each step uses one head). Only rank 0 writes files.

Files: the checkpoint (``<output>.ckpt`` unless given) is written atomically every
``checkpoint_every`` iterations and at the end, and ``--resume`` continues from it (a single-process
run continues exactly: the sampling generator's state is in the checkpoint; under DDP each rank
reseeds from the iteration). The result is an
encoder file in the official ACE layout (exactly the 22 fp32 tensors of GLACE_SPEC.md section a, in
that order) plus a sidecar ``<output>.json`` describing how it was made.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn

from glace_core.devices import distributed_context
from glace_core.encoder import ACE_ENCODER_LAYOUT, ACEEncoder
from glace_core.head import GlaceHead
from glace_core.io_utils import atomic_torch_save, atomic_write_text
from glace_core.map_files import file_sha256, load_checkpoint
from glace_core.pretraining.config import PretrainConfig
from glace_core.pretraining.data import PretrainScene, load_scene, sample_batch
from glace_core.pretraining.loss import dyntanh_clamp, pretrain_loss

_logger = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "glace-ros-pretrain-checkpoint"


class PretrainModel(nn.Module):
    """Shared encoder + one head per scene: ``forward(image (B,1,H,W), scene_index) -> (B,3,h,w)``."""

    def __init__(self, num_scenes: int, head_channels: int, num_head_blocks: int,
                 encoder: ACEEncoder | None = None):
        super().__init__()
        self.encoder = encoder if encoder is not None else ACEEncoder()
        self.heads = nn.ModuleList(
            GlaceHead(local_channels=self.encoder.out_channels, global_channels=0, head_channels=head_channels,
                      num_head_blocks=num_head_blocks, use_homogeneous=True)
            for _ in range(num_scenes))

    def forward(self, image: torch.Tensor, scene_index: int) -> torch.Tensor:
        return self.heads[scene_index](self.encoder(image), None)


def ace_encoder_state_dict(encoder: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """The official ACE encoder file content: the 22 tensors of ACE_ENCODER_LAYOUT, fp32, CPU, in order."""
    sd = encoder.state_dict()
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in ACE_ENCODER_LAYOUT:
        if key not in sd or tuple(sd[key].shape) != shape:
            got = tuple(sd[key].shape) if key in sd else "missing"
            raise ValueError(f"encoder is not in the ACE layout: {key} expected {shape}, got {got}")
        out[key] = sd[key].detach().to("cpu", torch.float32).clone()
    return out


def save_ace_encoder(encoder: nn.Module, path: str | os.PathLike, info: dict[str, Any] | None = None) -> Path:
    """Write ``encoder`` as an official-layout ACE encoder file (atomic) and ``<path>.json`` with ``info``."""
    path = Path(path)
    atomic_torch_save(ace_encoder_state_dict(encoder), path)
    sha = file_sha256(path)
    meta = {"format": "ace-encoder", "sha256": sha, "encoder_id": f"ace:{sha[:16]}", **(info or {})}
    atomic_write_text(Path(str(path) + ".json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    _logger.info("wrote encoder %s (sha256 %s)", path, sha[:16])
    return path


def _checkpoint(model: PretrainModel, optimizer, scheduler, scaler, generator: torch.Generator, iteration: int,
                config: PretrainConfig, scene_dirs: Sequence[str], scene_names: Sequence[str], path: Path) -> None:
    atomic_torch_save({"generator": generator.get_state(),
        "format": CHECKPOINT_FORMAT, "iteration": iteration, "config": config.to_dict(),
        "scene_dirs": list(scene_dirs), "scene_names": list(scene_names),
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict()}, path)
    _logger.info("checkpoint %s at iteration %d", path, iteration)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a pretraining checkpoint (weights-only) and check its format."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a glace-ros pretraining checkpoint (format {CHECKPOINT_FORMAT!r})")
    return ckpt


def pretrain_encoder(scene_dirs: Sequence[str | os.PathLike], output: str | os.PathLike,
                     config: PretrainConfig | None = None, *, resume: str | os.PathLike | None = None,
                     checkpoint_path: str | os.PathLike | None = None, device: str = "cpu",
                     progress: bool = True) -> Path:
    """Pretrain an ACE-layout encoder over ``scene_dirs`` (DSAC*-layout scenes; their ``train`` split).

    resume: a checkpoint to continue from; its config and scene list are used (``scene_dirs`` may be
    empty; if given, the scene names must match). Returns the path of the written encoder file
    (rank 0; other ranks return it too once rank 0 has finished).
    """
    from tqdm import tqdm

    output = Path(output)
    ckpt_path = Path(checkpoint_path) if checkpoint_path else Path(str(output) + ".ckpt")
    state = read_checkpoint(resume) if resume else None
    if state is not None:
        ckpt_config = PretrainConfig.from_dict(state["config"])
        if config is not None and config.to_dict() != ckpt_config.to_dict():
            diff = {k: v for k, v in config.to_dict().items() if ckpt_config.to_dict()[k] != v}
            _logger.info("resuming with the checkpoint's options; ignoring the differing %s", diff)
        config = ckpt_config
        if scene_dirs and [Path(s).name for s in scene_dirs] != list(state["scene_names"]):
            raise ValueError(f"--resume {resume}: the checkpoint was made with scenes {state['scene_names']}, "
                             f"not {[Path(s).name for s in scene_dirs]}")
        scene_dirs = scene_dirs or state["scene_dirs"]
    config = config or PretrainConfig()
    config.validate()
    if not scene_dirs:
        raise ValueError("pretraining needs at least one scene folder")
    rank, world, dev, _ = distributed_context(device)
    torch.manual_seed(config.seed + rank)
    generator = torch.Generator().manual_seed(config.seed + rank)

    scenes: list[PretrainScene] = [load_scene(s, config.image_height, config.max_frames_per_scene)
                                   for s in scene_dirs]
    model = PretrainModel(len(scenes), config.head_channels, config.num_head_blocks)
    for head, scene in zip(model.heads, scenes):
        head.set_mean(scene.mean_camera_centre)
    model.to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate,
                                                    total_steps=config.iterations, cycle_momentum=False)
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start = int(state["iteration"])
        if world == 1:
            generator.set_state(state["generator"])  # exact continuation of a single-process run
        else:
            generator.manual_seed(config.seed + rank + 1_000_003 * start)
        _logger.info("resumed from %s at iteration %d", resume, start)
    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True)
    model.train()
    names = [s.name for s in scenes]
    dirs = [str(Path(s)) for s in scene_dirs]
    bar = tqdm(range(start, config.iterations), initial=start, total=config.iterations,
               disable=not progress or rank != 0, desc="pretrain encoder")
    t0, stats = time.time(), {}
    for it in bar:
        scene_index = int(torch.randint(len(scenes), (), generator=generator))
        batch = sample_batch(scenes[scene_index], config.batch_images, generator, config.aug_scale, config.aug_jitter)
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
        clamp = dyntanh_clamp(it, config.iterations, config.repro_loss_soft_clamp, config.repro_loss_soft_clamp_min)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
            pred = train_model(batch["image"], scene_index)
        loss, stats = pretrain_loss(pred.float(), batch["world_to_cam"], batch["K"], batch["pixels"], batch["depth"],
                                    clamp, config.repro_loss_hard_clamp, config.depth_min, config.depth_max,
                                    config.depth_target, config.depth_weight)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scale_before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if not use_amp or scaler.get_scale() >= scale_before:  # step the schedule only if the optimiser stepped
            scheduler.step()
        if rank == 0:
            bar.set_postfix(loss=f"{loss.item():.3g}", px=f"{stats['median_px']:.1f}")
            if config.log_every and (it + 1) % config.log_every == 0:
                _logger.info("it %d/%d scene %s loss %.4g valid %.2f median px %.2f depth err %s m (%.1f s)",
                             it + 1, config.iterations, names[scene_index], loss.item(), stats["valid_fraction"],
                             stats["median_px"], f"{stats.get('median_depth_err_m', float('nan')):.3f}",
                             time.time() - t0)
            if config.checkpoint_every and (it + 1) % config.checkpoint_every == 0 and it + 1 < config.iterations:
                _checkpoint(model, optimizer, scheduler, scaler, generator, it + 1, config, dirs, names, ckpt_path)
    if rank == 0:
        _checkpoint(model, optimizer, scheduler, scaler, generator, config.iterations, config, dirs, names, ckpt_path)
        save_ace_encoder(model.encoder, output, {
            "made_by": "glace-pretrain-encoder", "iterations": config.iterations, "world_size": world,
            "config": config.to_dict(), "scenes": names, "last_batch": stats,
            "seconds": round(time.time() - t0, 1)})
    if world > 1:
        dist.barrier()
    return output
