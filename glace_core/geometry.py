"""Rigid-pose and camera geometry in numpy float64.

Conventions (DEVELOPERS.md): poses are camera-to-world 4×4 in OpenCV optical axes (x right,
y down, z forward); pixels are continuous coordinates with the origin at the top-left corner, so
pixel (row i, column j) has its centre at (u, v) = (j + 0.5, i + 0.5); K is 3×3.
"""
from __future__ import annotations

import math

import numpy as np

#: (translation in metres, rotation in degrees, key) of the accuracy thresholds glace-eval reports.
ACCURACY_THRESHOLDS = ((0.10, 10.0, "pct_10cm_10deg"), (0.10, 5.0, "pct_10cm_5deg"), (0.05, 5.0, "pct_5cm_5deg"),
                       (0.02, 2.0, "pct_2cm_2deg"), (0.01, 1.0, "pct_1cm_1deg"))


def _as_pose(T, name: str = "pose") -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"{name} must be a (..., 4, 4) matrix, got shape {T.shape}")
    return T


def invert_pose(T) -> np.ndarray:
    """Inverse of rigid transform(s) ``T`` (..., 4, 4): [Rᵀ | −Rᵀt]. Returns float64 (..., 4, 4)."""
    T = _as_pose(T)
    R, t = T[..., :3, :3], T[..., :3, 3]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def validate_pose(T, name: str = "pose", atol: float = 1e-3) -> np.ndarray:
    """Check that ``T`` is a finite rigid 4×4 transform; return it as float64 (4, 4).

    Raises ValueError naming ``name`` when the shape is not (4, 4), a value is not finite, the last
    row is not [0 0 0 1], RᵀR deviates from I by more than ``atol`` or det(R) from +1 by more than
    ``atol``.
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name}: expected a (4, 4) pose, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name}: pose contains NaN or infinite values")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=atol):
        raise ValueError(f"{name}: last row of the pose must be [0 0 0 1], got {T[3].tolist()}")
    R = T[:3, :3]
    ortho = float(np.abs(R.T @ R - np.eye(3)).max())
    if ortho > atol:
        raise ValueError(f"{name}: rotation is not orthonormal (max |RᵀR − I| = {ortho:.3g} > {atol:g})")
    det = float(np.linalg.det(R))
    if abs(det - 1.0) > atol:
        raise ValueError(f"{name}: rotation determinant is {det:.6g}, expected +1 (a reflection or a scaled matrix)")
    return T


def rotation_matrix_to_quaternion(R) -> np.ndarray:
    """Unit quaternion (qw, qx, qy, qz), float64 (4,), of the rotation matrix ``R`` (3, 3).

    Shepperd's method: the quaternion component with the largest magnitude is computed from the
    diagonal and the others from off-diagonal sums, so identity and 180° rotations are exact.
    Canonical sign: qw ≥ 0, and for qw == 0 the first non-zero of (qx, qy, qz) is positive.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"rotation matrix must be (3, 3), got shape {R.shape}")
    if not np.all(np.isfinite(R)):
        raise ValueError("rotation matrix contains NaN or infinite values")
    m00, m11, m22 = R[0, 0], R[1, 1], R[2, 2]
    trace = m00 + m11 + m22
    # 4·q_k² for k = w, x, y, z; pick the largest to avoid dividing by a small number
    candidates = (1.0 + trace, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22)
    k = int(np.argmax(candidates))
    s = 2.0 * math.sqrt(max(candidates[k], 0.0))  # = 4·|q_k|
    if k == 0:
        q = (s / 4.0, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s)
    elif k == 1:
        q = ((R[2, 1] - R[1, 2]) / s, s / 4.0, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s)
    elif k == 2:
        q = ((R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4.0, (R[1, 2] + R[2, 1]) / s)
    else:
        q = ((R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4.0)
    q = np.asarray(q, dtype=np.float64)
    q /= np.linalg.norm(q)
    if abs(q[0]) <= 1e-12:  # a half turn: the sign of the vector part decides
        q[0] = 0.0
        first = q[np.flatnonzero(np.abs(q) > 1e-12)[0]]
        return -q if first < 0 else q
    return -q if q[0] < 0 else q


def quaternion_to_rotation_matrix(q) -> np.ndarray:
    """Rotation matrix (3, 3) float64 of the quaternion ``q`` = (qw, qx, qy, qz) (normalised here)."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (4,):
        raise ValueError(f"quaternion must have shape (4,) as (qw, qx, qy, qz), got {q.shape}")
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"quaternion {q.tolist()} has zero or non-finite norm")
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rotation_angle_deg(R) -> np.ndarray | float:
    """Angle in degrees of rotation matrix/matrices ``R`` (..., 3, 3), in [0, 180].

    Uses atan2(|axis·sinθ|, cosθ), accurate at 0° and 180° (arccos of the trace is not)."""
    R = np.asarray(R, dtype=np.float64)
    cos = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    skew = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = np.clip(np.linalg.norm(skew, axis=-1) / 2.0, 0.0, 1.0)
    angle = np.degrees(np.arctan2(sin, cos))
    return float(angle) if angle.ndim == 0 else angle


def pose_errors(est_c2w, gt_c2w) -> tuple:
    """(t_err_m, r_err_deg) between estimated and ground-truth camera-to-world pose(s) (..., 4, 4).

    t_err = ‖t_gt − t_est‖ on the camera-to-world translations (camera centres); r_err = angle of
    R_est·R_gtᵀ in degrees. Floats for single poses, arrays (...,) for stacks.
    """
    est, gt = _as_pose(est_c2w, "est_c2w"), _as_pose(gt_c2w, "gt_c2w")
    t_err = np.linalg.norm(gt[..., :3, 3] - est[..., :3, 3], axis=-1)
    r_err = rotation_angle_deg(est[..., :3, :3] @ np.swapaxes(gt[..., :3, :3], -1, -2))
    if np.ndim(t_err) == 0:
        return float(t_err), float(r_err)
    return t_err, r_err


def rotation_z(angle_deg: float) -> np.ndarray:
    """4×4 rotation by ``angle_deg`` about the camera's optical (z) axis.

    The in-plane rotation augmentation updates the camera-to-world pose as ``pose @ rotation_z(a)``.
    """
    a = math.radians(float(angle_deg))
    c, s = math.cos(a), math.sin(a)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    return T


def rotation_y(angle_deg: float) -> np.ndarray:
    """4×4 rotation by ``angle_deg`` about the camera's y (down) axis: a turn to the right for a
    positive angle (``[[c, 0, s], [0, 1, 0], [-s, 0, c]]``). The novel views of map training turn the
    camera as ``pose @ rotation_y(a)``.
    """
    a = math.radians(float(angle_deg))
    c, s = math.cos(a), math.sin(a)
    T = np.eye(4)
    T[0, 0], T[0, 2], T[2, 0], T[2, 2] = c, s, -s, c
    return T


def check_K(K, name: str = "K", image_size: tuple[int, int] | None = None) -> np.ndarray:
    """``K`` as a float64 (3, 3) intrinsics matrix, checked: the one intrinsics check of glace-ros.

    Raises ValueError naming ``name`` when the shape is not (3, 3), a value is NaN or infinite, a
    focal length (fx = K[0, 0], fy = K[1, 1]) is not positive, or the last row is not [0 0 1].
    With ``image_size`` (H, W) it also refuses values implausible for that image: a focal length
    outside [0.02, 100] x the longer side (a field of view outside about 0.6 .. 175 degrees) or a
    principal point more than half the image outside it.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{name} must be a (3, 3) intrinsics matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name} contains NaN or infinite values: {K.tolist()}")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"{name} must have positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"{name}: last row must be [0 0 1], got {K[2].tolist()}")
    if image_size is not None:
        h, w = (int(v) for v in image_size)
        low, high = 0.02 * max(h, w), 100.0 * max(h, w)
        for label, f in (("fx", K[0, 0]), ("fy", K[1, 1])):
            if not low <= f <= high:
                raise ValueError(f"{name}: {label} = {f:g} px is implausible for a {w}x{h} image (expected "
                                 f"{low:g} .. {high:g} px, a field of view between about 0.6 and 175 degrees)")
        for label, c, size in (("cx", K[0, 2], w), ("cy", K[1, 2], h)):
            if not -0.5 * size <= c <= 1.5 * size:
                raise ValueError(f"{name}: {label} = {c:g} px is implausible for a {w}x{h} image (the principal "
                                 f"point must lie within half an image of it: {-0.5 * size:g} .. {1.5 * size:g})")
    return K


