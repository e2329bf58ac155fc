"""K GLACE heads of one architecture trained as one module: their 1x1 convolutions as batched matmuls.

A GlaceHead is an MLP of 1x1 convolutions, so on rows of features each layer is ``x W^T + b``.
``StackedHeads`` stacks the K heads' weights per layer into ``(K, out, in)`` parameters and runs
every layer as one ``baddbmm`` over ``(K, B, in)`` rows: head k only ever sees row block k, so its
gradients are those of its own loss on its own rows, and AdamW (elementwise, including weight
decay) over the stacked parameters is K independent AdamWs with the same schedule. ``write_back``
copies the trained weights into the GlaceHead modules it was built from, which keep their
official layout for the map writer. Position-decoder offsets (``mean`` or ``centers``) and the
homogeneous constants stay per head and are not trained, as in GlaceHead.

Why matmuls: on CPU the backward pass of a 1x1 convolution (oneDNN, channels-last rows) was 5-6x
its forward; a matmul's is about 2x, so a training step costs less than half.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from glace_core.head import GlaceHead

#: The layers of a GlaceHead in forward order, before the blocks (head_skip only when it is a conv).
_FIRST = ("res3_conv1", "head_skip", "res3_conv2", "res3_conv3")
_LAST = ("fc1", "fc2", "fcc", "fc3")


def _layer_names(head: GlaceHead) -> list[str]:
    blocks = [f"{i}{c}" for i in range(head.num_head_blocks) for c in ("c0", "c1", "c2")]
    return [n for n in (*_FIRST, *blocks, *_LAST) if isinstance(getattr(head, n, None), nn.Conv2d)]


class StackedHeads(nn.Module):
    """K heads of one architecture as stacked parameters: ``(K, B, G + C)`` rows -> ``(K, B, 3)``.

    Built from GlaceHead modules (same config; their current weights are copied); ``write_back()``
    copies the stacked weights back into them."""

    def __init__(self, heads: Sequence[GlaceHead]):
        super().__init__()
        heads = list(heads)
        if not heads:
            raise ValueError("StackedHeads needs at least one head")
        config = heads[0].config
        for k, head in enumerate(heads):
            if head.config != config:
                raise ValueError(f"head {k} has architecture {head.config}, head 0 has {config}: "
                                 "only heads of one architecture can be stacked")
        self.heads = heads  # a plain list: the GlaceHeads are not submodules (their weights are copied)
        self.config = config
        self.layers = _layer_names(heads[0])
        self.weight = nn.ParameterDict({n: nn.Parameter(torch.stack(
            [getattr(h, n).weight.detach()[:, :, 0, 0] for h in heads]).clone()) for n in self.layers})
        self.bias = nn.ParameterDict({n: nn.Parameter(torch.stack(
            [getattr(h, n).bias.detach() for h in heads]).clone()) for n in self.layers})
        if config.num_decoder_clusters > 1:
            self.register_buffer("centers", torch.stack([h.centers.detach().reshape(-1, 3) for h in heads]))
        else:
            self.register_buffer("offset", torch.stack([h.mean.detach().reshape(1, 3) for h in heads]))
        if config.use_homogeneous:
            first = heads[0]
            self.h_beta = float(first.h_beta.item())
            self.max_inv_scale = float(first.max_inv_scale.item())
            self.min_inv_scale = float(first.min_inv_scale.item())

    def __len__(self) -> int:
        return len(self.heads)

    def _linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Layer ``name`` on rows ``(K, B, in)`` -> ``(K, B, out)``."""
        return torch.baddbmm(self.bias[name].unsqueeze(1), x, self.weight[name].transpose(1, 2))

    def forward(self, features: torch.Tensor, global_features: torch.Tensor | None = None, *,
                last_fp32: bool = False) -> torch.Tensor:
        """Scene coordinates ``(K, B, 3)`` float32 (world frame), row block k by head k.

        features: local features ``(K, B, C)``; global_features: ``(K, B, G)`` (heads with global
        input only; they come first in the input, as in GlaceHead.build_input).
        last_fp32: run the output layer (fc3) and what follows in float32 even inside a
        lower-precision autocast region (CPU bf16 training).
        """
        k, c, g = len(self.heads), self.config.local_channels, self.config.global_channels
        if features.ndim != 3 or features.shape[0] != k or features.shape[2] != c:
            raise ValueError(f"stacked heads expect local features ({k}, B, {c}), got {tuple(features.shape)}")
        x = features
        if g:
            if global_features is None or tuple(global_features.shape) != (k, features.shape[1], g):
                shape = None if global_features is None else tuple(global_features.shape)
                raise ValueError(f"stacked heads expect global features ({k}, {features.shape[1]}, {g}), got {shape}")
            x = torch.cat((global_features.to(features.dtype), features), dim=2)
        x = x.to(self.weight["res3_conv1"].dtype)
        y = F.relu(self._linear("res3_conv1", x))
        res = self._linear("head_skip", x) if "head_skip" in self.weight else x
        y = F.relu(self._linear("res3_conv2", y))
        res = res + F.relu(self._linear("res3_conv3", y))
        for i in range(self.config.num_head_blocks):
            y = F.relu(self._linear(f"{i}c0", res))
            y = F.relu(self._linear(f"{i}c1", y))
            res = res + F.relu(self._linear(f"{i}c2", y))
        s = F.relu(self._linear("fc1", res))
        s = F.relu(self._linear("fc2", s))
        if self.config.num_decoder_clusters > 1:
            weights = F.softmax(self._linear("fcc", s).float(), dim=2)  # (K, B, nc)
            offset = torch.bmm(weights, self.centers)  # (K, B, 3)
        else:
            offset = self.offset  # (K, 1, 3)
        if last_fp32:
            with torch.autocast(s.device.type, enabled=False):
                sc = self._linear("fc3", s.float())
        else:
            sc = self._linear("fc3", s)
        if self.config.use_homogeneous:
            h_w = F.softplus(sc[..., 3:4], beta=self.h_beta) + self.max_inv_scale
            sc = sc[..., :3] / torch.clamp(h_w, max=self.min_inv_scale)
        return sc.float() + offset

    @torch.no_grad()
    def write_back(self) -> list[GlaceHead]:
        """Copy the stacked weights into the GlaceHeads this was built from; returns them."""
        for k, head in enumerate(self.heads):
            for n in self.layers:
                conv = getattr(head, n)
                conv.weight.copy_(self.weight[n][k].view_as(conv.weight))
                conv.bias.copy_(self.bias[n][k])
        return self.heads
