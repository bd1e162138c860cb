// Branch-free exp and log on float vectors (no libm calls), and their float64 counterparts.
// Polynomials: weighted least-squares fits on Chebyshev nodes, refined towards minimax, evaluated
// with Estrin's scheme (short dependency chains). Max error about 1 ulp on the ranges used.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "simd.h"

namespace fqvae::cpu {

// e^x on a float vector for x <= 0 (the kernels exponentiate only x - max): 0 below -87.34
// (never subnormal); NaN stays NaN.
template <class V>
FQVAE_INLINE V fast_exp(V x) {
  using I = Rebind<V, int32_t>;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // few mantissa bits, so n * kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const V low = splat<V>(-87.33654f);
  const V xc = x < low ? low : x;
  const V n = (xc * kLog2e + kRound) - kRound;
  const V r = (xc - n * kLn2Hi) - n * kLn2Lo;  // |r| <= ln2 / 2
  // e^r = 1 + r + r^2 * p(r)
  const V r2 = r * r;
  const V p01 = 0.5f + 0.1666651964187622f * r;
  const V p23 = 0.04166620597243309f + 0.008368882350623608f * r;
  const V p = p01 + r2 * (p23 + r2 * 0.0013950478751212358f);
  const V er = (r2 * p + r) + 1.0f;
  const V y = er * bitcast<V>((convert<I>(n) + 127) << 23);
  return x < low ? V{} : y;
}

// Natural log of positive normal floats (other inputs are never passed). The exponent term uses
// one float ln 2: its error, at most 24 * 2e-9 here, stays far below an ulp of the result.
template <class V>
FQVAE_INLINE V fast_log_positive(V x) {
  using I = Rebind<V, int32_t>;
  constexpr int32_t kSqrtHalf = 0x3f3504f3;  // bits of sqrt(1/2)
  const I t = bitcast<I>(x) - kSqrtHalf;
  const V e = convert<V>(t >> 23);  // x = 2^e * m, m in [sqrt(1/2), sqrt(2))
  const V f = bitcast<V>((t & 0x7fffff) + kSqrtHalf) - 1.0f;
  // log(1 + f) = f - f^2 / 2 + f^3 * p(f)
  const V f2 = f * f, f4 = f2 * f2;
  const V p01 = 0.3333333134651184f - 0.2500081956386566f * f;
  const V p23 = 0.20001226663589478f - 0.16623356938362122f * f;
  const V p45 = 0.14201758801937103f - 0.13160182535648346f * f;
  const V p67 = 0.12761574983596802f - 0.07634492963552475f * f;
  const V p = (p01 + f2 * p23) + f4 * (p45 + f2 * p67);
  const V lo = (p * f2) * f - 0.5f * f2;
  return (lo + f) + e * 0.693147180559945f;
}

// fast_log_positive that passes NaN through.
template <class V>
FQVAE_INLINE V fast_log(V x) {
  return x == x ? fast_log_positive(x) : x;
}

// e^x in the accumulate type: fast_exp for float vectors, libm per lane for double vectors.
template <class V>
FQVAE_INLINE V exp_acc(V x) {
  if constexpr (std::is_same_v<ElemOf<V>, double>) {
    for (int i = 0; i < kCount<V>; ++i) x[i] = std::exp(x[i]);
    return x;
  } else {
    return fast_exp(x);
  }
}

}  // namespace fqvae::cpu
