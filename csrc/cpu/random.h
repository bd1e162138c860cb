// The shared Philox stream (../philox.h) for kLanes counters at once, and Gumbel noise tiles.
#pragma once

#include <cstdint>

#include "../philox.h"
#include "common.h"
#include "simd.h"
#include "vecmath.h"

#ifdef FQVAE_X86
#include <immintrin.h>
#endif

namespace fqvae::cpu {

// Philox inputs (c0, c1, c2, c3) for each lane; outputs out[j][i] = lane j of counter i.
struct Counters {
  uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
};
using Words = uint32_t[4][kLanes];

// Lane i: stream row r0 + i, column group `group` (columns 4 * group .. 4 * group + 3).
FQVAE_INLINE void counters_for_rows(Counters& c, uint64_t r0, uint32_t group, uint32_t offset) {
  for (int i = 0; i < kLanes; ++i) {
    const uint64_t r = r0 + static_cast<uint64_t>(i);
    c.c0[i] = group;
    c.c1[i] = static_cast<uint32_t>(r);
    c.c2[i] = static_cast<uint32_t>(r >> 32);
    c.c3[i] = offset;
  }
}

// Lane i: stream row `row`, column group g0 + i.
FQVAE_INLINE void counters_for_groups(Counters& c, uint64_t row, uint32_t g0, uint32_t offset) {
  for (int i = 0; i < kLanes; ++i) {
    c.c0[i] = g0 + static_cast<uint32_t>(i);
    c.c1[i] = static_cast<uint32_t>(row);
    c.c2[i] = static_cast<uint32_t>(row >> 32);
    c.c3[i] = offset;
  }
}

FQVAE_INLINE void philox_lanes(Generic, const Counters& c, uint64_t seed, Words& out) {
  const auto k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int i = 0; i < kLanes; ++i) {
    const U32x4 v = philox4x32_10(c.c0[i], c.c1[i], c.c2[i], c.c3[i], k0, k1);
    for (int j = 0; j < 4; ++j) out[j][i] = v.v[j];
  }
}

#ifdef FQVAE_X86
// hi and lo words of the 32x32-bit products a * m in 8 lanes (even and odd lanes separately).
FQVAE_TARGET_AVX2 FQVAE_INLINE void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// Same rounds as philox4x32_10, eight counters per vector. Not forced inline: the generic
// templates that call it are compiled for the baseline ISA before being inlined.
FQVAE_TARGET_AVX2 inline void philox_lanes(Avx2, const Counters& c, uint64_t seed, Words& out) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int h = 0; h < kLanes; h += 8) {
    __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.c0 + h));
    __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.c1 + h));
    __m256i x2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.c2 + h));
    __m256i x3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.c3 + h));
    auto k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      if (round) {
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
      }
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(x0, m0, hi0, lo0);
      mulhilo8(x2, m1, hi1, lo1);
      x0 = _mm256_xor_si256(_mm256_xor_si256(hi1, x1), _mm256_set1_epi32(static_cast<int>(k0)));
      x1 = lo1;
      x2 = _mm256_xor_si256(_mm256_xor_si256(hi0, x3), _mm256_set1_epi32(static_cast<int>(k1)));
      x3 = lo0;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[0] + h), x0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[1] + h), x1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[2] + h), x2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[3] + h), x3);
  }
}
#endif

// uniform_from_u32 on a vector of stream words.
template <class V>
FQVAE_INLINE V uniform_lanes(const uint32_t* words) {
  using U = Rebind<V, uint32_t>;
  using I = Rebind<V, int32_t>;
  return convert<V>(bitcast<I>(loadu<U>(words) >> 9)) * 0x1p-23f + 0x1p-24f;
}

// u[k][i] = uniform_from_u32(random_u32(r0 + i, k)) for k < K: the uniforms behind the Gumbel
// noise of the tile starting at flat element r0. u is (K, kLanes) float.
template <class Isa>
FQVAE_INLINE void uniform_tile(uint64_t r0, int K, uint64_t seed, uint32_t offset, float* u) {
  using V = VecOf<Isa, float>;
  Counters c;
  Words w;
  for (int group = 0; 4 * group < K; ++group) {
    counters_for_rows(c, r0, static_cast<uint32_t>(group), offset);
    philox_lanes(Isa{}, c, seed, w);
    for (int j = 0; j < 4 && 4 * group + j < K; ++j) {
      float* row = u + (4 * group + j) * kLanes;
      for (int h = 0; h < kParts<V>; ++h) {
        storeu(row + h * kCount<V>, uniform_lanes<V>(w[j] + h * kCount<V>));
      }
    }
  }
}

// g[k][i] = -log(-log(u)) in float32 for the tile starting at flat element r0; g is (K, kLanes).
template <class Isa>
FQVAE_INLINE void gumbel_tile(uint64_t r0, int K, uint64_t seed, uint32_t offset, float* g) {
  using V = VecOf<Isa, float>;
  uniform_tile<Isa>(r0, K, seed, offset, g);
  for (int h = 0; h < K * kParts<V>; ++h) {
    float* p = g + h * kCount<V>;
    storeu(p, -fast_log(-fast_log(loadu<V>(p))));
  }
}

}  // namespace fqvae::cpu
