// Float32 SIMD kernels for the two hot loops: the inlier count on the pre-score subset and the
// DSAC* soft score over all cells. Cells are stored structure-of-arrays, centred on their mean
// (so float32 keeps sub-millimetre precision for large world coordinates) and padded with NaN
// points to a multiple of kLanes (NaN cells count as "behind the camera": they add nothing).
// The kernels use GCC/Clang vector extensions and are compiled twice (AVX2 and baseline x86-64),
// picked on the first call by a CPU check, so the extension runs on any x86-64 CPU. The environment
// variable DSAC_NATIVE_ISA=baseline forces the baseline copies (read once per process).
#pragma once

#include <vector>

#include "dsac_native/types.hpp"

namespace dsac_native {

constexpr int kLanes = 16;  // floats per kernel step (two AVX2 registers)

struct CellsF {
  std::vector<float> x, y, z, u, v;  // each padded_size() long
  Eigen::Vector3d centre = Eigen::Vector3d::Zero();  // subtracted from the points
  int size = 0;
  int padded_size() const { return static_cast<int>(x.size()); }
};

// points (N, 3) and pixels (N, 2) row-major; `indices` selects cells (empty: all N).
CellsF make_cells(const double* pixels, const double* points, int n, const std::vector<int>& indices,
                  const Eigen::Vector3d& centre);

// World-to-camera pose for centred points: R and t' = R c + t, row-major float, plus intrinsics.
struct PoseF {
  float m[12];  // r00 r01 r02 t0 / r10 r11 r12 t1 / r20 r21 r22 t2
  float fx, fy, cx, cy;
};
PoseF make_pose_f(const Pose& pose, const Eigen::Vector3d& centre, const Intrinsics& K);

// Cells in [begin, end) (multiples of kLanes, end <= padded_size()) with squared reprojection
// error < thr2 and depth > kMinDepth.
int count_inliers_f(const CellsF& cells, const PoseF& pose, float thr2, int begin, int end);

struct SoftScoreParams {
  float threshold, beta, emax2, clamp_term;
};
// Sum over cells in front of the camera of 1 - sigmoid(beta (e - threshold)); errors at or beyond
// sqrt(emax2) contribute clamp_term; every term is < 1. Cells [begin, end) (multiples of kLanes,
// end <= padded_size()). Not scaled by alpha / num_cells.
double soft_score_sum_f(const CellsF& cells, const PoseF& pose, const SoftScoreParams& p, int begin, int end);

// "avx2" or "baseline": the kernel copies this process uses.
const char* kernel_isa();

}  // namespace dsac_native
