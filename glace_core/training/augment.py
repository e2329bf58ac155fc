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
- Novel views (ours, ``novel_view_ratio``; needs depth): the image re-rendered from a camera moved
  by up to ``novel_view_offset`` metres and turned by up to ``novel_view_yaw`` degrees about its own
  y (down) axis (``novel_view``): the depth is splatted into the new view (z-buffer, one-pixel
  cracks closed with the nearest surface), each new pixel is looked up in the source image, and
  pixels the source does not see (disocclusions, outside its frame, a depth that disagrees by more
  than 5 %) are masked out, with a margin of ``NOVEL_VIEW_MARGIN`` px so that no trained cell's
  features saw the hole fill.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from glace_core.geometry import backproject, invert_pose, project_camera_points, rotation_y, rotation_z

JITTER = 0.1  # brightness and contrast jitter (torchvision ColorJitter(0.1, 0.1) ranges)
NOVEL_VIEW_MARGIN = 12  # px around pixels the source view does not see that are not trained on
NOVEL_VIEW_MIN_VALID = 0.3  # a novel view keeps at least this fraction of trainable pixels, else none


@dataclass
class AugmentedImage:
    image: torch.Tensor  # (1, 1, H, W) float32 normalised grayscale (network input)
    K: np.ndarray  # (3, 3) intrinsics of ``image``
    cam_to_world: np.ndarray  # (4, 4) pose of the (possibly rolled) camera
    mask: np.ndarray  # (H, W) bool, pixels with image content (False where the rotation brought in border)
    depth: np.ndarray | None = None  # (H, W) float32 z-depth in metres at the network input, 0 = unknown


def roll_warp(K: np.ndarray, angle_deg: float) -> np.ndarray:
    """(3, 3) affine map of continuous pixel coordinates taking the image of a camera to the image of
    the same camera rolled by ``angle_deg`` (``pose @ Rz(angle)``): ``K Rz^T K^-1``."""
    K = np.asarray(K, dtype=np.float64)
    return K @ rotation_z(angle_deg)[:3, :3].T @ np.linalg.inv(K)


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
    pose[:3, :3] = cam_to_world[:3, :3] @ rotation_z(angle)[:3, :3]
    image = torch.from_numpy((gray - MEAN) / STD).float()[None, None]
    return AugmentedImage(image, K_net, pose, mask.astype(bool), net_depth)


def novel_view(aug: AugmentedImage, rng: np.random.Generator, max_offset_m: float,
               max_yaw_deg: float) -> AugmentedImage | None:
    """``aug`` re-rendered from a nearby camera (module docstring), or None when fewer than
    ``NOVEL_VIEW_MIN_VALID`` of its pixels would be trainable.

    aug: needs ``depth`` (H, W) metres (0 = unknown) at the network input. The new camera is
    ``cam_to_world @ [R_y(yaw) | offset]``, offset uniform in the ball of radius ``max_offset_m`` (in
    the camera's frame), yaw ~ U(-max_yaw_deg, max_yaw_deg). Returns the same K and image size, the
    new pose, mask and depth (0 where masked).
    """
    if aug.depth is None:
        raise ValueError("novel views need the mapping frame's depth (the split's depth/ folder)")
    if max_offset_m < 0 or max_yaw_deg < 0:
        raise ValueError(f"novel_view_offset and novel_view_yaw must be >= 0, got {max_offset_m}, {max_yaw_deg}")

    K = np.asarray(aug.K, dtype=np.float64)
    src = aug.image[0, 0].numpy().astype(np.float32)
    h, w = src.shape
    depth = np.asarray(aug.depth, dtype=np.float32)
    known = (depth > 0) & aug.mask
    direction = rng.normal(size=3)
    offset = direction / max(np.linalg.norm(direction), 1e-12) * max_offset_m * rng.uniform() ** (1 / 3)
    new_to_src = rotation_y(rng.uniform(-max_yaw_deg, max_yaw_deg))  # the new camera in the source camera's frame
    new_to_src[:3, 3] = offset

    # 1. splat the source surface into the new view (nearest pixel, smallest z wins)
    points = backproject(np.where(known, depth, 0.0), K, invert_pose(new_to_src))[known]  # (n, 3) new camera
    px, z = project_camera_points(points, K)
    u, v = px[:, 0], px[:, 1]
    inside = np.isfinite(u) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    target = np.full(h * w, np.inf, dtype=np.float64)
    np.minimum.at(target, np.floor(v[inside]).astype(np.int64) * w + np.floor(u[inside]).astype(np.int64), z[inside])
    target = target.reshape(h, w).astype(np.float32)
    cracks = ~np.isfinite(target)
    closed = cv2.erode(np.where(cracks, np.float32(np.inf), target), np.ones((3, 3), np.uint8))
    target = np.where(cracks, closed, target)
    # 2. look every new pixel up in the source image; keep it where the source sees that surface
    new_depth = np.where(np.isfinite(target), target, 0.0).astype(np.float32)
    spx, sz = project_camera_points(backproject(new_depth, K, new_to_src).reshape(-1, 3), K)
    map_x = np.nan_to_num(spx[:, 0].reshape(h, w) - 0.5, nan=-1.0).astype(np.float32)
    map_y = np.nan_to_num(spx[:, 1].reshape(h, w) - 0.5, nan=-1.0).astype(np.float32)
    sz = sz.reshape(h, w)
    image = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    seen = cv2.remap(depth * known, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    with np.errstate(invalid="ignore"):
        valid = (new_depth > 0) & (seen > 0) & (np.abs(seen - sz) <= 0.05 * sz)
    valid &= (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    image = np.where(valid, image, 0.0).astype(np.float32)  # holes: the normalised mean grey
    kernel = np.ones((2 * NOVEL_VIEW_MARGIN + 1, 2 * NOVEL_VIEW_MARGIN + 1), np.uint8)
    trainable = cv2.erode(valid.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1).astype(bool)
    if trainable.mean() < NOVEL_VIEW_MIN_VALID:
        return None
    pose = np.asarray(aug.cam_to_world, dtype=np.float64) @ new_to_src
    return AugmentedImage(torch.from_numpy(image)[None, None], K.copy(), pose, trainable,
                          np.where(trainable, new_depth, 0.0).astype(np.float32))
