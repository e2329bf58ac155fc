// Public entry points of dsac_native.
#pragma once

#include "dsac_native/p3p.hpp"
#include "dsac_native/ransac.hpp"
#include "dsac_native/refine.hpp"
#include "dsac_native/types.hpp"

namespace dsac_native {

// scene_coordinates: float32 (3, H, W) C-order. Cell (x, y) is pixel
// (s*x + s/2, s*y + s/2) with s = subsampling. Non-finite cells are skipped.
Result estimate_pose_grid(const float* scene_coordinates, int height, int width, int subsampling,
                          const Intrinsics& K, const Options& options);

// pixels (N, 2), points (N, 3) row-major; rows with non-finite values are skipped.
Result estimate_pose_correspondences(const double* pixels, const double* points, int n,
                                     const Intrinsics& K, const Options& options);

}  // namespace dsac_native
