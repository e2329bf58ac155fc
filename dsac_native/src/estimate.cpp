// Public entry points: turn a scene-coordinate grid or a correspondence list into finite
// correspondences and run the RANSAC loop.
#include <cmath>
#include <stdexcept>

#include "dsac_native/dsac_native.hpp"

namespace dsac_native {

Result estimate_pose_grid(const float* sc, int height, int width, int subsampling, const Intrinsics& K,
                          const Options& options) {
  validate(K, options);
  if (subsampling < 1) throw std::invalid_argument("subsampling must be >= 1");
  Correspondences data;
  const std::size_t plane = static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
  data.num_cells = static_cast<int>(plane);
  data.pixels.reserve(2 * plane);
  data.points.reserve(3 * plane);
  const double half = 0.5 * subsampling;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const std::size_t o = static_cast<std::size_t>(y) * width + x;
      const double X = sc[o], Y = sc[plane + o], Z = sc[2 * plane + o];
      if (!std::isfinite(X) || !std::isfinite(Y) || !std::isfinite(Z)) continue;
      data.pixels.push_back(subsampling * x + half);
      data.pixels.push_back(subsampling * y + half);
      data.points.push_back(X);
      data.points.push_back(Y);
      data.points.push_back(Z);
    }
  }
  return ransac_pose(data, K, options);
}

Result estimate_pose_correspondences(const double* pixels, const double* points, int n, const Intrinsics& K,
                                     const Options& options) {
  validate(K, options);
  Correspondences data;
  data.num_cells = n;
  for (int i = 0; i < n; ++i) {
    bool finite = std::isfinite(pixels[2 * i]) && std::isfinite(pixels[2 * i + 1]);
    for (int k = 0; k < 3; ++k) finite = finite && std::isfinite(points[3 * i + k]);
    if (!finite) continue;
    data.pixels.insert(data.pixels.end(), pixels + 2 * i, pixels + 2 * i + 2);
    data.points.insert(data.points.end(), points + 3 * i, points + 3 * i + 3);
  }
  return ransac_pose(data, K, options);
}

}  // namespace dsac_native
