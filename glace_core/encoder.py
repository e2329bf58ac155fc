"""Scene-agnostic feature encoders and the registry that lets loaders pick one from a weights file.

The ACE encoder (GLACE_SPEC.md section a) maps a normalised grayscale image ``(N, 1, H, W)`` to
features ``(N, 512, ceil(H/8), ceil(W/8))``. Every 3x3 convolution uses padding 1, so each of the
three stride-2 steps rounds the size up (``ceil``).

Encoder families: a family is an ``nn.Module`` class with the class attributes ``name`` (str),
``out_channels`` (int, default width), ``stride`` (int) and a classmethod
``from_state_dict(state_dict) -> module | None`` that returns an (unloaded) instance when the
weights look like its own layout and ``None`` otherwise. Each instance has ``out_channels``.
``register_encoder_family`` adds a family; ``glace_core.network.load_encoder`` asks the registered
families in order. A second family (e.g. XFeat, 64 channels at stride 8) registers itself the same
way from its own module.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

#: Keys and shapes of the official ACE encoder file (``ace_encoder_pretrained.pt``), in file order.
ACE_ENCODER_LAYOUT: tuple[tuple[str, tuple[int, ...]], ...] = tuple(
    item
    for name, shape in (
        ("conv1", (32, 1, 3, 3)),
        ("conv2", (64, 32, 3, 3)),
        ("conv3", (128, 64, 3, 3)),
        ("conv4", (256, 128, 3, 3)),
        ("res1_conv1", (256, 256, 3, 3)),
        ("res1_conv2", (256, 256, 1, 1)),
        ("res1_conv3", (256, 256, 3, 3)),
        ("res2_conv1", (512, 256, 3, 3)),
        ("res2_conv2", (512, 512, 1, 1)),
        ("res2_conv3", (512, 512, 3, 3)),
        ("res2_skip", (512, 256, 1, 1)),
    )
    for item in ((f"{name}.weight", shape), (f"{name}.bias", (shape[0],)))
)

#: Image normalisation the ACE encoder expects (after conversion to grayscale in [0, 1]).
ACE_IMAGE_MEAN = 0.4
ACE_IMAGE_STD = 0.25

_ENCODER_FAMILIES: list[type[nn.Module]] = []


def register_encoder_family(cls: type[nn.Module]) -> type[nn.Module]:
    """Register an encoder class (see the module docstring for the interface); usable as a decorator."""
    for attr in ("name", "out_channels", "stride", "from_state_dict"):
        if not hasattr(cls, attr):
            raise TypeError(f"encoder family {cls.__name__} lacks the attribute {attr!r}")
    if cls not in _ENCODER_FAMILIES:
        _ENCODER_FAMILIES.append(cls)
    return cls


def encoder_families() -> tuple[type[nn.Module], ...]:
    """The registered encoder classes, in the order loaders try them."""
    return tuple(_ENCODER_FAMILIES)


def encoder_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> nn.Module | None:
    """An unloaded encoder instance whose family recognises ``state_dict``, or None if none does."""
    for cls in _ENCODER_FAMILIES:
        module = cls.from_state_dict(state_dict)
        if module is not None:
            return module
    return None


@register_encoder_family
class ACEEncoder(nn.Module):
    """ACE convolutional encoder: ``(N, 1, H, W)`` float -> ``(N, out_channels, ceil(H/8), ceil(W/8))``.

    The input is grayscale normalised with mean 0.4 and std 0.25. Layers (every conv has a bias):
    conv1 1->32 s1, conv2 32->64 s2, conv3 64->128 s2, conv4 128->256 s2 (= res, ReLU after each);
    res1: 3x3, 1x1, 3x3 256->256 with ReLUs, then res += x; res2: 3x3 256->512, 1x1 512->512,
    3x3 512->out with ReLUs (= x); output = res2_skip(res) (1x1 256->out, no ReLU) + x.
    """

    name = "ace"
    out_channels = 512
    stride = 8

    def __init__(self, out_channels: int = 512):
        super().__init__()
        if out_channels <= 0:
            raise ValueError(f"out_channels must be positive, got {out_channels}")
        self.out_channels = int(out_channels)
        self.conv1 = nn.Conv2d(1, 32, 3, 1, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 2, 1)
        self.conv3 = nn.Conv2d(64, 128, 3, 2, 1)
        self.conv4 = nn.Conv2d(128, 256, 3, 2, 1)
        self.res1_conv1 = nn.Conv2d(256, 256, 3, 1, 1)
        self.res1_conv2 = nn.Conv2d(256, 256, 1, 1, 0)
        self.res1_conv3 = nn.Conv2d(256, 256, 3, 1, 1)
        self.res2_conv1 = nn.Conv2d(256, 512, 3, 1, 1)
        self.res2_conv2 = nn.Conv2d(512, 512, 1, 1, 0)
        self.res2_conv3 = nn.Conv2d(512, self.out_channels, 3, 1, 1)
        self.res2_skip = nn.Conv2d(256, self.out_channels, 1, 1, 0)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> "ACEEncoder | None":
        """An unloaded ACEEncoder sized for ``state_dict`` if most ACE key names are there, else None.

        Tolerant on purpose: a damaged ACE file is recognised here, and the strict load then names
        the missing, unexpected or misshapen keys.
        """
        hits = sum(key in state_dict for key, _ in ACE_ENCODER_LAYOUT)
        if 2 * hits < len(ACE_ENCODER_LAYOUT):
            return None
        last = state_dict.get("res2_conv3.weight")
        width = int(last.shape[0]) if isinstance(last, torch.Tensor) and last.ndim == 4 else cls.out_channels
        return cls(out_channels=width)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Encode ``image`` ``(N, 1, H, W)`` float -> features ``(N, C, ceil(H/8), ceil(W/8))``."""
        if image.ndim != 4 or image.shape[1] != 1:
            raise ValueError(f"ACE encoder expects a (N, 1, H, W) image, got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise ValueError(f"ACE encoder expects a floating-point image, got dtype {image.dtype}")
        x = F.relu(self.conv1(image))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        res = F.relu(self.conv4(x))

        x = F.relu(self.res1_conv1(res))
        x = F.relu(self.res1_conv2(x))
        x = F.relu(self.res1_conv3(x))
        res = res + x

        x = F.relu(self.res2_conv1(res))
        x = F.relu(self.res2_conv2(x))
        x = F.relu(self.res2_conv3(x))
        return self.res2_skip(res) + x


def feature_size(height: int, width: int, stride: int = 8) -> tuple[int, int]:
    """Feature-map size ``(ceil(H/stride), ceil(W/stride))`` of an encoder of the given stride."""
    return (-(-int(height) // stride), -(-int(width) // stride))
