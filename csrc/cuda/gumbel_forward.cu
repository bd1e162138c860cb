// Gumbel-softmax quantization, forward. For z (M, D) of T and the float32 codebook (C, K), per
// element r with logits a_k = -(z - c_k)^2 (see gumbel_logit), Philox noise
// g_k = gumbel(random_u32(r, k)) and s_k = (a_k + g_k) / tau:
//   value (M, D) of T = sum_k softmax(s)_k c_k, or with `hard` the soft value moved onto
//     c[argmax s] (soft + (picked - soft), as the reference computes it);
//   idx (M, D) int64 = argmax_k s_k (lowest index on ties, 0 for non-finite z);
//   kl = mean_r sum_k q_k log(K q_k + 1e-10), q = softmax(a), via per-block partials;
//   probs (M, D, K) of T = softmax(s), only when probs is non-null.
// One thread per element, grid-stride; the noise is generated 4 entries per Philox call and
// again for probs, so nothing of size N x K is stored unless asked for.
#include "gumbel.cuh"

namespace fqvae_cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gumbel_fwd(const T* __restrict__ z, const float* __restrict__ cb, int64_t n, int64_t C, int K,
               int64_t ks, float inv_tau, uint64_t seed, uint32_t offset, bool hard,
               T* __restrict__ value, int64_t* __restrict__ idx, T* __restrict__ probs,
               float* __restrict__ partial) {
  extern __shared__ float s_cb[];
  __shared__ float scratch[32];
  if (ks > 0) stage_codebook(cb, C, K, ks, s_cb);
  __syncthreads();
  const float* base = ks > 0 ? s_cb : cb;
  const int64_t row_stride = ks > 0 ? ks : K;

  const int groups = (K + 3) / 4;
  const float kf = static_cast<float>(K);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t drow = stride % C;
  int64_t row = tid % C;
  float kl_sum = 0.f;
  for (int64_t r = tid; r < n; r += stride) {
    const float zf = to_float(z[r]);
    const float* crow = base + row * row_stride;
    const float p = range_clamp(zf, crow, K), zp = zf - p;
    SoftmaxSum ys, qs;
    float soft_w = 0.f, best = -INFINITY;
    int best_k = 0;
    for (int g = 0; g < groups; ++g) {
      const fqvae::U32x4 bits = fqvae::random_u32x4(r, g, seed, offset);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int k = 4 * g + j;
        if (k >= K) break;
        const float c = crow[k];
        const float a = gumbel_logit(c, p, zp);
        const float s = (a + gumbel_from_bits(bits.v[j])) * inv_tau;
        float scale, weight;
        ys.add(s, scale, weight);
        soft_w = soft_w * scale + weight * c;
        qs.add(a);
        if (s > best) {
          best = s;
          best_k = k;
        }
      }
    }
    const float soft = soft_w / ys.S;
    value[r] = from_float<T>(hard ? soft + (crow[best_k] - soft) : soft);
    idx[r] = best_k;

    const float inv_qs = 1.f / qs.S;
    float kl = 0.f;
    for (int k = 0; k < K; ++k) {
      const float q = __expf(gumbel_logit(crow[k], p, zp) - qs.m) * inv_qs;
      kl += q * __logf(kf * q + kKlEps);
    }
    kl_sum += kl;

    if (probs) {
      const float inv_ys = 1.f / ys.S;
      T* out = probs + r * K;
      for (int g = 0; g < groups; ++g) {
        const fqvae::U32x4 bits = fqvae::random_u32x4(r, g, seed, offset);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int k = 4 * g + j;
          if (k >= K) break;
          const float s = (gumbel_logit(crow[k], p, zp) + gumbel_from_bits(bits.v[j])) * inv_tau;
          out[k] = from_float<T>(__expf(s - ys.m) * inv_ys);
        }
      }
    }
    row += drow;
    if (row >= C) row -= C;
  }
  kl_sum = block_sum(kl_sum, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = kl_sum;
}

struct FwdPlan {
  int64_t blocks;
  int64_t ks;
  size_t smem;
};

template <typename T>
FwdPlan fwd_plan(int64_t M, int64_t D, int64_t C, int64_t K) {
  FwdPlan p{0, smem_codebook_stride(C, K), 0};
  p.smem = static_cast<size_t>(C * p.ks) * sizeof(float);
  const int64_t resident = resident_blocks(gumbel_fwd<T>, kThreads, p.smem);
  const int64_t needed = ceil_div(M * D, kThreads);
  p.blocks = needed < resident ? needed : resident;
  p.blocks = p.blocks > 0 ? p.blocks : 1;
  return p;
}

template <typename T>
Status launch_fwd(const T* z, const float* cb, int64_t M, int64_t D, int64_t C, int64_t K,
                  float tau, uint64_t seed, uint32_t offset, bool hard, T* value, int64_t* idx,
                  float* kl, T* probs, float* partial, cudaStream_t stream) {
  const FwdPlan p = fwd_plan<T>(M, D, C, K);
  if (Status s = allow_smem(gumbel_fwd<T>, p.smem)) return s;
  gumbel_fwd<T><<<static_cast<unsigned>(p.blocks), kThreads, p.smem, stream>>>(
      z, cb, M * D, C, static_cast<int>(K), p.ks, 1.f / tau, seed, offset, hard, value, idx,
      probs, partial);
  if (Status s = launch_status()) return s;
  return sum_partials(partial, p.blocks, 1, nullptr, static_cast<float>(M * D), kl, stream);
}

}  // namespace

int64_t gumbel_forward_workspace(Dtype dtype, int64_t M, int64_t D, int64_t C, int64_t K) {
  int64_t blocks = 1;
  with_dtype(dtype, [&](auto t) -> Status {
    blocks = fwd_plan<decltype(t)>(M, D, C, K).blocks;
    return nullptr;
  });
  return blocks;
}

Status gumbel_forward(Dtype dtype, const void* z, const float* codebook, int64_t M, int64_t D,
                      int64_t C, int64_t K, float tau, uint64_t seed, uint32_t offset, bool hard,
                      void* value, int64_t* idx, float* kl, void* probs, float* workspace,
                      void* stream) {
  return with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    return launch_fwd<T>(static_cast<const T*>(z), codebook, M, D, C, K, tau, seed, offset, hard,
                         static_cast<T*>(value), idx, kl, static_cast<T*>(probs), workspace,
                         static_cast<cudaStream_t>(stream));
  });
}

}  // namespace fqvae_cuda
