"""6x6 covariance of a RANSAC pose, from the geometry of the solution, in ROS PoseWithCovariance order.

Parametrisation (what ROS consumers such as robot_localization read): the pose error is
``(dx, dy, dz, rx, ry, rz)``: the camera centre's displacement in the map frame, then a small
rotation about the map's fixed axes, ``R_true = Exp(r) R_est``. Row-major 6x6, flattened to 36.

Model (:func:`covariance_from_residuals`, on the residuals :func:`reprojection_statistics` collects):
each inlier cell i gives a reprojection residual e_i
(2-vector, px) whose Jacobian J_i (2x6) with respect to that error is

    c = R^T (p - C)                   (the cell's point in the camera)
    dc/dC = -R^T,   dc/dr = [c]x R^T
    du/dc = [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]]

With H = sum_i w_i J_i^T J_i and the per-axis residual variance s^2 = sum_i |e_i|^2 / (2 (N - 6)), the
least-squares covariance s^2 H^-1 assumes independent residuals. Scene coordinates of neighbouring
cells are not independent (one network, overlapping receptive fields), so the information does not
grow with N: the covariance is scaled by N / n_eff, ``n_eff`` (``CovarianceCalibration``) being the
number of effectively independent observations, fitted on held-out scenes by ``bench/covariance.py``
(BENCHMARKS.md "Covariance"), and floored per axis. Three things the residuals cannot show widen it
(each measured on the bench scenes, where without them the errors of the worst scenes fell outside
the covariance's 95 % bound for 44 % of frames):

- a low inlier ratio (an ambiguous solution): the scale grows by 1 / max(ratio, min_inlier_ratio);
- texture: a cell on a plain surface fits a pose without pinning it (a plain wall's scene coordinates
  can slide along the wall), so each cell's information is weighted by
  ``w_i = min(1, t_i / texture_full_weight) ** 2``, t_i being the image's mean gradient magnitude
  around the cell (:func:`cell_texture`);
- distance from the mapping views: the network extrapolates to views the mapping run never took, and
  its errors grow with that distance. With d the distance (:class:`MappingViews`) from the pose to
  the nearest mapping camera, the scale grows by ``1 + (d / novelty_scale_m) ** 2``.

:func:`transform_pose_covariance` carries such a covariance to another frame rigidly attached to
the camera (base_link), with the adjoint of the lever arm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from glace_core.geometry import cell_centres, invert_pose, project_camera_points, transform_points

__all__ = ["CovarianceCalibration", "MappingViews", "cell_texture", "pose_jacobians", "reprojection_statistics",
           "covariance_from_residuals", "transform_pose_covariance", "pose_error_vector", "mahalanobis_squared"]


@dataclass(frozen=True)
class CovarianceCalibration:
    """Scale and floors of :func:`covariance_from_residuals` (defaults: the fit in BENCHMARKS.md)."""

    # n_eff: independent observations the inliers are worth. Fitted by bench/covariance.py --fit on six
    # held-out bench scenes, to the pooled median d^2 3.3, the conservative end of the 3-8 target
    # (all scenes: 186; leave-one-scene-out 166-211; BENCHMARKS.md "Covariance")
    effective_observations: float = 186.0
    min_position_std_m: float = 0.005  # floor of each position standard deviation
    min_rotation_std_rad: float = math.radians(0.2)  # floor of each rotation standard deviation
    min_inlier_ratio: float = 0.02  # the inlier ratio's inflation saturates here
    min_residual_px: float = 0.5  # floor of the residual standard deviation per axis
    #: mean image gradient (grey levels per px, ``cell_texture``) from which a cell counts fully
    texture_full_weight: float = 4.0
    #: distance from the nearest mapping view at which the covariance doubles (MappingViews.distance)
    novelty_scale_m: float = 0.2
    #: the distance assumed when the map does not record its mapping views (an official GLACE head,
    #: a map trained before 2026-12-04): the bench scenes' typical distance
    unknown_novelty_m: float = 0.15

    def __post_init__(self):
        for name in ("effective_observations", "min_inlier_ratio", "novelty_scale_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("min_position_std_m", "min_rotation_std_rad", "min_residual_px", "texture_full_weight",
                     "unknown_novelty_m"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class MappingViews:
    """The mapping run's cameras, and how far a pose is from the nearest of them.

    poses: (N, 4, 4) camera-to-world (or (N, 3, 4)). The distance of a pose is the minimum over the
    mapping cameras of ``|C - C_n| + angle(R, R_n) * metres_per_degree``: 1 m of displacement
    counts as much as 30 degrees of turn by default."""

    def __init__(self, poses: np.ndarray, metres_per_degree: float = 1.0 / 30.0):
        p = np.asarray(poses, dtype=np.float64)
        if p.ndim != 3 or p.shape[1:] not in ((4, 4), (3, 4)) or len(p) == 0:
            raise ValueError(f"mapping poses must be (N, 4, 4) or (N, 3, 4) with N >= 1, got {p.shape}")
        finite = np.all(np.isfinite(p[:, :3, :4]), axis=(1, 2))
        if not finite.any():
            raise ValueError("no mapping pose is finite")
        self.rotations = p[finite, :3, :3]
        self.centres = p[finite, :3, 3]
        self.metres_per_degree = float(metres_per_degree)

    def __len__(self) -> int:
        return len(self.centres)

    def distance(self, camera_to_world: np.ndarray) -> float:
        """Distance (m-equivalent, see the class) of a (4, 4) pose from the nearest mapping camera."""
        T = np.asarray(camera_to_world, dtype=np.float64)
        d_pos = np.linalg.norm(self.centres - T[:3, 3], axis=1)
        cos = np.clip((np.einsum("nij,ij->n", self.rotations, T[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
        return float(np.min(d_pos + np.degrees(np.arccos(cos)) * self.metres_per_degree))


def cell_texture(image: torch.Tensor, cells: tuple[int, int], stride: int, scale: float = 1.0) -> np.ndarray:
    """Texture around each network output cell: (h, w) float32, the mean gradient magnitude.

    image: the encoder input (1, 1, H, W) (``preprocess_image``: normalised grey); ``scale`` turns its
    values into grey levels (``STD * 255``). The gradient magnitude (central differences, grey levels
    per px; 0 on the image's outermost pixels) is averaged over each cell's stride x stride block, then
    over the 3 x 3 cells around it (a window about 3 strides wide, near the encoder's receptive field).
    Cells the image does not cover are 0. About 0.8 ms at 480x640 on one core."""
    if image.ndim != 4 or image.shape[:2] != (1, 1):
        raise ValueError(f"image must be (1, 1, H, W), got {tuple(image.shape)}")
    h, w = int(cells[0]), int(cells[1])
    x = image.detach()[0, 0].float().cpu()
    gx = x[1:-1, 2:] - x[1:-1, :-2]  # (the one-pixel border has no central difference: 0 there)
    gy = x[2:, 1:-1] - x[:-2, 1:-1]
    mag = F.pad(gx.mul_(gx).add_(gy.mul_(gy)).sqrt_().mul_(0.5 * float(scale))[None, None], (1, 1, 1, 1))
    pooled = F.avg_pool2d(mag, stride, stride)[..., :h, :w]
    pooled = F.pad(pooled, (0, w - pooled.shape[-1], 0, h - pooled.shape[-2]))
    return F.avg_pool2d(pooled, 3, 1, 1, count_include_pad=False)[0, 0].numpy()


def _skew(v: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3, 3) cross-product matrices."""
    z = np.zeros(len(v))
    return np.stack([np.stack([z, -v[:, 2], v[:, 1]], -1), np.stack([v[:, 2], z, -v[:, 0]], -1),
                     np.stack([-v[:, 1], v[:, 0], z], -1)], 1)


def pose_jacobians(camera_points: np.ndarray, K: np.ndarray, rotation_cam_to_world: np.ndarray) -> np.ndarray:
    """(N, 2, 6) Jacobians of the projections of (N, 3) camera-frame points with respect to the pose
    error (dC map frame, r about the map axes); K (3, 3), R (3, 3) camera-to-world."""
    c = np.asarray(camera_points, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"camera_points must be (N, 3), got {c.shape}")
    Rt = np.asarray(rotation_cam_to_world, dtype=np.float64).T
    x, y, z = c[:, 0], c[:, 1], c[:, 2]
    # J_u = a dc_0 + b dc_2 and J_v = e dc_1 + d dc_2 with the rows dc_i = [-Rt_i, ([c]x Rt)_i]; every
    # 3-block is then (coefficients) @ Rt, so J is one (4N, 3) @ (3, 3) product (the batched
    # (N, 2, 3) @ (N, 3, 6) matmul it replaces took 1.7 ms for 3000 points)
    a, e = K[0, 0] / z, K[1, 1] / z
    b, d = -a * x / z, -e * y / z
    zero = np.zeros_like(z)
    coef = np.stack([np.stack([-a, zero, -b], 1), np.stack([-b * y, -a * z + b * x, a * y], 1),
                     np.stack([zero, -e, -d], 1), np.stack([e * z - d * y, d * x, -e * x], 1)], 1)  # (N, 4, 3)
    return (coef.reshape(-1, 3) @ Rt).reshape(len(c), 2, 6)


def reprojection_statistics(scene_coordinates: np.ndarray, camera_to_world: np.ndarray, K: np.ndarray,
                            threshold: float, stride: int = 8, texture: np.ndarray | None = None) -> dict:
    """Residuals of the network's cells under a pose.

    scene_coordinates: (3, h, w) world points of the cells (``geometry.cell_centres``); K (3, 3)
    at network resolution. Cells with non-finite points or points behind the camera are not valid;
    inliers have a reprojection error < ``threshold`` px. Returns a dict: ``inliers`` (int),
    ``valid`` (int), ``mean_error_px`` and ``median_depth_m`` over the inliers (nan without any),
    ``pixels`` (N, 2) and ``camera_points`` (N, 3) of the inliers, ``errors`` (N,) px, and with
    ``texture`` (h, w) (``pose_covariance.cell_texture``) ``texture`` (N,) of the inliers.
    """
    sc = np.asarray(scene_coordinates, dtype=np.float64)
    if sc.ndim != 3 or sc.shape[0] != 3:
        raise ValueError(f"scene_coordinates must be (3, h, w), got {sc.shape}")
    if texture is not None and np.shape(texture) != sc.shape[1:]:
        raise ValueError(f"texture must be (h, w) = {sc.shape[1:]}, got {np.shape(texture)}")
    cam = transform_points(invert_pose(camera_to_world), sc.reshape(3, -1).T)
    px = cell_centres(sc.shape[1], sc.shape[2], stride).reshape(-1, 2)
    valid = np.all(np.isfinite(cam), axis=1) & (cam[:, 2] > 1e-6)
    cam, px = cam[valid], px[valid]
    proj, _ = project_camera_points(cam, K)
    err = np.hypot(*(proj - px).T)
    inl = err < float(threshold)
    n = int(inl.sum())
    empty = n == 0
    out = {"inliers": n, "valid": int(valid.sum()),
           "mean_error_px": float("nan") if empty else float(err[inl].mean()),
           "median_depth_m": float("nan") if empty else float(np.median(cam[inl, 2])),
           "pixels": px[inl], "camera_points": cam[inl], "errors": err[inl]}
    if texture is not None:
        out["texture"] = np.asarray(texture, dtype=np.float64).reshape(-1)[valid][inl]
    return out


def covariance_from_residuals(stats: dict, num_cells: int, K: np.ndarray, camera_to_world: np.ndarray,
                              calibration: CovarianceCalibration = CovarianceCalibration(),
                              novelty_m: float | None = None) -> np.ndarray:
    """(36,) covariance of a pose (see the module docstring).

    stats: ``reprojection_statistics`` of the pose (``camera_points`` (N, 3),
    ``errors`` (N,) px of the inliers, optionally ``texture`` (N,) their ``cell_texture``); num_cells:
    cells of the network output; K (3, 3) at network resolution; camera_to_world (4, 4); novelty_m:
    the pose's ``MappingViews.distance`` (None or nan: ``calibration.unknown_novelty_m``). Needs at least 3
    inliers (ValueError otherwise).
    """
    cam = np.asarray(stats["camera_points"], dtype=np.float64)
    err = np.asarray(stats["errors"], dtype=np.float64)
    n = len(cam)
    if n < 3 or len(err) != n:
        raise ValueError(f"need >= 3 inliers with one error each, got {n} points and {len(err)} errors")
    if num_cells < n:
        raise ValueError(f"num_cells ({num_cells}) must be >= the inlier count ({n})")
    c = calibration
    weights = np.ones(n)
    if stats.get("texture") is not None and c.texture_full_weight > 0:
        texture = np.asarray(stats["texture"], dtype=np.float64)
        if texture.shape != (n,):
            raise ValueError(f"texture must be ({n},), one value per inlier, got {texture.shape}")
        weights = np.minimum(np.nan_to_num(texture, nan=0.0) / c.texture_full_weight, 1.0) ** 2
    J = pose_jacobians(cam, K, np.asarray(camera_to_world)[:3, :3]).reshape(-1, 6)
    H = (J * np.repeat(weights, 2)[:, None]).T @ J  # sum_i w_i J_i^T J_i (an einsum takes 6x as long)
    s2 = max(float(np.sum(err ** 2)) / (2.0 * max(n - 6, 1)), c.min_residual_px ** 2)
    ratio = max(n / float(num_cells), c.min_inlier_ratio)
    novelty = c.unknown_novelty_m if novelty_m is None or not math.isfinite(novelty_m) else max(novelty_m, 0.0)
    scale = s2 * n / c.effective_observations / ratio * (1.0 + (novelty / c.novelty_scale_m) ** 2)
    try:
        cov = scale * np.linalg.inv(H + 1e-12 * max(np.trace(H), 1e-300) * np.eye(6))
    except np.linalg.LinAlgError:
        cov = np.diag([1e6] * 3 + [math.pi ** 2] * 3)
    cov = 0.5 * (cov + cov.T)
    floors = [c.min_position_std_m ** 2] * 3 + [c.min_rotation_std_rad ** 2] * 3
    cov += np.diag(floors)
    if not np.all(np.isfinite(cov)):
        cov = np.diag([1e6] * 3 + [math.pi ** 2] * 3)
    return cov.reshape(36)


def transform_pose_covariance(covariance: np.ndarray, lever_arm_world: np.ndarray) -> np.ndarray:
    """(36,) covariance of a frame B rigidly attached to the camera, from the camera's (36,).

    lever_arm_world: (3,) the vector from the camera centre to B's origin, in the map frame
    (``R_map_camera @ t_camera_base``). A rotation r about the map axes moves B's origin by
    r x lever, so ``cov_B = A cov A^T`` with ``A = [[I, -[lever]x], [0, I]]``.
    """
    cov = np.asarray(covariance, dtype=np.float64).reshape(6, 6)
    lever = np.asarray(lever_arm_world, dtype=np.float64).reshape(1, 3)
    if not (np.all(np.isfinite(cov)) and np.all(np.isfinite(lever))):
        raise ValueError("covariance and lever arm must be finite")
    A = np.eye(6)
    A[:3, 3:] = -_skew(lever)[0]
    out = A @ cov @ A.T
    return (0.5 * (out + out.T)).reshape(36)


def pose_error_vector(estimate_c2w: np.ndarray, truth_c2w: np.ndarray) -> np.ndarray:
    """(6,) error of a camera-to-world estimate in this module's parametrisation:
    (C_true - C_est, r) with R_true = Exp(r) R_est (r as a rotation vector, map axes)."""
    E, T = np.asarray(estimate_c2w, dtype=np.float64), np.asarray(truth_c2w, dtype=np.float64)
    dR = T[:3, :3] @ E[:3, :3].T
    angle = math.acos(max(-1.0, min(1.0, (np.trace(dR) - 1.0) / 2.0)))
    axis = np.array([dR[2, 1] - dR[1, 2], dR[0, 2] - dR[2, 0], dR[1, 0] - dR[0, 1]])
    norm = np.linalg.norm(axis)
    r = np.zeros(3) if norm < 1e-12 else axis / norm * angle
    return np.concatenate([T[:3, 3] - E[:3, 3], r])


def mahalanobis_squared(error: np.ndarray, covariance: np.ndarray) -> float:
    """e^T C^-1 e for a (6,) error and a (36,) or (6, 6) covariance."""
    C = np.asarray(covariance, dtype=np.float64).reshape(6, 6)
    e = np.asarray(error, dtype=np.float64).reshape(6)
    return float(e @ np.linalg.solve(C, e))
