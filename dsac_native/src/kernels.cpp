// Float32 kernels (see kernels.hpp). Vector-extension code: `vf` is 8 floats; each loop step
// handles two of them (kLanes = 16) to hide latency. exp() and sqrt() are branch-free
// polynomial / Newton approximations (relative error ~1e-7, below float32 rounding of the sum).
#include "dsac_native/kernels.hpp"
#include "dsac_native/simd.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace dsac_native {
namespace {

using namespace simd;
static_assert(kLanes == 2 * kW, "two vectors per step");

// exp(a) for a in [-87, 87] (Cody-Waite reduction, degree-6 polynomial).
DSAC_INLINE vf vexp(vf a) {
  const vf magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const vf k = (a * splat(1.44269504f) + magic) - magic;
  const vf r = (a - k * splat(0.693145752f)) - k * splat(1.42860677e-6f);
  vf p = splat(1.0f / 720.0f);
  p = p * r + splat(1.0f / 120.0f);
  p = p * r + splat(1.0f / 24.0f);
  p = p * r + splat(1.0f / 6.0f);
  p = p * r + splat(0.5f);
  p = p * r + splat(1.0f);
  p = p * r + splat(1.0f);
  const vi e = (__builtin_convertvector(k, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &e, sizeof(scale));
  return p * scale;
}

// sqrt(x) for x > 0: bit-trick reciprocal square root and two Newton steps.
DSAC_INLINE vf vsqrt(vf x) {
  vi i;
  std::memcpy(&i, &x, sizeof(i));
  i = 0x5f3759df - (i >> 1);
  vf y;
  std::memcpy(&y, &i, sizeof(y));
  const vf h = splat(0.5f) * x;
  for (int it = 0; it < 2; ++it) y = y * (splat(1.5f) - h * y * y);  // rel. error < 5e-6
  return x * y;
}

struct Projected {
  vf e2;
  vi front;  // -1 where depth > kMinDepth (false for NaN)
};

DSAC_INLINE Projected project(const CellsF& c, const PoseF& P, int i) {
  const vf X = load(&c.x[i]), Y = load(&c.y[i]), Z = load(&c.z[i]);
  const vf px = splat(P.m[0]) * X + splat(P.m[1]) * Y + splat(P.m[2]) * Z + splat(P.m[3]);
  const vf py = splat(P.m[4]) * X + splat(P.m[5]) * Y + splat(P.m[6]) * Z + splat(P.m[7]);
  const vf pz = splat(P.m[8]) * X + splat(P.m[9]) * Y + splat(P.m[10]) * Z + splat(P.m[11]);
  Projected out;
  out.front = pz > splat(static_cast<float>(kMinDepth));
  const vf iz = splat(1.0f) / (out.front ? pz : splat(1.0f));
  const vf du = splat(P.fx) * px * iz + splat(P.cx) - load(&c.u[i]);
  const vf dv = splat(P.fy) * py * iz + splat(P.cy) - load(&c.v[i]);
  out.e2 = du * du + dv * dv;
  return out;
}

DSAC_INLINE vi count_step(const CellsF& c, const PoseF& P, int i, vf thr2) {
  const Projected q = project(c, P, i);
  return q.front & (q.e2 < thr2);  // -1 per inlier
}

DSAC_INLINE vf soft_step(const CellsF& c, const PoseF& P, int i, const SoftScoreParams& s) {
  const Projected q = project(c, P, i);
  const vf e = vsqrt(q.e2 > splat(1e-20f) ? q.e2 : splat(1e-20f));
  vf a = splat(s.beta) * (e - splat(s.threshold));
  a = a < splat(40.0f) ? a : splat(40.0f);
  const vf term = splat(1.0f) / (splat(1.0f) + vexp(a));
  const vf zero = splat(0.0f);
  const vf clamped = q.e2 < splat(s.emax2) ? term : splat(s.clamp_term);
  return q.front ? clamped : zero;
}

DSAC_INLINE int count_body(const CellsF& c, const PoseF& P, float thr2, int begin, int end) {
  vi acc0 = vi{0, 0, 0, 0, 0, 0, 0, 0}, acc1 = acc0;
  const vf t2 = splat(thr2);
  for (int i = begin; i < end; i += kLanes) {
    acc0 -= count_step(c, P, i, t2);
    acc1 -= count_step(c, P, i + kW, t2);
  }
  int total = 0;
  for (int l = 0; l < kW; ++l) total += acc0[l] + acc1[l];
  return total;
}

DSAC_INLINE double soft_body(const CellsF& c, const PoseF& P, const SoftScoreParams& s, int begin, int n) {
  // float lanes summed per block of 1024 cells into a double, so long grids keep precision
  double total = 0.0;
  for (int block = begin; block < n; block += 1024) {
    vf acc0 = splat(0.0f), acc1 = acc0;
    const int end = block + 1024 < n ? block + 1024 : n;
    for (int i = block; i < end; i += kLanes) {
      acc0 += soft_step(c, P, i, s);
      acc1 += soft_step(c, P, i + kW, s);
    }
    const vf acc = acc0 + acc1;
    for (int l = 0; l < kW; ++l) total += acc[l];
  }
  return total;
}

#if DSAC_X86_DISPATCH
__attribute__((target("avx2"))) int count_avx2(const CellsF& c, const PoseF& P, float thr2, int begin, int end) {
  return count_body(c, P, thr2, begin, end);
}
__attribute__((target("avx2"))) double soft_avx2(const CellsF& c, const PoseF& P, const SoftScoreParams& s,
                                                 int begin, int n) {
  return soft_body(c, P, s, begin, n);
}
#endif

bool use_avx2() {
#if DSAC_X86_DISPATCH
  static const bool avx2 = [] {
    const char* isa = std::getenv("DSAC_NATIVE_ISA");
    if (isa != nullptr && std::strcmp(isa, "baseline") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return avx2;
#else
  return false;
#endif
}

}  // namespace

const char* kernel_isa() { return use_avx2() ? "avx2" : "baseline"; }

CellsF make_cells(const double* pixels, const double* points, int n, const std::vector<int>& indices,
                  const Eigen::Vector3d& centre) {
  CellsF c;
  c.centre = centre;
  c.size = indices.empty() ? n : static_cast<int>(indices.size());
  const int padded = (c.size + kLanes - 1) / kLanes * kLanes;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  c.x.assign(padded, nan);
  c.y.assign(padded, nan);
  c.z.assign(padded, nan);
  c.u.assign(padded, 0.0f);
  c.v.assign(padded, 0.0f);
  for (int k = 0; k < c.size; ++k) {
    const int i = indices.empty() ? k : indices[k];
    c.x[k] = static_cast<float>(points[3 * i] - centre.x());
    c.y[k] = static_cast<float>(points[3 * i + 1] - centre.y());
    c.z[k] = static_cast<float>(points[3 * i + 2] - centre.z());
    c.u[k] = static_cast<float>(pixels[2 * i]);
    c.v[k] = static_cast<float>(pixels[2 * i + 1]);
  }
  return c;
}

PoseF make_pose_f(const Pose& pose, const Eigen::Vector3d& centre, const Intrinsics& K) {
  PoseF p;
  const Eigen::Vector3d t = pose.R * centre + pose.t;
  for (int r = 0; r < 3; ++r) {
    for (int k = 0; k < 3; ++k) p.m[4 * r + k] = static_cast<float>(pose.R(r, k));
    p.m[4 * r + 3] = static_cast<float>(t(r));
  }
  p.fx = static_cast<float>(K.fx);
  p.fy = static_cast<float>(K.fy);
  p.cx = static_cast<float>(K.cx);
  p.cy = static_cast<float>(K.cy);
  return p;
}

int count_inliers_f(const CellsF& cells, const PoseF& pose, float thr2, int begin, int end) {
#if DSAC_X86_DISPATCH
  if (use_avx2()) return count_avx2(cells, pose, thr2, begin, end);
#endif
  return count_body(cells, pose, thr2, begin, end);
}

double soft_score_sum_f(const CellsF& cells, const PoseF& pose, const SoftScoreParams& p, int begin, int end) {
#if DSAC_X86_DISPATCH
  if (use_avx2()) return soft_avx2(cells, pose, p, begin, end);
#endif
  return soft_body(cells, pose, p, begin, end);
}

}  // namespace dsac_native
