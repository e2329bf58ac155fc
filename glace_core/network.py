"""Public loaders for encoders and heads, and the Regressor that chains them.

``load_encoder`` loads a weights file (``glace_core.encoder_registry.load_encoder_file`` picks the
encoder family from the key names) or builds a named encoder; ``load_head`` infers the head
architecture from the weights, and ``load_map`` reads a single head or an ensemble map
(``glace_core.head_ensemble``). A head's input width is ``global + local``: the split is read from
the map's sidecar metadata when it records it, otherwise ``glace_core.head.split_input_channels``
decides (768 -> 256 global + 512 local, 512 -> 0 + 512, 320 -> 256 + 64, 64 -> 0 + 64).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from glace_core.encoder_registry import is_named_spec, load_encoder_file, resolve_encoder
from glace_core.head import GlaceHead
from glace_core.head_ensemble import HeadEnsemble
from glace_core.map_files import (MapFileError, check_encoder_compatibility, head_from_state_dict,
                                  is_ensemble_state_dict, load_state_dict_file, read_map_metadata,
                                  split_ensemble_state_dict)

_logger = logging.getLogger(__name__)


def load_encoder(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Load an encoder weights file (eval mode, float32, on ``device``).

    path: an encoder state dict (e.g. the official ``ace_encoder_pretrained.pt``), possibly with an
    ``encoder.`` prefix or inside a combined network file; None loads the shipped default
    (``encoder_registry.default_encoder_spec``: weights/default_encoder.pt when present, else XFeat).
    The module maps ``(N, 1, H, W)`` to ``(N, out_channels, ceil(H/8), ceil(W/8))`` and carries
    ``name``, ``out_channels``, ``stride``, ``source_path`` and ``sha256`` (of the file).
    A named encoder ("xfeat", "ace-random[:seed]", "default") is built by glace_core.encoder_registry.
    """
    if path is None or is_named_spec(path):
        return resolve_encoder(path, device)  # None: the shipped default (a file, else XFeat)
    return load_encoder_file(path).to(device)


def load_head(path: str | os.PathLike, device: str | torch.device = "cpu", *,
              global_channels: int | None = None) -> GlaceHead:
    """Load a GLACE/ACE head file (official layout, fp16 or fp32) as a float32 GlaceHead in eval mode.

    The architecture is inferred from the weights; ``global_channels`` (or the sidecar's
    ``head.global_channels``) overrides the global/local split of the input width. The returned
    head has ``metadata`` (the sidecar dict or None) and ``source_path`` attributes. An ensemble
    map raises MapFileError (use ``load_map``, which reads both kinds).
    """
    head = load_map(path, device, global_channels=global_channels)
    if isinstance(head, HeadEnsemble):
        raise MapFileError(f"{path} is an ensemble map of {len(head)} heads, not a single head: "
                           "load it with glace_core.network.load_map")
    return head


def load_map(path: str | os.PathLike, device: str | torch.device = "cpu", *,
             global_channels: int | None = None) -> GlaceHead | HeadEnsemble:
    """Load a map file: a single head (official layout) as a GlaceHead, or an ensemble map
    (``glace_core.head_ensemble``) as a HeadEnsemble; float32, eval mode, on ``device``, with
    ``metadata`` and ``source_path`` attributes. Every head is loaded strictly (load_head's rules)."""
    path = Path(path)
    state_dict = load_state_dict_file(path)
    metadata = read_map_metadata(path)
    if is_ensemble_state_dict(state_dict):
        parts, descriptors, membership = split_ensemble_state_dict(state_dict, str(path))
        heads = [head_from_state_dict(sd, metadata, f"{path} (head {k})", global_channels)
                 for k, sd in enumerate(parts)]
        try:
            model: GlaceHead | HeadEnsemble = HeadEnsemble(heads, descriptors.float(), membership.float())
        except ValueError as exc:
            raise MapFileError(f"{path}: {exc}") from exc
    else:
        model = head_from_state_dict(state_dict, metadata, str(path), global_channels)
    model.metadata = metadata
    model.source_path = str(path)
    _logger.info("loaded %s %s: %s", "ensemble map" if isinstance(model, HeadEnsemble) else "head", path,
                 model.config if isinstance(model, GlaceHead) else f"{len(model)} x {model.config}")
    return model.float().eval().to(device)


class Regressor(nn.Module):
    """Encoder + head: image ``(N, 1, H, W)`` (+ global ``(N, 256)``) -> scene coordinates ``(N, 3, h, w)``."""

    def __init__(self, encoder: nn.Module, head: GlaceHead):
        super().__init__()
        check_encoder_compatibility(head, encoder)
        self.encoder = encoder
        self.head = head

    @property
    def stride(self) -> int:
        return int(getattr(self.encoder, "stride", 8))

    def forward(self, image: torch.Tensor, global_features: torch.Tensor | None = None) -> torch.Tensor:
        """image: ``(N, 1, H, W)`` normalised grayscale; global_features: ``(N, G)`` or None for heads
        without global input. Returns ``(N, 3, ceil(H/8), ceil(W/8))`` float32 world coordinates."""
        return self.head(self.encoder(image), global_features)


def load_regressor(encoder_path: str | os.PathLike | None, head_path: str | os.PathLike,
                   device: str | torch.device = "cpu") -> Regressor:
    """``Regressor(load_encoder(encoder_path), load_head(head_path))`` with the compatibility check."""
    return Regressor(load_encoder(encoder_path, device), load_head(head_path, device)).eval()
