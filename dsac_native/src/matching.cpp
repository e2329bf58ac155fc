// Matching and detection reductions (see matching.hpp). The row/column pass uses simd.hpp's vectors,
// compiled for AVX2 and baseline x86-64 and picked by the CPU check that the scoring kernels use
// (kernel_isa(); DSAC_NATIVE_ISA=baseline forces the baseline copy).
#include "dsac_native/matching.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "dsac_native/kernels.hpp"
#include "dsac_native/simd.hpp"

namespace dsac_native {
namespace {

using namespace simd;

DSAC_INLINE void maxima_body(const float* sim, int n, int m, float* best, std::int64_t* arg, float* column_max) {
  const float lowest = -std::numeric_limits<float>::infinity();
  std::fill(column_max, column_max + m, lowest);
  const int vec_end = m / kW * kW;
  for (int i = 0; i < n; ++i) {
    const float* row = sim + static_cast<std::size_t>(i) * m;
    vf best_v = splat(lowest);
    vi best_j = vi{-1, -1, -1, -1, -1, -1, -1, -1};
    vi j_v = vi{0, 1, 2, 3, 4, 5, 6, 7};
    for (int j = 0; j < vec_end; j += kW) {
      const vf v = load(row + j);
      const vf c = load(column_max + j);
      store(column_max + j, v > c ? v : c);  // NaN compares false: the column keeps its maximum
      const vi more = v > best_v;  // strict: each lane keeps its first maximum
      best_v = more ? v : best_v;
      best_j = more ? j_v : best_j;
      j_v += kW;
    }
    float b = lowest;
    std::int64_t a = -1;
    for (int l = 0; l < kW; ++l) {  // the largest lane; among equal lanes the first column
      if (best_j[l] < 0) continue;
      if (best_v[l] > b || (best_v[l] == b && best_j[l] < a)) {
        b = best_v[l];
        a = best_j[l];
      }
    }
    for (int j = vec_end; j < m; ++j) {
      const float v = row[j];
      if (v > column_max[j]) column_max[j] = v;
      if (v > b) {
        b = v;
        a = j;
      }
    }
    best[i] = b;
    arg[i] = a;
  }
}

#if DSAC_X86_DISPATCH
__attribute__((target("avx2"))) void maxima_avx2(const float* sim, int n, int m, float* best, std::int64_t* arg,
                                                 float* column_max) {
  maxima_body(sim, n, m, best, arg, column_max);
}
#endif

}  // namespace

void row_column_maxima(const float* sim, int n, int m, float* best, std::int64_t* arg, float* column_max) {
#if DSAC_X86_DISPATCH
  if (std::strcmp(kernel_isa(), "avx2") == 0) return maxima_avx2(sim, n, m, best, arg, column_max);
#endif
  maxima_body(sim, n, m, best, arg, column_max);
}

void local_maxima(const float* heat, int h, int w, int radius, float threshold, int max_count,
                  std::vector<std::int32_t>& rows, std::vector<std::int32_t>& cols) {
  std::vector<std::int32_t> found;  // flat indices, row-major
  for (int y = 0; y < h; ++y) {
    const int y0 = std::max(0, y - radius), y1 = std::min(h - 1, y + radius);
    for (int x = 0; x < w; ++x) {
      const float v = heat[static_cast<std::size_t>(y) * w + x];
      if (!(v > threshold)) continue;
      const int x0 = std::max(0, x - radius), x1 = std::min(w - 1, x + radius);
      bool peak = true;
      for (int yy = y0; yy <= y1 && peak; ++yy) {
        const float* r = heat + static_cast<std::size_t>(yy) * w;
        for (int xx = x0; xx <= x1; ++xx) {
          if (r[xx] > v) {
            peak = false;
            break;
          }
        }
      }
      if (peak) found.push_back(y * w + x);
    }
  }
  std::stable_sort(found.begin(), found.end(), [heat](std::int32_t a, std::int32_t b) { return heat[a] > heat[b]; });
  if (max_count >= 0 && static_cast<int>(found.size()) > max_count) found.resize(max_count);
  rows.resize(found.size());
  cols.resize(found.size());
  for (std::size_t k = 0; k < found.size(); ++k) {
    rows[k] = found[k] / w;
    cols[k] = found[k] % w;
  }
}

}  // namespace dsac_native
