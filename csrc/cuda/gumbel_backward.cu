// Gumbel-softmax quantization, backward: gradients of
//   <grad_value, soft value> + grad_kl * kl + <grad_probs, y>
// with respect to z (gz (M, D) of T) and the float32 codebook (gc (C, K) float32), per element:
//   grad_y_k = grad_value * c_k + grad_probs_k
//   grad_logit_k = y_k (grad_y_k - sum_j y_j grad_y_j) / tau
//                  + (grad_kl / N) q_k (h_k - sum_j q_j h_j),  h = log(K q + eps) + K q / (K q + eps)
//   gz = 2 sum_k grad_logit_k (c_k - p) (p: gumbel.cuh);
//   gc_k += grad_value * y_k + 2 grad_logit_k (z - c_k).
// The noise is regenerated from (seed, offset): a first pass gets the softmax denominators, a
// second the gradients (noise only when grad_value or grad_probs is given). gc goes through
// per-thread bins and per-block partials as in the nearest backward.
#include "gumbel.cuh"

namespace fqvae_cuda {
namespace {

template <typename T>
__global__ void gumbel_bwd(const T* __restrict__ grad_value, const float* __restrict__ grad_kl,
                           const T* __restrict__ grad_probs, const T* __restrict__ z,
                           const float* __restrict__ cb, int64_t M, int64_t D, int64_t C, int K,
                           int64_t ks, float inv_tau, uint64_t seed, uint32_t offset, int lanes,
                           int64_t chunk, T* __restrict__ gz, float* __restrict__ partial) {
  extern __shared__ float smem[];
  const int threads = blockDim.x;
  float* s_bins = smem;               // (K, threads)
  float* s_cb = smem + K * threads;  // (C, ks) when ks > 0
  for (int i = threadIdx.x; i < K * threads; i += threads) s_bins[i] = 0.f;
  if (ks > 0) stage_codebook(cb, C, K, ks, s_cb);
  __syncthreads();

  const ColumnSeq s = column_seq(M, D, C, lanes, chunk);
  const int64_t row = C == 1 ? 0 : s.col;
  const float* crow = ks > 0 ? s_cb + row * ks : cb + row * K;
  float* bins = s_bins + threadIdx.x;
  const bool need_y = grad_value || grad_probs;
  const float gkl = grad_kl ? *grad_kl / static_cast<float>(M * D) : 0.f;
  const int groups = (K + 3) / 4;
  const float kf = static_cast<float>(K);
  if (s.active) {
    for (int64_t r = s.first; r < s.end; r += s.step) {
      const float zf = to_float(z[r]);
      const float p = range_clamp(zf, crow, K), zp = zf - p;
      const float gv = grad_value ? to_float(grad_value[r]) : 0.f;
      const T* gp = grad_probs ? grad_probs + r * K : nullptr;

      SoftmaxSum ys, qs;
      float ty = 0.f;  // sum_k exp(s_k - m) grad_y_k
      for (int g = 0; g < groups; ++g) {
        fqvae::U32x4 bits{};
        if (need_y) bits = fqvae::random_u32x4(r, g, seed, offset);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int k = 4 * g + j;
          if (k >= K) break;
          const float c = crow[k];
          const float a = gumbel_logit(c, p, zp);
          if (need_y) {
            float scale, weight;
            ys.add((a + gumbel_from_bits(bits.v[j])) * inv_tau, scale, weight);
            const float gy = gv * c + (gp ? to_float(gp[k]) : 0.f);
            ty = ty * scale + weight * gy;
          }
          if (grad_kl) qs.add(a);
        }
      }
      const float inv_ys = 1.f / ys.S, inv_qs = 1.f / qs.S;
      const float ybar = ty * inv_ys;

      float qh = 0.f;  // sum_k q_k h_k
      if (grad_kl) {
        for (int k = 0; k < K; ++k) {
          const float q = __expf(gumbel_logit(crow[k], p, zp) - qs.m) * inv_qs;
          const float kq = kf * q;
          qh += q * (__logf(kq + kKlEps) + kq / (kq + kKlEps));
        }
      }

      float gzs = 0.f;
      for (int g = 0; g < groups; ++g) {
        fqvae::U32x4 bits{};
        if (need_y) bits = fqvae::random_u32x4(r, g, seed, offset);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int k = 4 * g + j;
          if (k >= K) break;
          const float c = crow[k];
          const float a = gumbel_logit(c, p, zp);
          float gl = 0.f, gc = 0.f;
          if (need_y) {
            const float y = __expf((a + gumbel_from_bits(bits.v[j])) * inv_tau - ys.m) * inv_ys;
            const float gy = gv * c + (gp ? to_float(gp[k]) : 0.f);
            gl = y * (gy - ybar) * inv_tau;
            gc = gv * y;
          }
          if (grad_kl) {
            const float q = __expf(a - qs.m) * inv_qs;
            const float kq = kf * q;
            const float h = __logf(kq + kKlEps) + kq / (kq + kKlEps);
            gl += gkl * q * (h - qh);
          }
          gzs += 2.f * gl * (c - p);  // d a_k / d z, p held fixed
          bins[k * threads] += gc + 2.f * gl * (zf - c);
        }
      }
      gz[r] = from_float<T>(gzs);
    }
  }
  __syncthreads();
  store_bins(s_bins, K, C, lanes, partial);
}

