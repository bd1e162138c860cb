// Native SIMD vectors (GCC/Clang vector extensions) and tile I/O with dtype conversion.
//
// Vec<T, W> is a W-byte vector of T; Isa::kBytes picks W, so one kernel template compiles to
// SSE2/NEON (16 bytes) or AVX2 (32 bytes). A tile of kLanes elements is kParts<V> vectors.
// Comparisons give integer masks, and `mask ? a : b` selects lane-wise.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "common.h"

namespace fqvae::cpu {

template <class T, int W>
struct VecType {
  typedef T type __attribute__((vector_size(W)));
};
template <class T, int W>
using Vec = typename VecType<T, W>::type;

template <class V>
using ElemOf = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<V>()[0])>>;
template <class V>
constexpr int kCount = static_cast<int>(sizeof(V) / sizeof(ElemOf<V>));
template <class V>
constexpr int kParts = kLanes / kCount<V>;
// A vector with the lane count of V and element type T.
template <class V, class T>
using Rebind = Vec<T, static_cast<int>(kCount<V> * sizeof(T))>;
// The accumulate-type vector of an ISA.
template <class Isa, class A>
using VecOf = Vec<A, Isa::kBytes>;

template <class V>
FQVAE_INLINE V splat(ElemOf<V> x) {
  return V{} + x;
}