def focal_K(focal: float, height: int, width: int) -> np.ndarray:
    """K (3, 3) float64 of a single focal length (pixels) with the principal point at the image
    centre (W/2, H/2) of an H × W image (the DSAC* one-number calibration)."""
    focal = float(focal)
    if not (math.isfinite(focal) and focal > 0):
        raise ValueError(f"focal length must be a positive number of pixels, got {focal}")
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def transform_points(T, points) -> np.ndarray:
    """(N, 3) float64 points mapped by a (4, 4) rigid transform: ``points @ R.T + t``."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {P.shape}")
    T = _as_pose(T, "transform")
    if T.shape != (4, 4):
        raise ValueError(f"transform must be (4, 4), got shape {T.shape}")
    return P @ T[:3, :3].T + T[:3, 3]


def project_camera_points(points_cam, K) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of camera-frame points (N, 3) with K (3, 3): (pixels (N, 2) as continuous
    (u, v) in the corner-origin convention, depth (N,) = z). Points with depth <= 0 get NaN pixels."""
    cam = np.asarray(points_cam, dtype=np.float64)
    if cam.ndim != 2 or cam.shape[1] != 3:
        raise ValueError(f"points_cam must be (N, 3), got shape {cam.shape}")
    K = check_K(K)
    depth = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = cam @ K.T
        px = uvw[:, :2] / uvw[:, 2:3]
    px[~(depth > 0)] = np.nan
    return px, depth


