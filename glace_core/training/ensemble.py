"""Which heads a training run fits, on which frames, and the routing index of an ensemble map.

``plan_clusters`` turns ``--num_clusters / --cluster_idx / --cluster_overlap`` into a ClusterPlan:

- no ``num_clusters``: one head on every frame with a valid pose (the reference's default);
- ``num_clusters`` and ``cluster_idx``: one head on that cluster's frames (the reference's
  ensemble member; with ``cluster_overlap`` > 1 border frames of neighbouring clusters join it);
- ``num_clusters`` alone: one head per cluster, written as one ensemble map
  (``glace_core.head_ensemble``). A cluster needs data: the number of clusters is capped at one per
  ``MIN_FRAMES_PER_CLUSTER`` frames (a warning says so), and an ensemble of one head is a plain map.

``routing_descriptors`` computes the routing descriptor of each mapping frame from the unaugmented
image at the training resolution, the same input the localiser sees.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from glace_core.head_ensemble import cluster_membership, routing_descriptor

_logger = logging.getLogger(__name__)

#: An ensemble gets at most one cluster per this many mapping frames.
MIN_FRAMES_PER_CLUSTER = 10


@dataclass
class ClusterPlan:
    frames: list[int]  # dataset indices of the frames to encode (valid pose, selected cluster)
    members: list[list[int]]  # per head: the dataset indices it trains on (a subset of frames)
    ensemble: bool  # write the heads as one ensemble map (else a single head)
    requested_clusters: int | None = None  # --num_clusters as given

    def membership(self) -> np.ndarray:
        """(K, len(frames)) bool: frame ``frames[n]`` trains head k."""
        index = {f: n for n, f in enumerate(self.frames)}
        out = np.zeros((len(self.members), len(self.frames)), dtype=bool)
        for k, members in enumerate(self.members):
            out[k, [index[f] for f in members]] = True
        return out


def plan_clusters(poses: np.ndarray, valid: Sequence[int], num_clusters: int | None, cluster_idx: int | None,
                  overlap: float = 1.0) -> ClusterPlan:
    """The heads to train over the frames ``valid`` (dataset indices with a valid pose) of ``poses``
    (N, 4, 4) cam-to-world; see the module docstring. Raises ValueError for impossible requests."""
    valid = [int(i) for i in valid]
    if not valid:
        raise ValueError("no mapping frame with a valid pose")
    if num_clusters is None:
        return ClusterPlan(valid, [valid], False)
    centres = np.asarray(poses, dtype=np.float64)[valid, :3, 3]
    if cluster_idx is not None:
        if len(valid) < num_clusters:
            raise ValueError(f"num_clusters={num_clusters} exceeds the {len(valid)} frames with a valid pose")
        member = cluster_membership(centres, num_clusters, overlap)[cluster_idx]
        chosen = [f for f, m in zip(valid, member) if m]
        _logger.info("cluster %d of %d: %d frames", cluster_idx, num_clusters, len(chosen))
        return ClusterPlan(chosen, [chosen], False, num_clusters)
    k = min(num_clusters, max(1, len(valid) // MIN_FRAMES_PER_CLUSTER))
    if k < num_clusters:
        _logger.warning("num_clusters=%d: only %d mapping frames, so the ensemble gets %d head(s) (at most one "
                        "per %d frames)", num_clusters, len(valid), k, MIN_FRAMES_PER_CLUSTER)
    member = cluster_membership(centres, k, overlap)
    members = [[f for f, m in zip(valid, row) if m] for row in member]
    _logger.info("ensemble of %d heads over %d frames (overlap %.2f): %s frames per head", k, len(valid), overlap,
                 [len(m) for m in members])
    return ClusterPlan(valid, members, k > 1, num_clusters)


def routing_descriptors(dataset, frames: Sequence[int], encoder: nn.Module, image_resolution: int,
                        device: torch.device, known: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """(len(frames), D) float32 routing descriptors of ``frames`` (dataset indices), in that order.

    Frames in ``known`` (e.g. the training buffer's descriptor sink) are not encoded again."""
    from glace_core.preprocess import preprocess_image

    known = dict(known or {})
    rows = []
    use_amp = device.type == "cuda"
    for i in frames:
        if int(i) not in known:
            frame = dataset[int(i)]
            image, _ = preprocess_image(dataset.load_rgb(int(i)), frame.K, resolution=int(image_resolution))
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                known[int(i)] = routing_descriptor(encoder(image.to(device)))[0].cpu()
        rows.append(known[int(i)].float())
    return torch.stack(rows)
