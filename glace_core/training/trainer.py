"""Map training: fit a scene-specific GLACE head on a frozen encoder (GLACE_SPEC.md section c).

``train_map(config, dataset, output_path)`` takes any object with the ``SceneSplit`` interface
(``len``, ``[i]`` -> frame with ``pose`` (4, 4) cam-to-world and ``K`` (3, 3), ``poses``,
``load_rgb(i)``, ``global_features(...)``, read through
``glace_core.dataset.load_global_features``), so a bag reader can feed frames without writing a
DSAC* folder. Only the head is trained: AdamW (weight decay 0.01) with OneCycleLR (peak
``learning_rate_max``, ``max_iterations`` steps, no momentum cycling); the schedule steps only when
the optimiser stepped (GradScaler may skip steps under fp16 autocast, which is used on CUDA only).
Each epoch visits a head's buffer rows in a fresh random order, in batches of ``batch_size`` rows (an
incomplete last batch is dropped). Global features are looked up by ``img_idx``, get Gaussian noise
(``feat_noise_std``) and are L2-renormalised.

Heads are trained together (``glace_core.training.stacked_heads``): the K heads of an ensemble
(K = 1 for a single map) are stacked into one module whose 1x1 convolutions run as batched matmuls,
and every step gives head k its own batch of ``batch_size`` rows drawn from its own cluster's buffer
rows (each head its own epochs and random order); beyond ``STACKED_ROWS`` rows per step the heads are
trained in groups, one group after the other. The loss is the sum of the heads' losses, so each
head gets exactly the gradient of its own loss, and one AdamW (fused where torch has it) over the
stacked parameters is K AdamWs with the same schedule. Each head keeps its own offset (the mean or
KMeans centres of its frames' cameras) and its own initial weights (drawn in head order after
seeding, as one head after the other would). The trained weights go back into GlaceHead modules,
and an ensemble (``--num_clusters`` without ``--cluster_idx``, glace_core/training/ensemble.py) is
written with the frames' routing descriptors as one ensemble map.

Precision: fp16 autocast with GradScaler on CUDA (``use_half``); on CPU ``precision`` (fp32, the
default | auto | bf16, ``glace_core.cpu_features.resolve_precision``): auto and bf16 run the heads
under bf16 autocast (output layer fp32, fp32 master weights) where the CPU has AVX512_BF16 or AMX,
else fp32. bf16 is faster there but less accurate (``TrainConfig.precision``).

Distributed: under ``torchrun`` (WORLD_SIZE > 1) the process group is initialised
(``glace_core.devices.distributed_context``: gloo on CPU, nccl on CUDA), the stacked heads are
wrapped in DistributedDataParallel, every rank builds its own buffer with ``seed + rank`` and only
rank 0 writes the map.

Interruption: SIGTERM and SIGINT raise ``TrainingInterrupted``; the map is only ever written at the
end, atomically (temporary file + rename), so an interrupted run leaves no file at the output path.
Signals that arrive while the map is being written are held until the write has finished.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from glace_core.cpu_features import resolve_precision
from glace_core.dataset import load_global_features
from glace_core.devices import distributed_context
from glace_core.encoder_registry import encoder_sidecar_entry, is_named_spec, resolve_encoder
from glace_core.head import GlaceHead
from glace_core.head_ensemble import HeadEnsemble
from glace_core.map_files import save_head
from glace_core.preprocess import network_focal
from glace_core.training.buffer import TrainingBuffer, build_training_buffer
from glace_core.training.config import REFERENCE_ENCODER_PATH, TrainConfig
from glace_core.training.ensemble import plan_clusters, routing_descriptors
from glace_core.training.loss import reprojection_terms
from glace_core.training.stacked_heads import StackedHeads

_logger = logging.getLogger(__name__)
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(BaseException):
    """Training was stopped by a signal (SIGTERM/SIGINT); ``signum`` says which."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"training interrupted by {signal.Signals(self.signum).name}")