def project(points_world, world_to_cam, K) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (N, 3) with a world-to-camera pose (4, 4) and K (3, 3).

    Returns (pixels (N, 2) as continuous (u, v) in the corner-origin convention, depth (N,) = z in the
    camera). Points with depth ≤ 0 get NaN pixels; callers filter on depth.
    """
    P = np.asarray(points_world, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise ValueError(f"points_world must be (N, 3), got shape {P.shape}")
    return project_camera_points(transform_points(world_to_cam, P), K)


def pixel_centres(height: int, width: int) -> np.ndarray:
    """(H, W, 2) continuous (u, v) = (j + 0.5, i + 0.5) of every pixel centre."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64) + 0.5, np.arange(height, dtype=np.float64) + 0.5)
    return np.stack([u, v], axis=-1)


def cell_centres(h: int, w: int, stride: int = 8) -> np.ndarray:
    """(h, w, 2) float64 pixel (u, v) of the centre of every cell of a stride-``stride`` output grid.

    Cell (x, y) covers pixels [stride·x, stride·(x + 1)) × [stride·y, stride·(y + 1)) of the network
    input, so its centre is (u, v) = (stride·x + stride/2, stride·y + stride/2): (8x + 4, 8y + 4) for
    the encoders' stride 8 (the reference's convention). ``out[y, x] = (u, v)``.
    """
    h, w, stride = int(h), int(w), int(stride)
    if h < 0 or w < 0:
        raise ValueError(f"cell grid size must be non-negative, got h={h}, w={w}")
    if stride <= 0:
        raise ValueError(f"stride must be a positive number of pixels, got {stride}")
    u, v = np.meshgrid(stride * np.arange(w, dtype=np.float64) + stride / 2.0,
                       stride * np.arange(h, dtype=np.float64) + stride / 2.0)
    return np.stack([u, v], axis=-1)


def backproject(depth, K, cam_to_world) -> np.ndarray:
    """World points (H, W, 3) float64 of a z-depth image (H, W) in metres, K (3, 3), pose (4, 4).

    Pixel (i, j) is taken at its centre (j + 0.5, i + 0.5). Pixels with depth ≤ 0 or non-finite
    depth (invalid) are NaN.
    """
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    K = check_K(K)
    T = _as_pose(cam_to_world, "cam_to_world")
    if T.shape != (4, 4):
        raise ValueError(f"cam_to_world must be (4, 4), got shape {T.shape}")
    uv = pixel_centres(*d.shape)
    ones = np.ones(d.shape + (1,))
    rays = np.concatenate([uv, ones], axis=-1) @ np.linalg.inv(K).T  # (H, W, 3) with z = 1 (no skew: z stays 1)
    cam = rays / rays[..., 2:3] * d[..., None]
    world = cam @ T[:3, :3].T + T[:3, 3]
    world[~(np.isfinite(d) & (d > 0))] = np.nan
    return world


def accuracy_table(t_errs, r_errs) -> dict[str, float]:
    """glace-eval's accuracy summary of per-frame errors (N,) in metres and degrees.

    Returns ``pct_10cm_10deg``, ``pct_10cm_5deg``, ``pct_5cm_5deg``, ``pct_2cm_2deg``, ``pct_1cm_1deg`` (percent of frames
    with t < threshold AND r < threshold, strict), ``median_t_cm`` and ``median_r_deg`` (the element at
    index n // 2 of the sorted errors, as the reference). Failed frames should carry inf errors;
    NaN counts as not within any threshold.
    """
    t = np.asarray(t_errs, dtype=np.float64).reshape(-1)
    r = np.asarray(r_errs, dtype=np.float64).reshape(-1)
    if t.shape != r.shape:
        raise ValueError(f"t_errs and r_errs must have the same length, got {t.size} and {r.size}")
    if t.size == 0:
        raise ValueError("accuracy_table needs at least one frame, got none")
    table = {key: float(100.0 * np.mean((t < t_max) & (r < r_max))) for t_max, r_max, key in ACCURACY_THRESHOLDS}
    mid = t.size // 2
    table["median_t_cm"] = float(np.sort(t)[mid] * 100.0)
    table["median_r_deg"] = float(np.sort(r)[mid])
    return table
