// Nearest scalar quantization, backward. From z (M, D) of T, idx (M, D) of I and the float32
// codebook (C, K), with q = codebook[row, idx]:
//   gz (M, D) of T = grad_q + coef_z * (z - q)          (grad_q may be null)
//   gc (C, K) float32 = coef_c * sum_{r: idx[r] = k, z[r] finite} (q[r] - z[r])
// Non-finite z gets a NaN gradient and adds nothing to gc.
// gc via per-thread shared-memory bins, per-block partials (blocks, C, K) and a fixed-order sum.
#include "common.cuh"

namespace fqvae_cuda {
namespace {

constexpr int kUnroll = 4;  // elements loaded per thread before they are used

template <typename T, typename I>
__global__ void nearest_bwd(const T* __restrict__ grad_q, const float* __restrict__ coef_z,
                            const T* __restrict__ z, const float* __restrict__ cb,
                            const I* __restrict__ idx, int64_t M, int64_t D, int64_t C, int K,
                            int lanes, int64_t chunk, T* __restrict__ gz,
                            float* __restrict__ partial) {
  extern __shared__ float s_bins[];  // (K, threads)
  const int t = threadIdx.x, threads = blockDim.x;
  for (int i = t; i < K * threads; i += threads) s_bins[i] = 0.f;
  __syncthreads();

  const float cz = *coef_z;
  const ColumnSeq s = column_seq(M, D, C, lanes, chunk);
  const float* crow = cb + (C == 1 ? 0 : s.col) * K;
  float* bins = s_bins + t;
  if (s.active) {
    for (int64_t r0 = s.first; r0 < s.end; r0 += kUnroll * s.step) {
      float zf[kUnroll], gq[kUnroll];
      int k[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t r = r0 + u * s.step;
        const bool in = r < s.end;
        zf[u] = in ? to_float(z[r]) : 0.f;
        k[u] = in ? static_cast<int>(idx[r]) : -1;
        gq[u] = in && grad_q ? to_float(grad_q[r]) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t r = r0 + u * s.step;
        if (r >= s.end) continue;
        // non-finite z: NaN gradient, no codebook contribution (as the reference)
        const bool valid = static_cast<unsigned>(k[u]) < static_cast<unsigned>(K) &&
                           isfinite(zf[u]);
        const float qv = valid ? __ldg(crow + k[u]) : NAN;
        gz[r] = from_float<T>(__fmul_rn(cz, zf[u] - qv) + gq[u]);
        if (valid) bins[k[u] * threads] += qv - zf[u];
      }
    }
  }
  __syncthreads();
  store_bins(s_bins, K, C, lanes, partial);
}

template <typename T, typename I>
ColumnPlan bwd_plan(int64_t M, int64_t D, int64_t C, int64_t K, size_t* smem) {
  const int threads = bin_threads(K);
  *smem = static_cast<size_t>(threads * K) * sizeof(float);
  return column_plan(M, D, C, K, threads, resident_blocks(nearest_bwd<T, I>, threads, *smem));
}

template <typename T, typename I>
Status launch_bwd(const T* grad_q, const float* coef_z, const float* coef_c, const T* z,
                  const float* cb, const I* idx, int64_t M, int64_t D, int64_t C, int64_t K, T* gz,
                  float* gc, float* partial, cudaStream_t stream) {
  size_t smem = 0;
  const ColumnPlan p = bwd_plan<T, I>(M, D, C, K, &smem);
  if (p.grid.y > 65535) return "fqvae cuda: too many latent dimensions";
  if (Status s = allow_smem(nearest_bwd<T, I>, smem)) return s;
  nearest_bwd<T, I><<<p.grid, p.threads, smem, stream>>>(grad_q, coef_z, z, cb, idx, M, D, C,
                                                         static_cast<int>(K), p.lanes, p.chunk,
                                                         gz, partial);
  if (Status s = launch_status()) return s;
  return sum_partials(partial, p.grid.x, C * K, coef_c, 1.f, gc, stream);
}

}  // namespace

int64_t nearest_backward_workspace(Dtype dtype, IndexDtype index_dtype, int64_t M, int64_t D,
                                   int64_t C, int64_t K) {
  int64_t blocks = 1;
  with_dtype(dtype, [&](auto t) {
    return with_index_dtype(index_dtype, [&](auto i) -> Status {
      size_t smem = 0;
      blocks = bwd_plan<decltype(t), decltype(i)>(M, D, C, K, &smem).grid.x;
      return nullptr;
    });
  });
  return blocks * C * K;
}

Status nearest_backward(Dtype dtype, IndexDtype index_dtype, const void* grad_q,
                        const float* coef_z, const float* coef_c, const void* z,
                        const float* codebook, const void* idx, int64_t M, int64_t D, int64_t C,
                        int64_t K, void* gz, float* gc, float* workspace, void* stream) {
  return with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    return with_index_dtype(index_dtype, [&](auto i) {
      using I = decltype(i);
      return launch_bwd<T, I>(static_cast<const T*>(grad_q), coef_z, coef_c,
                              static_cast<const T*>(z), codebook, static_cast<const I*>(idx), M,
                              D, C, K, static_cast<T*>(gz), gc, workspace,
                              static_cast<cudaStream_t>(stream));
    });
  });
}

}  // namespace fqvae_cuda