@dataclass
class TrainResult:
    output_path: Path | None  # the written map (None on ranks other than 0)
    iterations: int
    frames: int  # mapping frames used
    buffer_rows: int
    buffer_seconds: float
    train_seconds: float
    final_loss: float
    final_median_px: float
    world_size: int
    heads: int = 1  # heads trained (> 1: an ensemble map)
    head_fits: list["HeadFit"] = field(default_factory=list)  # per head: first and last loss, last median


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise TrainingInterrupted (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise TrainingInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGTERM/SIGINT until the block ends (they are delivered afterwards)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(_SIGNALS))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def resolve_training_encoder(spec: str, device: torch.device) -> nn.Module:
    """The frozen encoder named by ``--encoder_path`` (a file or a named encoder, see encoder_registry)."""
    if spec == REFERENCE_ENCODER_PATH and not Path(spec).exists():
        raise FileNotFoundError(
            f"encoder file {spec} (the reference's default --encoder_path) not found; pass "
            "--encoder_path PATH_TO/ace_encoder_pretrained.pt, or --encoder_path default for the shipped "
            "default encoder (or use --preset cpu, which does)")
    if not is_named_spec(spec) and not Path(spec).is_file():
        raise FileNotFoundError(f"--encoder_path {spec}: file not found")
    encoder = resolve_encoder(spec, device)
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder.eval()


def select_frames(poses: np.ndarray, num_clusters: int | None = None, cluster_idx: int | None = None,
                  overlap: float = 1.0) -> list[int]:
    """Indices of the frames with a finite, rigid cam-to-world pose (N, 4, 4); with ``num_clusters``
    only those in cluster ``cluster_idx`` of KMeans(num_clusters, random_state=0) over their camera
    centres (cluster labels as KMeans numbers them; ``overlap`` > 1 adds border frames, see
    ``glace_core.head_ensemble.cluster_membership``)."""
    poses = np.asarray(poses, dtype=np.float64)
    ok = [i for i, p in enumerate(poses)
          if np.all(np.isfinite(p)) and abs(np.linalg.det(p[:3, :3]) - 1.0) < 1e-3]
    if len(ok) < len(poses):
        _logger.warning("skipping %d of %d mapping frames with an invalid pose", len(poses) - len(ok), len(poses))
    if num_clusters is None or not ok:
        return ok
    return plan_clusters(poses, ok, num_clusters, cluster_idx, overlap).frames


def decoder_centres(centres: np.ndarray, k: int) -> np.ndarray:
    """(K, 3) offsets of the head: the mean camera centre (K = 1) or KMeans(K, random_state=0) centres."""
    centres = np.asarray(centres, dtype=np.float32)
    if k == 1:
        return centres.mean(axis=0, keepdims=True)
    if len(centres) < k:
        raise ValueError(f"num_decoder_clusters={k} exceeds the {len(centres)} mapping frames")
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, random_state=0).fit(centres).cluster_centers_.astype(np.float32)


def _noisy_global(global_feats: torch.Tensor | None, img_idx: torch.Tensor, std: float,
                  generator: torch.Generator) -> torch.Tensor | None:
    if global_feats is None:
        return None
    g = global_feats[img_idx]
    if std > 0:
        g = g + std * torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
    return F.normalize(g, dim=1)


def build_optimizer(params, config: TrainConfig, device: torch.device | None = None):
    """AdamW (weight decay 0.01; fused on CPU and CUDA) and OneCycleLR (peak learning_rate_max over
    max_iterations, no momentum cycling; starts at peak/25, ends at peak/25/1e4). learning_rate_min
    is overwritten by the schedule, as in the reference."""
    fused = device is not None and device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate_min, weight_decay=0.01, fused=fused or None)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate_max,
                                                    total_steps=config.max_iterations, cycle_momentum=False)
    return optimizer, scheduler


