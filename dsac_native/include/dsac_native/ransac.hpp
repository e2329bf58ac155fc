// The DSAC*-style RANSAC loop over 2D-3D correspondences.
#pragma once

#include <vector>

#include "dsac_native/types.hpp"

namespace dsac_native {

struct Correspondences {
  std::vector<double> pixels;  // (N, 2) row-major, finite
  std::vector<double> points;  // (N, 3) row-major, finite
  int num_cells = 0;           // cells before dropping non-finite ones (soft-score scaling)
  int size() const { return static_cast<int>(pixels.size() / 2); }
};

// Throws std::invalid_argument for bad intrinsics or options.
void validate(const Intrinsics& K, const Options& options);

// Sample, score, pick the best hypothesis, refine. Never throws for degenerate data: success=false.
Result ransac_pose(const Correspondences& data, const Intrinsics& K, const Options& options);

}  // namespace dsac_native
