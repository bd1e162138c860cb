// Gumbel-softmax relaxed scalar quantization: pieces shared by the forward and backward kernels.
//
// Per element r (a lane) and codebook entry k: a_k = -(z - c_k)^2, s_k = (a_k + g_k) / tau,
// y = softmax(s), q = softmax(a). Tiles keep (K, kLanes) scratch arrays only; the noise g is
// regenerated from (seed, offset) in both passes. float32 / half inputs draw it with the
// vectorized fast_log; float64 inputs use ATen's float32 log in chunks (exactly the reference's
// noise), so float64 matches the reference to float64 precision.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <limits>
#include <vector>

#include "glue.h"
#include "random.h"
#include "simd.h"
#include "vecmath.h"

namespace fqvae::cpu::gumbel {

constexpr double kKlEps = 1e-10;  // as fqvae.reference.KL_EPS
constexpr int kChunkTiles = 64;   // tiles per noise chunk on the float64 (ATen log) path

// h(x) = log(x + eps) + x / (x + eps) per lane, x = K q: the reference's KL gradient factor.
template <class V>
FQVAE_INLINE V kl_h(V x) {
  V out;
  for (int i = 0; i < kCount<V>; ++i) out[i] = std::log(x[i] + kKlEps) + x[i] / (x[i] + kKlEps);
  return out;
}

// In place: u -> -log(-log(u)) with ATen's float32 log, the reference's own arithmetic.
void exact_gumbel(float* buf, int64_t count);

// Work of one (element, value) pair relative to a nearest-value distance (Philox share, logs,
// exp), for run_groups' serial cut-off.
constexpr int64_t kGumbelCost = 8;

// What the forward and backward kernels share.
struct Common {
  Layout L;
  const void* z;    // (N,) storage S
  const void* ext;  // tiled codebook (K, C + kLanes), Acc<S>
  double tau;
  uint64_t seed;
  uint32_t offset;
};

// Checks the inputs and collects what both kernels need; `ext` is the tiled codebook.
Common make_common(const at::Tensor& z, const at::Tensor& codebook, const at::Tensor& ext,
                   double tau, uint64_t seed, uint32_t offset);

// Noise for the tiles of one group: fast path per tile, float64 path per chunk of tiles.
template <class Isa, class S>
class NoiseSource {
 public:
  explicit NoiseSource(const Common& c)
      : c_(c),
        chunk_(kExact ? kChunkTiles : 1),
        buf_(static_cast<size_t>(chunk_) * c.L.K * kLanes) {}

  // The (K, kLanes) noise of tile t; tiles must be requested in increasing order.
  const float* tile(int64_t t, int64_t group_end) {
    const int64_t tile_cells = int64_t{c_.L.K} * kLanes;
    if (t >= first_ + filled_) {
      first_ = t;
      filled_ = std::min<int64_t>(chunk_, group_end - t);
      for (int64_t j = 0; j < filled_; ++j) {
        const auto r0 = static_cast<uint64_t>((t + j) * kLanes);
        float* dst = buf_.data() + j * tile_cells;
        if constexpr (kExact) {
          uniform_tile<Isa>(r0, c_.L.K, c_.seed, c_.offset, dst);
        } else {
          gumbel_tile<Isa>(r0, c_.L.K, c_.seed, c_.offset, dst);
        }
      }
      if constexpr (kExact) exact_gumbel(buf_.data(), filled_ * tile_cells);
    }
    return buf_.data() + (t - first_) * tile_cells;
  }

 private:
  static constexpr bool kExact = std::is_same_v<S, double>;
  const Common& c_;
  int64_t chunk_, first_ = 0, filled_ = 0;
  std::vector<float> buf_;
};

// The noise of lanes [h * kCount<V>, (h + 1) * kCount<V>) of one (k, tile) row, in V's type.
template <class V>
FQVAE_INLINE V noise_lanes(const float* row, int h) {
  return convert<V>(loadu<Rebind<V, float>>(row + h * kCount<V>));
}

// One tile's inputs and per-lane maxima, shared by forward and backward.
template <class V>
struct Tile {
  V z[kParts<V>];
  V p[kParts<V>];   // z clamped to the lane's codebook range
  V zp[kParts<V>];  // z - p
  V m[kParts<V>];   // max_k s_k
  V ma[kParts<V>];  // max_k a_k
};

// p = z clamped to each lane's codebook range [min_k c_k, max_k c_k] (NaN stays NaN) and z - p.
template <class V>
FQVAE_INLINE void range_clamp(const Layout& L, const ElemOf<V>* cb, Tile<V>& t) {
  constexpr int P = kParts<V>, n = kCount<V>;
  V lo[P], hi[P];
  for (int h = 0; h < P; ++h) lo[h] = hi[h] = loadu<V>(cb + h * n);
  for (int k = 1; k < L.K; ++k) {
    const ElemOf<V>* ck = cb + k * L.stride;
    for (int h = 0; h < P; ++h) {
      const V c = loadu<V>(ck + h * n);
      lo[h] = c < lo[h] ? c : lo[h];
      hi[h] = c > hi[h] ? c : hi[h];
    }
  }
  for (int h = 0; h < P; ++h) {
    t.p[h] = t.z[h] < lo[h] ? lo[h] : (t.z[h] > hi[h] ? hi[h] : t.z[h]);
    t.zp[h] = t.z[h] - t.p[h];
  }
}

// Pass over k: a_k = -(z - c_k)^2 up to a shift shared by all k, as
// fqvae.reference.gumbel_logits computes it, 2 (c_k - p)(z - p) - (c_k - p)^2, into `av` and
// s_k = (a_k + g_k) / tau into `s` (both (K, kLanes)), the maxima, and with kArgmax the first
// argmax of s (as a float index) and its codebook value. Later passes read a_k back rather than recompute it: a recomputed a_k - m may
// be contracted into one FMA, whose unrounded product makes a_k - max a positive (and its exp
// overflow) when |d| is large.
template <class V, bool kArgmax>
FQVAE_INLINE void logits_pass(const Layout& L, const ElemOf<V>* cb, const float* g,
                              ElemOf<V> inv_tau, Tile<V>& t, ElemOf<V>* av, ElemOf<V>* s, V* best,
                              V* pick) {
  using A = ElemOf<V>;
  constexpr int P = kParts<V>, n = kCount<V>;
  const V neg_inf = splat<V>(-std::numeric_limits<A>::infinity());
  for (int h = 0; h < P; ++h) {
    t.m[h] = neg_inf;
    t.ma[h] = neg_inf;
    if constexpr (kArgmax) {
      best[h] = V{};
      pick[h] = loadu<V>(cb + h * n);
    }
  }
  range_clamp(L, cb, t);
  for (int k = 0; k < L.K; ++k) {
    const A* ck = cb + k * L.stride;
    const V kv = splat<V>(static_cast<A>(k));
    for (int h = 0; h < P; ++h) {
      const V c = loadu<V>(ck + h * n);
      const V d = c - t.p[h];
      const V a = (d + d) * t.zp[h] - d * d;
      storeu(av + k * kLanes + h * n, a);
      const V sv = (a + noise_lanes<V>(g + k * kLanes, h)) * inv_tau;
      storeu(s + k * kLanes + h * n, sv);
      const auto better = sv > t.m[h];  // strict: ties keep the lowest index
      t.m[h] = better ? sv : t.m[h];
      if constexpr (kArgmax) {
        best[h] = better ? kv : best[h];
        pick[h] = better ? c : pick[h];
      }
      t.ma[h] = a > t.ma[h] ? a : t.ma[h];
    }
  }
}

}  // namespace fqvae::cpu::gumbel