class HeadBatches:
    """Buffer row indices of each step: per head, ``batch`` of its own rows, every epoch over them
    in a fresh random order (``generator``), an incomplete last batch dropped.

    head_rows: per head, the (n_k,) buffer indices it trains on (n_k >= batch)."""

    def __init__(self, head_rows: list[torch.Tensor], batch: int, generator: torch.Generator):
        for k, rows in enumerate(head_rows):
            if len(rows) < batch:
                raise ValueError(f"head {k} has {len(rows)} buffer rows, fewer than batch_size {batch}: use fewer "
                                 "clusters or a larger training_buffer_size")
        self.head_rows, self.batch, self.generator = head_rows, batch, generator
        self.orders = [self._shuffle(rows) for rows in head_rows]
        self.positions = [0] * len(head_rows)

    def _shuffle(self, rows: torch.Tensor) -> torch.Tensor:
        return rows[torch.randperm(len(rows), generator=self.generator, device=rows.device)]

    def next(self) -> torch.Tensor:
        """(K * batch,) buffer indices: row block k for head k."""
        parts = []
        for k, rows in enumerate(self.head_rows):
            if self.positions[k] + self.batch > len(rows):
                self.orders[k], self.positions[k] = self._shuffle(rows), 0
            parts.append(self.orders[k][self.positions[k]:self.positions[k] + self.batch])
            self.positions[k] += self.batch
        return torch.cat(parts)


@dataclass
class HeadFit:
    first_loss: float  # loss at the first iteration
    loss: float  # loss at the last iteration
    median_px: float  # median reprojection error (px) of the valid cells at the last iteration