template <class V, class T>
FQVAE_INLINE V loadu(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class V, class T>
FQVAE_INLINE void storeu(T* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}

template <class To, class From>
FQVAE_INLINE To bitcast(const From& x) {
  static_assert(sizeof(To) == sizeof(From));
  To t;
  std::memcpy(&t, &x, sizeof t);
  return t;
}

template <class To, class From>
FQVAE_INLINE To convert(const From& x) {
  return __builtin_convertvector(x, To);
}

// Lanes h * kCount<V> + i < valid of part h are set.
template <class V>
FQVAE_INLINE auto lanes_below(int h, int valid) {
  using M = decltype(V{} < V{});
  M m;
  for (int i = 0; i < kCount<V>; ++i) m[i] = h * kCount<V> + i < valid ? -1 : 0;
  return m;
}

// ----------------------------------------------------------------------------- storage dtypes

// Storage lanes -> accumulate-type vector V (float, or double for double storage).
template <class V>
FQVAE_INLINE V load_lanes(const float* p) {
  return loadu<V>(p);
}

template <class V>
FQVAE_INLINE V load_lanes(const double* p) {
  return loadu<V>(p);
}

template <class V>
FQVAE_INLINE V load_lanes(const BFloat16* p) {
  using U = Rebind<V, uint32_t>;
  return bitcast<V>(convert<U>(loadu<Rebind<V, uint16_t>>(p)) << 16);
}

template <class V>
FQVAE_INLINE V load_lanes(const Half* p) {
  using U = Rebind<V, uint32_t>;
  using I = Rebind<V, int32_t>;
  const U h = convert<U>(loadu<Rebind<V, uint16_t>>(p));
  const U sign = (h & 0x8000u) << 16;
  const U em = h & 0x7fffu;
  const U normal = (em << 13) + ((127u - 15u) << 23);
  const U special = (em << 13) | 0x7f800000u;  // inf / NaN keep their payload
  const U tiny = bitcast<U>(convert<V>(bitcast<I>(em)) * 0x1p-24f);
  const U mag = em >= 0x7c00u ? special : (em >= 0x0400u ? normal : tiny);
  return bitcast<V>(sign | mag);
}

// Accumulate-type vector -> storage lanes.
template <class V>
FQVAE_INLINE void store_lanes(float* p, const V& v) {
  storeu(p, v);
}

template <class V>
FQVAE_INLINE void store_lanes(double* p, const V& v) {
  storeu(p, v);
}

// Round to nearest even; NaN becomes the quiet NaN 0x7fc0 (as c10::BFloat16 does).
template <class V>
FQVAE_INLINE void store_lanes(BFloat16* p, const V& v) {
  using U = Rebind<V, uint32_t>;
  const U u = bitcast<U>(v);
  const U rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const U out = v != v ? U{} + 0x7fc0u : rounded;
  storeu(p, convert<Rebind<V, uint16_t>>(out));
}

// Round to nearest even, overflow to inf, NaN to a quiet NaN keeping the sign.
template <class V>
FQVAE_INLINE void store_lanes(Half* p, const V& v) {
  using U = Rebind<V, uint32_t>;
  const U u = bitcast<U>(v);
  const U sign = (u >> 16) & 0x8000u;
  const U a = u & 0x7fffffffu;
  // normal halves: drop 13 mantissa bits with round-to-nearest-even, rebias the exponent
  const U rounded = (a - ((127u - 15u) << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
  const U normal = rounded > 0x7c00u ? U{} + 0x7c00u : rounded;
  // below 2^-14: let the FPU round at the half's subnormal spacing 2^-24
  const U sub = bitcast<U>(bitcast<V>(a) + 0.5f) - 0x3f000000u;
  const U mag = a > 0x7f800000u    ? U{} + 0x7e00u
                : a >= 0x47800000u ? U{} + 0x7c00u
                : a < 0x38800000u  ? sub
                                   : normal;
  storeu(p, convert<Rebind<V, uint16_t>>(sign | mag));
}

// ----------------------------------------------------------------------------- tiles

// The tile of flat elements [r0, r0 + valid) of src (lanes past `valid` read as 0).
template <class V, class S>
FQVAE_INLINE void load_tile(const S* src, int valid, V (&out)[kParts<V>]) {
  constexpr int n = kCount<V>;
  if (valid == kLanes) {
    for (int h = 0; h < kParts<V>; ++h) out[h] = load_lanes<V>(src + h * n);
  } else {
    S buf[kLanes];
    std::memset(static_cast<void*>(buf), 0, sizeof buf);
    std::memcpy(static_cast<void*>(buf), src, sizeof(S) * valid);
    for (int h = 0; h < kParts<V>; ++h) out[h] = load_lanes<V>(buf + h * n);
  }
}

template <class V, class S>
FQVAE_INLINE void store_tile(const V (&in)[kParts<V>], int valid, S* dst) {
  constexpr int n = kCount<V>;
  if (valid == kLanes) {
    for (int h = 0; h < kParts<V>; ++h) store_lanes(dst + h * n, in[h]);
  } else {
    S buf[kLanes];
    for (int h = 0; h < kParts<V>; ++h) store_lanes(buf + h * n, in[h]);
    std::memcpy(static_cast<void*>(dst), buf, sizeof(S) * valid);
  }
}

// A tile's lanes as int32 (for integer-valued vectors, e.g. indices kept as floats).
template <class V>
FQVAE_INLINE void tile_to_int32(const V (&in)[kParts<V>], int32_t* out) {
  for (int h = 0; h < kParts<V>; ++h) {
    storeu(out + h * kCount<V>, convert<Rebind<V, int32_t>>(in[h]));
  }
}

// Per-lane sums of many tiles: float vectors for up to kBlock tiles, then flushed to double.
template <class V>
struct LaneSums {
  static constexpr int kBlock = 64;
  V part[kParts<V>] = {};
  double total[kLanes] = {};
  int pending = 0;

  FQVAE_INLINE void add(const V (&x)[kParts<V>]) {
    for (int h = 0; h < kParts<V>; ++h) part[h] += x[h];
    if (++pending == kBlock) flush();
  }
  FQVAE_INLINE void flush() {
    for (int h = 0; h < kParts<V>; ++h) {
      for (int i = 0; i < kCount<V>; ++i) total[h * kCount<V> + i] += part[h][i];
      part[h] = V{};
    }
    pending = 0;
  }
  // Flushes and returns the sum over lanes, in lane order.
  FQVAE_INLINE double sum() {
    flush();
    double s = 0.0;
    for (double t : total) s += t;
    return s;
  }
};

}  // namespace fqvae::cpu
