// The one Philox-4x32-10 definition and counter layout shared by the C++ and CUDA kernels.
// Mirrors fqvae/reference.py: random_u32(r, c) is lane (c & 3) of
// philox(counter = (c >> 2, r & 0xffffffff, r >> 32, offset), key = (seed & 0xffffffff, seed >> 32)).
// Plain C++ (no torch, no CUDA headers) so it compiles under g++ and nvcc alike.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FQVAE_HD __host__ __device__ __forceinline__
#else
#define FQVAE_HD inline
#endif

namespace fqvae {

struct U32x4 {
  uint32_t v[4];
};

FQVAE_HD U32x4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                             uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    if (round) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  return U32x4{{c0, c1, c2, c3}};
}

// The four consecutive stream values (r, 4g .. 4g+3) from one Philox call.
FQVAE_HD U32x4 random_u32x4(uint64_t r, uint32_t group, uint64_t seed, uint32_t offset) {
  return philox4x32_10(group, static_cast<uint32_t>(r), static_cast<uint32_t>(r >> 32), offset,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

FQVAE_HD uint32_t random_u32(uint64_t r, uint32_t c, uint64_t seed, uint32_t offset) {
  return random_u32x4(r, c >> 2, seed, offset).v[c & 3];
}

// uint32 -> float32 uniform in the open interval (0, 1), exact: (bits >> 9) * 2^-23 + 2^-24.
FQVAE_HD float uniform_from_u32(uint32_t bits) {
  return static_cast<float>(bits >> 9) * 1.1920928955078125e-07f + 5.9604644775390625e-08f;
}

}  // namespace fqvae
