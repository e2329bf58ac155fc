// Reductions of keypoint matching and detection (glace_core.keypoint_matching, glace_core.keyframes)
// that torch runs slowly on CPU: a row's maximum with its index and a column's maximum over a
// row-major similarity matrix (torch: 2-3 ms and 8 ms for 1024 x 3072 on 2 cores), and the
// local maxima of a keypoint heatmap in score order (torch: unfolded maxima, nonzero and a sort,
// 4 ms at 480 x 640). Single-threaded; the matrix pass uses the AVX2 copy where the CPU has it.
#pragma once

#include <cstdint>
#include <vector>

namespace dsac_native {

// sim (n, m) row-major. best[i] / arg[i]: the maximum of row i and the first column holding it
// (arg -1 when the row has no value above -inf); column_max[j]: the maximum of column j
// (-inf when none). NaN never counts as a maximum.
void row_column_maxima(const float* sim, int n, int m, float* best, std::int64_t* arg, float* column_max);

// Pixels (row, col) of heat (h, w) row-major whose value is > threshold and >= every value within
// `radius` (a square window, clipped at the borders), strongest first (ties in row-major order), at
// most max_count. NaN is never a peak and never blocks one.
void local_maxima(const float* heat, int h, int w, int radius, float threshold, int max_count,
                  std::vector<std::int32_t>& rows, std::vector<std::int32_t>& cols);

}  // namespace dsac_native
