"""Ensemble maps: one GLACE head per spatial cluster of the mapping frames, and an image router.

ACE's answer to large or repetitive scenes is an ensemble ("ACE Poker"): the mapping frames are
split into clusters of camera positions, one head is trained per cluster, and every head tries the
query image; the pose with the most RANSAC inliers wins. glace-ros keeps that and adds a router,
so a frame does not pay for every head: each mapping frame keeps a small *routing descriptor* of its
encoder features, and a query runs only the heads of the clusters its nearest mapping frames belong
to (``route``), by default the best two.

Why it matters here (BENCHMARKS.md "Encoders"): with a frozen local encoder, one head over a whole
room has to give the same feature one 3D point even when that texture repeats elsewhere; whole
stretches of a trajectory are then never learned. Heads that each see one part of the scene do not
have to choose, so the same training budget split over clusters localises those stretches.

Routing descriptor (``routing_descriptor``): the encoder features ``(1, C, h, w)`` average-pooled
over a 2x2 grid of the image, flattened (4C) and L2-normalised. It costs nothing beyond the encoder
pass and needs no extra network or checkpoint.

The file layout of an ensemble map (K heads in the official layout plus the routing index) lives
with the other file layouts in ``glace_core.map_files`` (``ensemble_state_dict``); this module is
the model only and does not read or write files.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glace_core.head import GlaceHead

#: Grid the routing descriptor pools the local features over (2 x 2 cells).
ROUTING_GRID = 2


def routing_descriptor(features: torch.Tensor) -> torch.Tensor:
    """Routing descriptors of encoder features ``(N, C, h, w)`` -> ``(N, 4C)`` float32, L2-normalised rows.

    Average pooling over a 2x2 grid of the feature map (rows top to bottom, channels inner)."""
    if features.ndim != 4:
        raise ValueError(f"routing_descriptor expects features (N, C, h, w), got shape {tuple(features.shape)}")
    pooled = F.adaptive_avg_pool2d(features.float(), ROUTING_GRID)  # (N, C, 2, 2)
    return F.normalize(pooled.permute(0, 2, 3, 1).reshape(features.shape[0], -1), dim=1)


def cluster_membership(centres: np.ndarray, num_clusters: int, overlap: float = 1.0) -> np.ndarray:
    """Spatial clusters of camera centres ``(N, 3)`` -> membership ``(K, N)`` bool.

    KMeans(K, random_state=0) over the centres, as the reference's ``--num_clusters``. A frame
    belongs to every cluster whose centre is within ``overlap`` times the distance to its nearest
    centre: ``overlap`` 1 gives the reference's disjoint clusters, 1.3 also gives frames near a
    border to the neighbouring cluster. Every cluster keeps at least its own frames."""
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 3:
        raise ValueError(f"camera centres must be (N, 3), got shape {centres.shape}")
    if not 1 <= num_clusters <= len(centres):
        raise ValueError(f"num_clusters must be in [1, {len(centres)}] (the number of frames), got {num_clusters}")
    if not overlap >= 1.0:
        raise ValueError(f"cluster overlap must be >= 1 (1: disjoint clusters), got {overlap}")
    if num_clusters == 1:
        return np.ones((1, len(centres)), dtype=bool)
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=num_clusters, random_state=0, n_init=10).fit(centres)
    dist = np.linalg.norm(centres[None] - km.cluster_centers_[:, None], axis=2)  # (K, N)
    member = dist <= overlap * dist.min(axis=0, keepdims=True) * (1 + 1e-9)
    member[km.labels_, np.arange(len(centres))] = True
    return member


class HeadEnsemble(nn.Module):
    """K heads of one architecture plus the routing index of the mapping frames.

    ``heads[k]`` maps features to scene coordinates like a GlaceHead; ``route(features)`` ranks the
    clusters for an image. ``descriptors`` (N, D) and ``membership`` (K, N) are buffers. The
    attributes GlaceHead users read (local/global channels, config, metadata, source_path) are
    those of the member heads.
    """

    def __init__(self, heads: Sequence[GlaceHead], descriptors: torch.Tensor, membership: torch.Tensor):
        super().__init__()
        if len(heads) < 1:
            raise ValueError("an ensemble needs at least one head")
        configs = {h.config for h in heads}
        if len(configs) != 1:
            raise ValueError(f"the heads of an ensemble must share one architecture, got {sorted(map(str, configs))}")
        descriptors = torch.as_tensor(descriptors, dtype=torch.float32)
        membership = torch.as_tensor(membership).float()
        if descriptors.ndim != 2:
            raise ValueError(f"routing descriptors must be (N, D), got shape {tuple(descriptors.shape)}")
        if tuple(membership.shape) != (len(heads), descriptors.shape[0]):
            raise ValueError(f"routing membership must be (K={len(heads)}, N={descriptors.shape[0]}), "
                             f"got shape {tuple(membership.shape)}")
        if bool((membership.sum(dim=1) == 0).any()):
            raise ValueError("every cluster of an ensemble needs at least one mapping frame")
        self.heads = nn.ModuleList(heads)
        self.register_buffer("descriptors", descriptors)
        self.register_buffer("membership", (membership > 0.5).float())
        self.metadata: dict[str, Any] | None = None
        self.source_path: str | None = None

    def __len__(self) -> int:
        return len(self.heads)

    @property
    def config(self):
        return self.heads[0].config

    @property
    def local_channels(self) -> int:
        return self.heads[0].local_channels

    @property
    def global_channels(self) -> int:
        return self.heads[0].global_channels

    def route(self, features: torch.Tensor, candidates: int | None = None) -> list[int]:
        """Cluster indices for one image, best first: clusters ranked by the cosine similarity of
        their most similar mapping frame to the image's routing descriptor.

        features: encoder output ``(1, C, h, w)``; candidates: how many to return (None: all K)."""
        if features.ndim != 4 or features.shape[0] != 1:
            raise ValueError(f"route expects the features of one image (1, C, h, w), got {tuple(features.shape)}")
        query = routing_descriptor(features)[0].to(self.descriptors.device)
        if query.shape[0] != self.descriptors.shape[1]:
            raise ValueError(f"routing descriptor width {query.shape[0]} does not match the map's "
                             f"{self.descriptors.shape[1]} (another encoder?)")
        sim = self.descriptors @ query  # (N,)
        scores = torch.where(self.membership > 0, sim[None], torch.full_like(self.membership, -2.0)).amax(dim=1)
        order = torch.argsort(scores, descending=True).tolist()
        return order if candidates is None else order[:max(1, int(candidates))]

    def forward(self, features: torch.Tensor, global_features: torch.Tensor | None = None,
                cluster: int = 0) -> torch.Tensor:
        """Scene coordinates ``(N, 3, h, w)`` of head ``cluster`` (see GlaceHead.forward)."""
        return self.heads[int(cluster)](features, global_features)
