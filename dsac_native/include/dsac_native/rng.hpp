// Counter-based random numbers: every hypothesis gets its own generator derived from
// (seed, hypothesis index), so results do not depend on which thread drew them.
#pragma once

#include <cstdint>

namespace dsac_native {

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class Rng {
 public:
  Rng(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t s = seed;
    std::uint64_t a = splitmix64(s);
    std::uint64_t b = stream * 0xD1B54A32D192ED03ULL + 0x632BE59BD9B4E019ULL;
    state_ = a ^ splitmix64(b);
  }
  std::uint64_t next() { return splitmix64(state_); }
  // Uniform integer in [0, n), n < 2^32 (multiply-shift; the bias is below 2^-32 * n).
  std::uint32_t below(std::uint32_t n) {
    return static_cast<std::uint32_t>(((next() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
  }

 private:
  std::uint64_t state_;
};

}  // namespace dsac_native
