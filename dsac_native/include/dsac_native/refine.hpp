// Non-linear refinement: Levenberg-Marquardt on the pixel reprojection error (fx, fy, cx, cy).
#pragma once

#include <vector>

#include "dsac_native/types.hpp"

namespace dsac_native {

// pixels (N, 2) and points (N, 3), row-major; `indices` selects the correspondences to fit.
// Updates `pose` in place; returns the final sum of squared errors (px^2).
double refine_pose(const double* pixels, const double* points, const std::vector<int>& indices,
                   const Intrinsics& K, int max_iterations, Pose* pose);

}  // namespace dsac_native
