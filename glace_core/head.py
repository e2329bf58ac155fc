"""The scene-specific GLACE head (GLACE_SPEC.md section b) and its architecture description.

The head is an MLP of 1x1 convolutions over ``[global (G) | local (C)]`` features. Its input width
``in_channels = G + C`` is what a weights file stores; how it splits into global and local is
decided by ``split_input_channels`` (the map's sidecar metadata wins when it records it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Width of the R2Former global descriptor GLACE conditions on.
GLOBAL_FEATURE_DIM = 256
#: Output widths of the known encoders (ACE 512, XFeat 64). An in_channels equal to one of these
#: is read as a head without global input; any other width above 256 as 256 global + the rest.
KNOWN_LOCAL_WIDTHS = (512, 64)

HOMOGENEOUS_MIN_SCALE = 0.01
HOMOGENEOUS_MAX_SCALE = 4.0


def block_width(head_channels: int, mlp_ratio: float) -> int:
    """``int(head_channels * mlp_ratio)`` as the reference computes it, robust to float round-off."""
    value = head_channels * float(mlp_ratio)
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < 1e-6 else int(value)


def split_input_channels(in_channels: int, global_channels: int | None = None) -> tuple[int, int]:
    """Split a head's input width into ``(global_channels, local_channels)``.

    With ``global_channels`` given (e.g. from sidecar metadata) it is validated and used. Otherwise:
    an ``in_channels`` in KNOWN_LOCAL_WIDTHS has no global part (768 -> 256+512, 512 -> 0+512,
    320 -> 256+64, 64 -> 0+64); a width above 256 is 256 global + the rest; anything else is local only.
    """
    in_channels = int(in_channels)
    if in_channels <= 0:
        raise ValueError(f"head in_channels must be positive, got {in_channels}")
    if global_channels is None:
        if in_channels in KNOWN_LOCAL_WIDTHS or in_channels <= GLOBAL_FEATURE_DIM:
            global_channels = 0
        else:
            global_channels = GLOBAL_FEATURE_DIM
    global_channels = int(global_channels)
    if not 0 <= global_channels < in_channels:
        raise ValueError(
            f"global_channels must be in [0, in_channels={in_channels}), got {global_channels}")
    return global_channels, in_channels - global_channels


@dataclass(frozen=True)
class HeadConfig:
    """Architecture of a GlaceHead; ``GlaceHead(**config.kwargs())`` builds it."""

    local_channels: int = 512  # encoder output width
    global_channels: int = GLOBAL_FEATURE_DIM  # 0: no global input (ACE-style head)
    head_channels: int = 768  # h (ACE hard-coded 512)
    mlp_ratio: float = 1.0  # block width b = int(h * mlp_ratio)
    num_head_blocks: int = 1  # extra residual blocks after res3
    use_homogeneous: bool = True  # fc3 has 4 outputs and the output is dehomogenised
    num_decoder_clusters: int = 1  # K > 1: position decoder over K centres

    @property
    def in_channels(self) -> int:
        return self.global_channels + self.local_channels

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict, including the derived in_channels."""
        return {**asdict(self), "in_channels": self.in_channels}


