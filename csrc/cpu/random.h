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

// Lane i: row r0 + i, column group `group`; out[j][i] = random_u32(r0 + i, 4 * group + j).
FQVAE_INLINE void philox_rows(Generic, uint64_t r0, uint32_t group, uint64_t seed,
                              uint32_t offset, Words& out) {
  Counters c;
  counters_for_rows(c, r0, group, offset);
  philox_lanes(Generic{}, c, seed, out);
}

#ifdef FQVAE_X86
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

FQVAE_TARGET_AVX2 FQVAE_INLINE __m256i splat32(uint32_t x) {
  return _mm256_set1_epi32(static_cast<int>(x));
}

// hi and lo words of the 32x32-bit products a * m in 8 lanes.
FQVAE_TARGET_AVX2 FQVAE_INLINE void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);                        // lanes 0, 2, 4, 6
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);  // lanes 1, 3, 5, 7
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_mullo_epi32(a, m);
}

FQVAE_INLINE void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Philox rounds [first, 10) on two 8-lane state vectors; k0, k1 are the round-0 keys.
FQVAE_TARGET_AVX2 FQVAE_INLINE void philox_rounds(__m256i (&x)[2][4], int first, uint32_t k0,
                                                  uint32_t k1) {
  const __m256i m0 = splat32(kPhiloxM0), m1 = splat32(kPhiloxM1);
  for (int round = first; round < 10; ++round) {
    const __m256i key0 = splat32(k0 + round * kPhiloxW0), key1 = splat32(k1 + round * kPhiloxW1);
    for (auto& v : x) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(v[0], m0, hi0, lo0);
      mulhilo8(v[2], m1, hi1, lo1);
      v[0] = _mm256_xor_si256(_mm256_xor_si256(hi1, v[1]), key0);
      v[1] = lo1;
      v[2] = _mm256_xor_si256(_mm256_xor_si256(hi0, v[3]), key1);
      v[3] = lo0;
    }
  }
}

// Same rounds as philox4x32_10, sixteen counters. Not forced inline: the generic templates
// that call it are compiled for the baseline ISA before being inlined.
FQVAE_TARGET_AVX2 inline void philox_lanes(Avx2, const Counters& c, uint64_t seed, Words& out) {
  __m256i x[2][4];
  for (int h = 0; h < 2; ++h) {
    const uint32_t* in[4] = {c.c0, c.c1, c.c2, c.c3};
    for (int j = 0; j < 4; ++j) {
      x[h][j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in[j] + 8 * h));
    }
  }
  philox_rounds(x, 0, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 4; ++j) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[j] + 8 * h), x[h][j]);
    }
  }
}

// philox_rows for sixteen consecutive rows. Only the row's low word differs between lanes, so
// the first three rounds need 2 of their 6 products as vectors (the rest are scalars).
FQVAE_TARGET_AVX2 inline void philox_rows(Avx2, uint64_t r0, uint32_t group, uint64_t seed,
                                          uint32_t offset, Words& out) {
  const auto lo = static_cast<uint32_t>(r0), hi = static_cast<uint32_t>(r0 >> 32);
  if (lo > UINT32_MAX - (kLanes - 1)) {  // the rows cross a multiple of 2^32
    Counters c;
    counters_for_rows(c, r0, group, offset);
    philox_lanes(Avx2{}, c, seed, out);
    return;
  }
  const auto k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const __m256i m0 = splat32(kPhiloxM0), m1 = splat32(kPhiloxM1);
  // round 0: counter words 0, 2, 3 are shared; word 1 is the row
  uint32_t h0, l0, h1, l1;
  mulhilo(kPhiloxM0, group, h0, l0);
  mulhilo(kPhiloxM1, hi, h1, l1);
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i x[2][4];
  for (int h = 0; h < 2; ++h) {
    const __m256i row = _mm256_add_epi32(splat32(lo + 8 * h), iota);
    x[h][0] = _mm256_xor_si256(row, splat32(h1 ^ k0));  // varies
  }
  uint32_t s1 = l1, s2 = h0 ^ offset ^ k1, s3 = l0;  // shared
  // round 1: word 2 is shared, so M1 * word 2 is a scalar product; word 0 varies
  mulhilo(kPhiloxM1, s2, h1, l1);
  const uint32_t s0 = h1 ^ s1 ^ (k0 + kPhiloxW0);
  s1 = l1;
  for (auto& v : x) {
    __m256i hv, lv;
    mulhilo8(v[0], m0, hv, lv);
    v[2] = _mm256_xor_si256(hv, splat32(s3 ^ (k1 + kPhiloxW1)));  // varies
    v[3] = lv;                                                     // varies
  }
  // round 2: word 0 is shared, word 2 varies
  mulhilo(kPhiloxM0, s0, h0, l0);
  for (auto& v : x) {
    __m256i hv, lv;
    mulhilo8(v[2], m1, hv, lv);
    v[0] = _mm256_xor_si256(hv, splat32(s1 ^ (k0 + 2 * kPhiloxW0)));
    v[1] = lv;
    v[2] = _mm256_xor_si256(v[3], splat32(h0 ^ (k1 + 2 * kPhiloxW1)));
    v[3] = splat32(l0);
  }
  philox_rounds(x, 3, k0, k1);
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 4; ++j) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[j] + 8 * h), x[h][j]);
    }
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
  Words w;
  for (int group = 0; 4 * group < K; ++group) {
    philox_rows(Isa{}, r0, static_cast<uint32_t>(group), seed, offset, w);
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
    storeu(p, -fast_log_positive(-fast_log_positive(loadu<V>(p))));
  }
}

}  // namespace fqvae::cpu
