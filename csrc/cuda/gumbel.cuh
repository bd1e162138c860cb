// Device math shared by the Gumbel-softmax kernels: the noise of one stream value and an
// online (single-pass) softmax denominator.
#pragma once

#include "common.cuh"

namespace fqvae_cuda {

constexpr float kKlEps = 1e-10f;

// z clamped to the codebook row's range [min_k c_k, max_k c_k] (NaN stays NaN).
__device__ __forceinline__ float range_clamp(float z, const float* crow, int K) {
  float lo = crow[0], hi = crow[0];
  for (int k = 1; k < K; ++k) {
    lo = fminf(lo, crow[k]);
    hi = fmaxf(hi, crow[k]);
  }
  return z < lo ? lo : (z > hi ? hi : z);
}

// a_k = -(z - c_k)^2 up to a shift shared by all k, as fqvae.reference.gumbel_logits computes
// it: 2 (c_k - p)(z - p) - (c_k - p)^2 with p = range_clamp(z) and zp = z - p. Exactly
// -(z - c_k)^2 inside the range; outside, no cancellation between huge squares. Products are
// rounded on their own (no FMA contraction), as the reference rounds them.
__device__ __forceinline__ float gumbel_logit(float c, float p, float zp) {
  const float d = c - p;
  return __fsub_rn(__fmul_rn(__fmul_rn(2.f, d), zp), __fmul_rn(d, d));
}

// g = -log(-log(u)) for u = uniform_from_u32(bits). The inner log must be accurate (u is often
// close to 1, where -log(u) is tiny); the outer one may be fast.
__device__ __forceinline__ float gumbel_from_bits(uint32_t bits) {
  return -__logf(-logf(fqvae::uniform_from_u32(bits)));
}

// S = sum_k exp(s_k - m) with m the running max. add(s) returns, through `scale` and `weight`,
// how to update any sum W = sum_k exp(s_k - m) w_k alongside: W = W * scale + weight * w.
struct SoftmaxSum {
  float m = -INFINITY, S = 0.f;
  __device__ __forceinline__ void add(float s, float& scale, float& weight) {
    if (s == -INFINITY) {  // adds nothing; keeps -inf - -inf = NaN out of the running sums
      scale = 1.f;
      weight = 0.f;
      return;
    }
    const float d = s - m;
    const float e = __expf(-fabsf(d));
    if (d > 0.f) {
      scale = e;
      weight = 1.f;
      m = s;
    } else {
      scale = 1.f;
      weight = e;
    }
    S = S * scale + weight;
  }
  __device__ __forceinline__ void add(float s) {
    float scale, weight;
    add(s, scale, weight);
  }
};

}  // namespace fqvae_cuda