def _head_stats(losses: torch.Tensor, errors: torch.Tensor, valid: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per head: loss and median valid error (px) from losses (K,), errors and valid (K, B)."""
    medians = [float(e[v].median()) if bool(v.any()) else float("nan") for e, v in zip(errors, valid)]
    return losses.tolist(), medians


def training_precision(config: TrainConfig, device: torch.device) -> str:
    """What the heads train in: "fp16" (CUDA with use_half), "bf16" (CPU with native bf16 and
    precision auto/bf16, see glace_core.cpu_features) or "fp32"."""
    if device.type == "cuda":
        return "fp16" if config.use_half else "fp32"
    precision, reason = resolve_precision(config.precision, device.type)
    if reason:
        _logger.warning("%s", reason)
    return precision


#: At most this many rows (heads x batch_size) per step of one stacked module: more heads are
#: trained in groups one after the other (bounds activation memory, e.g. the paper's batch on a GPU).
STACKED_ROWS = 1 << 18
#: Steps between loss checks (finite, progress bar): each reads the loss back from the device.
CHECK_EVERY = 25


def train_heads(stacked: StackedHeads, model: nn.Module, buffer: TrainingBuffer, head_rows: list[torch.Tensor],
                global_feats: torch.Tensor | None, config: TrainConfig, device: torch.device,
                generator: torch.Generator, *, precision: str = "fp32", show: bool = True, log: bool = True,
                desc: str = "training") -> list[HeadFit]:
    """Optimise the K heads of ``stacked`` (through ``model``, it or its DDP wrapper) together, head k
    on the buffer rows ``head_rows[k]`` (n_k,); see the module docstring.

    precision: "fp32", "fp16" (CUDA autocast + GradScaler) or "bf16" (CPU autocast, fc3 in fp32).
    show: a tqdm bar (titled ``desc``); log: a progress log line every 10 % of the iterations.
    Raises FloatingPointError when the loss stops being finite (checked every CHECK_EVERY steps).
    """
    from tqdm import tqdm

    use_amp, use_bf16 = precision == "fp16", precision == "bf16"
    supervise_depth = bool((buffer.target_depth > 0).any())
    optimizer, scheduler = build_optimizer(stacked.parameters(), config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    stacked.train()
    k, b, total = len(stacked), config.batch_size, config.max_iterations
    batches = HeadBatches(head_rows, b, generator)
    bar = tqdm(range(total), desc=desc, disable=not show)
    log_every = max(1, total // 10)
    first = None
    for it in bar:
        rows = buffer.rows(batches.next())
        features = rows["features"] if use_amp else rows["features"].float()
        g = _noisy_global(global_feats, rows["img_idx"], config.feat_noise_std, generator)
        with torch.autocast(device.type, dtype=torch.bfloat16 if use_bf16 else torch.float16,
                            enabled=use_amp or use_bf16):
            pred = model(features.view(k, b, -1), None if g is None else g.to(features.dtype).view(k, b, -1),
                         last_fp32=use_bf16)
        terms, errors, valid = reprojection_terms(
            pred.reshape(-1, 3).float(), rows["world_to_cam"], rows["K"], rows["K_inv"], rows["target_px"],
            loss_type=config.repro_loss_type, soft_clamp=config.repro_loss_soft_clamp,
            soft_clamp_min=config.repro_loss_soft_clamp_min, hard_clamp=config.repro_loss_hard_clamp,
            depth_min=config.depth_min, depth_max=config.depth_max, depth_target=config.depth_target,
            iteration=it, total=total, schedule=config.repro_loss_schedule,
            target_depth=rows["target_depth"] if supervise_depth else None, depth_weight=config.depth_loss_weight)
        head_losses = terms.view(k, b).sum(dim=1) / b  # each head's loss, as it would be alone
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(head_losses.sum()).backward()
        scale_before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if not use_amp or scaler.get_scale() >= scale_before:  # the optimiser stepped
            scheduler.step()
        if first is None:
            first = head_losses.detach().clone()
        last = it + 1 == total
        if (it + 1) % CHECK_EVERY and (it + 1) % log_every and not last:
            continue
        losses = head_losses.detach()
        if not bool(torch.isfinite(losses).all()):
            raise FloatingPointError(f"training loss became {losses.tolist()} by iteration {it}")
        loss_value = float(losses.mean())
        if show or (log and (it + 1) % log_every == 0) or last:
            per_head, medians = _head_stats(losses, errors.detach().view(k, b), valid.view(k, b))
            median_px = float(np.nanmedian(medians)) if not all(map(math.isnan, medians)) else float("nan")
            bar.set_postfix(loss=f"{loss_value:.3g}", px=f"{median_px:.1f}", refresh=False)
            if log and (it + 1) % log_every == 0:
                _logger.info("%s: iteration %d/%d loss %.4g median error %.2f px valid %.2f lr %.3g", desc, it + 1,
                             total, loss_value, median_px, float(valid.float().mean()), scheduler.get_last_lr()[0])
    bar.close()
    return [HeadFit(f, l, m) for f, l, m in zip(first.tolist(), per_head, medians)]


def mapping_focal(dataset, frames, resolution: int) -> float:
    """The median focal length (px, ``preprocess.network_focal``) of the mapping ``frames`` of
    ``dataset`` at the network ``resolution``: what the Localizer matches a query camera's to."""
    size = getattr(dataset, "image_size", None) or (lambda i: dataset.load_rgb(i).shape[:2])  # SceneSplit: header only
    focals = [network_focal(dataset[i].K, *size(i), resolution) for i in frames]
    return round(float(np.median(focals)), 3)


def train_map(config: TrainConfig, dataset, output_path: str | os.PathLike, *, progress: bool = True,
              metadata: dict[str, Any] | None = None) -> TrainResult:
    """Train a map on ``dataset`` (SceneSplit interface) and write it to ``output_path`` (rank 0).

    metadata: extra sidecar entries (e.g. where the frames came from). Raises ValueError for bad
    options or data, FileNotFoundError for a missing encoder, TrainingInterrupted on SIGTERM/SIGINT.
    """
    config.validate()
    output_path = Path(output_path)
    with interrupt_on_signals():
        rank, world, device, initialised = distributed_context(config.device)
        try:
            return _train(config, dataset, output_path, rank, world, device, progress, metadata or {})
        finally:
            if initialised and dist.is_initialized():
                dist.destroy_process_group()


def depth_supervision(config: TrainConfig, dataset) -> bool:
    """Whether this run supervises depth: ``use_depth`` "on" (ValueError when the mapping split has
    no depth/ folder), "auto" (when it has one) or "off"."""
    has_depth = bool(getattr(dataset, "has_depth", False))
    if config.use_depth == "on" and not has_depth:
        raise ValueError("--use_depth on, but the mapping split has no depth/ folder (16-bit PNG z-depth in mm, "
                         "one per image, registered to it); pass --use_depth off or auto")
    return config.use_depth == "on" or (config.use_depth == "auto" and has_depth)


def _write_keyframes(map_path: Path, dataset, frames: list[int], config: TrainConfig, device: torch.device) -> None:
    """The map's keyframes file (``glace_core.keyframes``), when its encoder has XFeat's keypoint head."""
    from glace_core.keyframes import write_map_keyframes

    t0 = time.perf_counter()
    try:  # atomic on its own; an interrupt leaves the map without keyframes
        path = write_map_keyframes(map_path, dataset, max_keypoints=config.keyframe_keypoints,
                                   use_depth=config.use_depth != "off", frames=frames, device=device)
    except ValueError as exc:  # e.g. an ACE encoder: no keypoint head; the map itself is written
        _logger.warning("no keyframes for %s: %s", map_path, exc)
        return
    _logger.info("wrote %s in %.1f s", path, time.perf_counter() - t0)


def _train(config: TrainConfig, dataset, output_path: Path, rank: int, world: int, device: torch.device,
           progress: bool, metadata: dict[str, Any]) -> TrainResult:
    seed = config.seed + rank
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cpu_generator = torch.Generator().manual_seed(seed)
    device_generator = torch.Generator(device=device).manual_seed(seed)
    if len(dataset) == 0:
        raise ValueError("the mapping dataset has no frames")
    poses = np.asarray(dataset.poses, dtype=np.float64)
    valid = select_frames(poses)
    if not valid:
        raise ValueError("no mapping frame with a valid pose")
    plan = plan_clusters(poses, valid, config.num_clusters,
                         None if config.num_clusters is None else config.cluster_idx, config.cluster_overlap)
    if not plan.frames:
        raise ValueError("no mapping frame with a valid pose (cluster selection included)")

    global_np = None
    if config.global_feat:
        global_np = load_global_features(dataset, config.feat_name)
        if global_np is None:
            raise ValueError(f"--global_feat is True but the mapping split has no {config.feat_name}; run "
                             "glace-extract-features on the scene first, or pass --global_feat False")
    use_depth = depth_supervision(config, dataset)
    novel_view_ratio = config.novel_view_ratio if getattr(dataset, "has_depth", False) else 0.0
    if rank == 0 and config.novel_view_ratio > 0:
        _logger.info("novel views %s (--novel_view_ratio %g; they are rendered from the mapping split's depth/, "
                     "which it %s)", "on" if novel_view_ratio else "off", config.novel_view_ratio,
                     "has" if novel_view_ratio else "does not have")
    if rank == 0:
        split_has = "has depth/" if getattr(dataset, "has_depth", False) else "has no depth/"
        _logger.info("depth supervision %s (--use_depth %s; the mapping split %s)", "on" if use_depth else "off",
                     config.use_depth, split_has)
    encoder = resolve_training_encoder(config.encoder_path, device)
    encoder_entry = encoder_sidecar_entry(encoder)
    show = progress and rank == 0

    t0 = time.perf_counter()
    descriptor_sink: dict[int, torch.Tensor] | None = {} if plan.ensemble else None
    buffer = build_training_buffer(
        dataset, plan.frames, encoder, buffer_size=config.training_buffer_size,
        samples_per_image=config.samples_per_image, image_resolution=config.image_resolution,
        use_aug=config.use_aug, aug_scale=config.aug_scale, aug_rotation=config.aug_rotation, device=device,
        rng=rng, generator=cpu_generator, progress=show, descriptor_sink=descriptor_sink, use_depth=use_depth,
        novel_view_ratio=novel_view_ratio, novel_view_offset=config.novel_view_offset,
        novel_view_yaw=config.novel_view_yaw)
    descriptors = None
    if plan.ensemble:
        descriptors = routing_descriptors(dataset, plan.frames, encoder, config.image_resolution, device,
                                          descriptor_sink)
    buffer_seconds = time.perf_counter() - t0
    local_channels = int(encoder.out_channels)
    del encoder
    global_feats = None if global_np is None else torch.from_numpy(global_np).to(device)

    heads: list[GlaceHead] = []
    head_rows: list[torch.Tensor] = []
    for k, members in enumerate(plan.members):  # initial weights drawn in head order, as before
        head = GlaceHead(local_channels=local_channels,
                         global_channels=0 if global_np is None else global_np.shape[1],
                         head_channels=config.head_channels, mlp_ratio=config.mlp_ratio,
                         num_head_blocks=config.num_head_blocks, use_homogeneous=config.use_homogeneous,
                         num_decoder_clusters=config.num_decoder_clusters)
        head.set_centers(decoder_centres(poses[members, :3, 3], config.num_decoder_clusters))
        heads.append(head.to(device))
        chosen = torch.zeros(len(dataset), dtype=torch.bool, device=device)
        chosen[torch.as_tensor(members, device=device)] = True
        head_rows.append(torch.nonzero(chosen[buffer.img_idx]).flatten())
        if len(plan.members) > 1:
            _logger.info("head %d/%d: %d frames, %d buffer rows", k + 1, len(plan.members), len(members),
                         len(head_rows[-1]))
    precision = training_precision(config, device)
    group = max(1, STACKED_ROWS // config.batch_size)  # heads per stacked module
    fits: list[HeadFit] = []
    t1 = time.perf_counter()
    for start in range(0, len(heads), group):
        stacked = StackedHeads(heads[start:start + group])
        model: nn.Module = stacked
        if world > 1:
            model = nn.parallel.DistributedDataParallel(
                stacked, device_ids=[device.index] if device.type == "cuda" else None)
        desc = ("training" if len(heads) == 1 else f"training {len(heads)} heads" if len(stacked) == len(heads)
                else f"training heads {start + 1}-{start + len(stacked)}/{len(heads)}")
        fits += train_heads(stacked, model, buffer, head_rows[start:start + group], global_feats, config, device,
                            device_generator, precision=precision, show=show, log=rank == 0, desc=desc)
        stacked.write_back()
    train_seconds = time.perf_counter() - t1
    iterations = config.max_iterations * len(heads)
    loss = float(np.mean([f.loss for f in fits]))
    median_px = float(np.median([f.median_px for f in fits]))
    _logger.info("rank %d: buffer %.1f s, training %.1f s (%s, %.4f s per step of %d heads), last loss %.4g, "
                 "median %.2f px", rank, buffer_seconds, train_seconds, precision,
                 train_seconds / config.max_iterations, len(heads), loss, median_px)

    written = None
    if rank == 0:
        info = {"made_by": "glace-train", "config": config.to_dict(), "frames": len(plan.frames),
                "buffer_rows": len(buffer), "world_size": world, "buffer_seconds": round(buffer_seconds, 2),
                "train_seconds": round(train_seconds, 2), "precision": precision, "depth_supervision": use_depth,
                "final_loss": loss, "final_median_px": median_px,
                "network_focal_px": mapping_focal(dataset, plan.frames, config.image_resolution),
                "mapping_poses": np.round(poses[plan.frames, :3, :4].reshape(len(plan.frames), 12), 5).tolist()}
        sidecar = {**metadata, "encoder": encoder_entry, "training": info}
        result: nn.Module = heads[0]
        if plan.ensemble:
            result = HeadEnsemble(heads, descriptors, torch.from_numpy(plan.membership()))
            sidecar["ensemble"] = {
                "requested_clusters": plan.requested_clusters, "cluster_overlap": config.cluster_overlap,
                "frames_per_head": [len(m) for m in plan.members],
                "final_median_px_per_head": [round(f.median_px, 3) for f in fits],
                "routing": "clusters ranked by the cosine similarity of 2x2 average-pooled encoder features to their mapping frames"}
        for head in heads:
            head.eval()
        with signals_held():
            save_head(result, output_path, sidecar)
        written = output_path
        if config.keyframe_keypoints > 0:
            _write_keyframes(output_path, dataset, plan.frames, config, device)
    if world > 1:
        dist.barrier()
    return TrainResult(written, iterations, len(plan.frames), len(buffer), buffer_seconds, train_seconds,
                       loss, median_px, world, len(heads), fits)
