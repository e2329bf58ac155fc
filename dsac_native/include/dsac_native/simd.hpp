// The vector types and helpers of the float32 kernels (kernels.cpp, matching.cpp): GCC/Clang vector
// extensions of 8 lanes, compiled twice (AVX2 and baseline x86-64) where DSAC_X86_DISPATCH is 1.
// The AVX2 copies are picked by an explicit CPU check on the first call rather than by GCC's
// target_clones (an ifunc): it works with Clang too, and DSAC_NATIVE_ISA=baseline lets a test run the
// baseline copies on an AVX2 machine. DSAC_NATIVE_NO_CLONES at build time leaves only the baseline.
#pragma once

#include <cstdint>
#include <cstring>

#pragma GCC diagnostic ignored "-Wpsabi"  // vectors never cross a non-inlined call

#define DSAC_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(DSAC_NATIVE_NO_CLONES)
#define DSAC_X86_DISPATCH 1
#else
#define DSAC_X86_DISPATCH 0
#endif

namespace dsac_native {
namespace simd {

typedef float vf __attribute__((vector_size(32)));
typedef std::int32_t vi __attribute__((vector_size(32)));
constexpr int kW = 8;  // lanes of vf and vi

DSAC_INLINE vf load(const float* p) {
  vf r;
  std::memcpy(&r, p, sizeof(r));
  return r;
}
DSAC_INLINE void store(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }
DSAC_INLINE vf splat(float a) { return vf{a, a, a, a, a, a, a, a}; }

}  // namespace simd
}  // namespace dsac_native