class GlaceHead(nn.Module):
    """GLACE head: features ``(N, C, h, w)`` + global ``(N, G)`` -> scene coordinates ``(N, 3, h, w)``.

    State-dict keys, in order (this is the official file layout): buffers max_scale, min_scale,
    max_inv_scale, h_beta, min_inv_scale (homogeneous heads only), then ``mean`` (1,3,1,1) or
    ``centers`` (1,K,3,1,1); then [head_skip], res3_conv1..3, {i}c0..{i}c2, fc1, fc2, [fcc], fc3.
    """

    def __init__(self, local_channels: int = 512, global_channels: int = GLOBAL_FEATURE_DIM,
                 head_channels: int = 768, mlp_ratio: float = 1.0, num_head_blocks: int = 1,
                 use_homogeneous: bool = True, num_decoder_clusters: int = 1):
        super().__init__()
        for arg, value, low in (("local_channels", local_channels, 1), ("global_channels", global_channels, 0),
                                ("head_channels", head_channels, 1), ("num_head_blocks", num_head_blocks, 0),
                                ("num_decoder_clusters", num_decoder_clusters, 1)):
            if int(value) != value or value < low:
                raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio!r}")
        self.local_channels = int(local_channels)
        self.global_channels = int(global_channels)
        self.in_channels = self.global_channels + self.local_channels
        self.head_channels = int(head_channels)
        self.mlp_ratio = float(mlp_ratio)
        self.num_head_blocks = int(num_head_blocks)
        self.use_homogeneous = bool(use_homogeneous)
        self.num_decoder_clusters = int(num_decoder_clusters)
        self.block_channels = block_width(self.head_channels, self.mlp_ratio)
        self.metadata: dict[str, Any] | None = None  # sidecar of the map it was loaded from (load_head)
        self.source_path: str | None = None  # map file it was loaded from (load_head)
        if self.block_channels < 1:
            raise ValueError(f"head_channels * mlp_ratio must be >= 1, got {self.head_channels} * {mlp_ratio}")
        cin, h, b, k = self.in_channels, self.head_channels, self.block_channels, self.num_decoder_clusters

        # Buffers come first in the state dict (own buffers precede child modules).
        if self.use_homogeneous:
            max_scale = torch.tensor([HOMOGENEOUS_MAX_SCALE])
            min_scale = torch.tensor([HOMOGENEOUS_MIN_SCALE])
            self.register_buffer("max_scale", max_scale)
            self.register_buffer("min_scale", min_scale)
            self.register_buffer("max_inv_scale", 1.0 / max_scale)
            self.register_buffer("h_beta", math.log(2.0) / (1.0 - 1.0 / max_scale))
            self.register_buffer("min_inv_scale", 1.0 / min_scale)
        if k > 1:
            self.register_buffer("centers", torch.zeros(1, k, 3, 1, 1))
        else:
            self.register_buffer("mean", torch.zeros(1, 3, 1, 1))

        self.head_skip = nn.Identity() if cin == h else nn.Conv2d(cin, h, 1, 1, 0)
        self.res3_conv1 = nn.Conv2d(cin, h, 1, 1, 0)
        self.res3_conv2 = nn.Conv2d(h, b, 1, 1, 0)
        self.res3_conv3 = nn.Conv2d(b, h, 1, 1, 0)
        for i in range(self.num_head_blocks):
            self.add_module(f"{i}c0", nn.Conv2d(h, h, 1, 1, 0))
            self.add_module(f"{i}c1", nn.Conv2d(h, b, 1, 1, 0))
            self.add_module(f"{i}c2", nn.Conv2d(b, h, 1, 1, 0))
        self.fc1 = nn.Conv2d(h, h, 1, 1, 0)
        self.fc2 = nn.Conv2d(h, b, 1, 1, 0)
        if k > 1:
            self.fcc = nn.Conv2d(b, k, 1, 1, 0)
        self.fc3 = nn.Conv2d(b, 4 if self.use_homogeneous else 3, 1, 1, 0)

    @property
    def config(self) -> HeadConfig:
        return HeadConfig(self.local_channels, self.global_channels, self.head_channels, self.mlp_ratio,
                          self.num_head_blocks, self.use_homogeneous, self.num_decoder_clusters)

    def _blocks(self) -> list[tuple[nn.Module, nn.Module, nn.Module]]:
        return [(getattr(self, f"{i}c0"), getattr(self, f"{i}c1"), getattr(self, f"{i}c2"))
                for i in range(self.num_head_blocks)]

    def set_mean(self, mean: torch.Tensor | np.ndarray) -> None:
        """Set the offset added to every prediction: ``mean`` (3,), e.g. the mean training camera centre."""
        if self.num_decoder_clusters > 1:
            raise ValueError(f"this head has a position decoder with K={self.num_decoder_clusters} "
                             "centres: use set_centers((K, 3))")
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(-1)
        if mean_t.shape != (3,):
            raise ValueError(f"mean must have shape (3,), got {tuple(np.shape(mean))}")
        self.mean.copy_(mean_t.view(1, 3, 1, 1))

    def set_centers(self, centers: torch.Tensor | np.ndarray) -> None:
        """Set the position-decoder centres ``(K, 3)`` (K = num_decoder_clusters; K = 1 sets the mean)."""
        centers_np = np.asarray(centers, dtype=np.float32)
        k = self.num_decoder_clusters
        if centers_np.shape != (k, 3):
            raise ValueError(f"centers must have shape ({k}, 3), got {centers_np.shape}")
        if k == 1:
            self.set_mean(centers_np[0])
            return
        self.centers.copy_(torch.from_numpy(centers_np).view(1, k, 3, 1, 1))

    def build_input(self, features: torch.Tensor, global_features: torch.Tensor | None) -> torch.Tensor:
        """Concatenate ``[global | local]``: ``(N, C, h, w)`` + ``(N, G)`` or ``(N, G, h, w)`` -> ``(N, G+C, h, w)``.

        Heads without global input (``global_channels == 0``) return ``features`` and ignore
        ``global_features``. A ``(N, G)`` vector is broadcast over ``h x w``.
        """
        if features.ndim != 4 or features.shape[1] != self.local_channels:
            raise ValueError(f"head expects local features (N, {self.local_channels}, h, w), "
                             f"got shape {tuple(features.shape)}")
        if self.global_channels == 0:
            return features
        if global_features is None:
            raise ValueError(f"this head needs global features (N, {self.global_channels}) "
                             "(it was trained with global features); got None")
        n, _, h, w = features.shape
        dtype = torch.promote_types(features.dtype, global_features.dtype)
        features = features.to(dtype)
        g = global_features.to(device=features.device, dtype=dtype)
        if g.ndim == 2 and g.shape == (n, self.global_channels):
            g = g[:, :, None, None].expand(n, self.global_channels, h, w)
        elif g.ndim != 4 or tuple(g.shape) != (n, self.global_channels, h, w):
            raise ValueError(f"global features must have shape ({n}, {self.global_channels}) or "
                             f"({n}, {self.global_channels}, {h}, {w}), got {tuple(global_features.shape)}")
        return torch.cat((g, features), dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Scene coordinates ``(N, 3, h, w)`` float32 from the concatenated input ``(N, in_channels, h, w)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"head expects input (N, {self.in_channels}, h, w), got shape {tuple(x.shape)}")
        x = x.to(self.res3_conv1.weight.dtype)
        return self.decode(F.relu(self.res3_conv1(x)), self.head_skip(x))

    def decode(self, y: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Scene coordinates ``(N, 3, h, w)`` float32 from the first layer's activations
        ``y = relu(res3_conv1(x))`` ``(N, h_c, h, w)`` and ``skip = head_skip(x)`` ``(N, h_c, h, w)``
        (the rest of the head; ``glace_core.fast_inference`` computes y and skip its own way)."""
        y = F.relu(self.res3_conv2(y))
        y = F.relu(self.res3_conv3(y))
        res = skip + y
        for c0, c1, c2 in self._blocks():
            y = F.relu(c0(res))
            y = F.relu(c1(y))
            y = F.relu(c2(y))
            res = res + y

        s = F.relu(self.fc1(res))
        s = F.relu(self.fc2(s))
        if self.num_decoder_clusters > 1:
            weights = F.softmax(self.fcc(s), dim=1)  # (N, K, h, w)
            offset = torch.sum(weights.unsqueeze(2) * self.centers, dim=1)  # (N, 3, h, w)
        else:
            offset = self.mean
        sc = self.fc3(s)
        if self.use_homogeneous:
            h_w = F.softplus(sc[:, 3:4], beta=float(self.h_beta.item())) + self.max_inv_scale
            h_w = torch.clamp(h_w, max=self.min_inv_scale)
            sc = sc[:, :3] / h_w
        return (sc + offset).float()

    def forward(self, features: torch.Tensor, global_features: torch.Tensor | None = None) -> torch.Tensor:
        """Scene coordinates ``(N, 3, h, w)`` float32 (world frame).

        features: local features ``(N, local_channels, h, w)``.
        global_features: ``(N, global_channels)`` or per-pixel ``(N, global_channels, h, w)``;
        ignored (may be None) when the head has no global input.
        """
        return self.predict(self.build_input(features, global_features))
