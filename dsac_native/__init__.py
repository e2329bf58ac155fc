"""dsac_native: DSAC*-style RANSAC camera pose solver in C++17 (pybind11).

Poses: ``Result.camera_to_world`` is a float64 (4, 4) camera-to-world matrix in OpenCV optical
axes (x right, y down, z forward), the repository-wide convention. Pixels are continuous with the
origin at the image's top-left corner; grid cell (x, y) is pixel ``(s*x + s/2, s*y + s/2)`` for
``subsampling`` s.

Entry points:

- ``estimate_pose(scene_coordinates (3, H, W) float32, fx, fy, cx, cy, *, subsampling=8, ...)``
- ``estimate_pose_from_correspondences(pixels (N, 2), points (N, 3), fx, fy, cx, cy, *, ...)``
- ``row_column_maxima(similarity (N, M) float32)`` and ``local_maxima(heat (H, W) float32, *, radius,
  threshold, max_count)``: the reductions of keypoint matching and detection (``glace_core.keypoint_matching``,
  ``glace_core.keyframes``), which torch runs slowly on CPU.
- ``estimate_pose_with_options`` / ``estimate_pose_from_correspondences_with_options`` take an
  :class:`Options` object instead of keyword arguments.

Bad shapes, dtypes, non-contiguous arrays, non-positive or non-finite focal lengths and invalid
options raise ``ValueError``. Degenerate data (fewer than 4 finite cells, collinear points, no
hypothesis) returns ``success=False`` with an identity pose. The GIL is released while solving.

``kernel_isa()`` says which copies of the scoring kernels run: ``"avx2"`` where the CPU has it,
else ``"baseline"``; ``DSAC_NATIVE_ISA=baseline`` in the environment forces the baseline copies.
"""
from ._dsac_native import (  # noqa: F401
    Options,
    Result,
    Stats,
    estimate_pose,
    estimate_pose_from_correspondences,
    estimate_pose_from_correspondences_with_options,
    estimate_pose_with_options,
    kernel_isa,
    local_maxima,
    row_column_maxima,
)

__all__ = [
    "Options",
    "Result",
    "Stats",
    "estimate_pose",
    "estimate_pose_from_correspondences",
    "estimate_pose_from_correspondences_with_options",
    "estimate_pose_with_options",
    "local_maxima",
    "row_column_maxima",
    "kernel_isa",
]