template <typename T>
ColumnPlan bwd_plan(int64_t M, int64_t D, int64_t C, int64_t K, int64_t* ks, size_t* smem) {
  const int threads = bin_threads(K);
  const size_t bins = static_cast<size_t>(threads * K) * sizeof(float);
  *ks = smem_codebook_stride(C, K);
  *smem = bins + static_cast<size_t>(C * *ks) * sizeof(float);
  if (*smem > static_cast<size_t>(device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin))) {
    *ks = 0;
    *smem = bins;
  }
  return column_plan(M, D, C, K, threads, resident_blocks(gumbel_bwd<T>, threads, *smem));
}

template <typename T>
Status launch_bwd(const T* grad_value, const float* grad_kl, const T* grad_probs, const T* z,
                  const float* cb, int64_t M, int64_t D, int64_t C, int64_t K, float tau,
                  uint64_t seed, uint32_t offset, T* gz, float* gc, float* partial,
                  cudaStream_t stream) {
  int64_t ks = 0;
  size_t smem = 0;
  const ColumnPlan p = bwd_plan<T>(M, D, C, K, &ks, &smem);
  if (p.grid.y > 65535) return "fqvae cuda: too many latent dimensions";
  if (Status s = allow_smem(gumbel_bwd<T>, smem)) return s;
  gumbel_bwd<T><<<p.grid, p.threads, smem, stream>>>(grad_value, grad_kl, grad_probs, z, cb, M, D,
                                                     C, static_cast<int>(K), ks, 1.f / tau, seed,
                                                     offset, p.lanes, p.chunk, gz, partial);
  if (Status s = launch_status()) return s;
  return sum_partials(partial, p.grid.x, C * K, nullptr, 1.f, gc, stream);
}

}  // namespace

int64_t gumbel_backward_workspace(Dtype dtype, int64_t M, int64_t D, int64_t C, int64_t K) {
  int64_t blocks = 1;
  with_dtype(dtype, [&](auto t) -> Status {
    int64_t ks = 0;
    size_t smem = 0;
    blocks = bwd_plan<decltype(t)>(M, D, C, K, &ks, &smem).grid.x;
    return nullptr;
  });
  return blocks * C * K;
}

Status gumbel_backward(Dtype dtype, const void* grad_value, const float* grad_kl,
                       const void* grad_probs, const void* z, const float* codebook, int64_t M,
                       int64_t D, int64_t C, int64_t K, float tau, uint64_t seed, uint32_t offset,
                       void* gz, float* gc, float* workspace, void* stream) {
  return with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    return launch_bwd<T>(static_cast<const T*>(grad_value), grad_kl,
                         static_cast<const T*>(grad_probs), static_cast<const T*>(z), codebook, M,
                         D, C, K, tau, seed, offset, static_cast<T*>(gz), gc, workspace,
                         static_cast<cudaStream_t>(stream));
  });
}

}  // namespace fqvae_cuda
