"""Training-time augmentation of one mapping image (GLACE_SPEC.md section c).

- Scale: the network input's shorter side becomes ``int(image_resolution * s)``, s ~ U(1/aug_scale, aug_scale).
- Photometric: brightness then contrast jitter, factors ~ U(0.9, 1.1), on the [0, 1] grayscale.
- Rotation: angle ~ U(-aug_rotation, aug_rotation) degrees. The camera is rolled about its optical
  axis, ``cam_to_world <- cam_to_world @ Rz(angle)``, and the image is warped to match: a pixel
  ``u`` moves to ``K Rz(angle)^T K^-1 u`` (exact for any K, i.e. a rotation about the principal
  point; for the usual K with the principal point at the image centre this is a rotation about the
  centre). Bilinear with reflected borders for the image; the valid mask is warped with nearest
  neighbour and border 0, so pixels that came from outside the image are not trained on.
- Depth (optional, for ``use_depth``): resized to the network input and rolled like the mask
  (nearest neighbour, border 0 = unknown). z-depth is unchanged by both: scaling changes only K,
  and a roll about the optical axis keeps every point's z.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

JITTER = 0.1  # brightness and contrast jitter (torchvision ColorJitter(0.1, 0.1) ranges)


@dataclass
class AugmentedImage:
    image: torch.Tensor  # (1, 1, H, W) float32 normalised grayscale (network input)
    K: np.ndarray  # (3, 3) intrinsics of ``image``
    cam_to_world: np.ndarray  # (4, 4) pose of the (possibly rolled) camera
    mask: np.ndarray  # (H, W) bool, pixels with image content (False where the rotation brought in border)
    depth: np.ndarray | None = None  # (H, W) float32 z-depth in metres at the network input, 0 = unknown


def rotation_z(angle_deg: float) -> np.ndarray:
    """(3, 3) rotation by ``angle_deg`` about the z (optical) axis: ``[[c, -s, 0], [s, c, 0], [0, 0, 1]]``."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def roll_warp(K: np.ndarray, angle_deg: float) -> np.ndarray:
    """(3, 3) affine map of continuous pixel coordinates taking the image of a camera to the image of
    the same camera rolled by ``angle_deg`` (``pose @ Rz(angle)``): ``K Rz^T K^-1``."""
    K = np.asarray(K, dtype=np.float64)
    return K @ rotation_z(angle_deg).T @ np.linalg.inv(K)


def rotate_image(image: np.ndarray, K: np.ndarray, angle_deg: float, *, nearest: bool = False,
                 border_value: float | None = None) -> np.ndarray:
    """Warp ``image`` (H, W) by ``roll_warp(K, angle_deg)``; same size. Bilinear with reflected
    borders by default; ``nearest`` with a constant ``border_value`` for masks."""
    h, w = image.shape[:2]
    # cv2 works in pixel indices (centre of pixel i at i); ours are continuous (centre at i + 0.5).
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    matrix = (unshift @ roll_warp(K, angle_deg) @ shift)[:2]
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    if border_value is None:
        return cv2.warpAffine(image, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    return cv2.warpAffine(image, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border_value)


def resize_depth(depth: np.ndarray, size_hw: tuple[int, int], rgb_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a depth map (h, w) metres, registered to an RGB image of ``rgb_hw``,
    to ``size_hw`` (the network input): (H, W) float32. Raises ValueError when its aspect ratio is not
    the image's (it cannot be registered to it)."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be an (H, W) map, got shape {depth.shape}")
    if abs(depth.shape[0] * rgb_hw[1] - depth.shape[1] * rgb_hw[0]) > max(depth.shape[0], rgb_hw[0]):
        raise ValueError(f"depth map {depth.shape[1]}x{depth.shape[0]} does not have the aspect ratio of its "
                         f"{rgb_hw[1]}x{rgb_hw[0]} image: it must be registered to the RGB image")
    if depth.shape == tuple(size_hw):
        return depth
    return cv2.resize(depth, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_NEAREST)


def augment_image(rgb: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray, image_resolution: int, *,
                  use_aug: bool, aug_scale: float, aug_rotation: float, rng: np.random.Generator,
                  depth: np.ndarray | None = None) -> AugmentedImage:
    """Preprocess (and with ``use_aug`` augment) one mapping image.

    rgb: (H, W, 3) or (H, W) uint8; K: (3, 3) at the image's resolution; cam_to_world: (4, 4);
    depth: optional (h, w) z-depth in metres registered to ``rgb`` (0 = unknown), any resolution of
    the same aspect ratio.
    """
    from glace_core.preprocess import MEAN, STD, preprocess_image

    cam_to_world = np.asarray(cam_to_world, dtype=np.float64)
    rgb_hw = tuple(np.asarray(rgb).shape[:2])
    if not use_aug:
        tensor, K_net = preprocess_image(rgb, K, resolution=int(image_resolution))
        mask = np.ones(tensor.shape[-2:], dtype=bool)
        net_depth = None if depth is None else resize_depth(depth, tuple(tensor.shape[-2:]), rgb_hw)
        return AugmentedImage(tensor.float(), np.asarray(K_net, np.float64), cam_to_world.copy(), mask, net_depth)

    scale = rng.uniform(1.0 / aug_scale, aug_scale)
    tensor, K_net = preprocess_image(rgb, K, resolution=max(8, int(image_resolution * scale)))
    K_net = np.asarray(K_net, dtype=np.float64)
    gray = tensor[0, 0].numpy().astype(np.float32) * STD + MEAN  # back to [0, 1]
    brightness, contrast = rng.uniform(1.0 - JITTER, 1.0 + JITTER, size=2)
    gray = np.clip(gray * brightness, 0.0, 1.0)
    gray = np.clip((gray - gray.mean()) * contrast + gray.mean(), 0.0, 1.0).astype(np.float32)

    angle = rng.uniform(-aug_rotation, aug_rotation) if aug_rotation > 0 else 0.0
    mask = np.ones(gray.shape, dtype=np.uint8)
    net_depth = None if depth is None else resize_depth(depth, gray.shape, rgb_hw)
    if angle != 0.0:
        gray = rotate_image(gray, K_net, angle)
        mask = rotate_image(mask, K_net, angle, nearest=True, border_value=0)
        if net_depth is not None:
            net_depth = rotate_image(net_depth, K_net, angle, nearest=True, border_value=0)
    pose = cam_to_world.copy()
    pose[:3, :3] = cam_to_world[:3, :3] @ rotation_z(angle)
    image = torch.from_numpy((gray - MEAN) / STD).float()[None, None]
    return AugmentedImage(image, K_net, pose, mask.astype(bool), net_depth)
