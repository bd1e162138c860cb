// Nearest scalar quantization, forward. z (M, D) of T, codebook float32 (C, K) ->
// q (M, D) of T (NaN for non-finite z), idx (M, D) of I (lowest index on ties, 0 for non-finite
// z), sse = sum (z - q)^2 via per-block partials and a fixed-order second pass.
#include "common.cuh"

namespace fqvae_cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRows = 4;  // rows (same column, same codebook row) per thread, per-dim kernel

template <typename T, int N>
struct alignas(sizeof(T) * N > 16 ? 16 : sizeof(T) * N) Pack {
  T v[N];
};

struct Argmin {
  float best = INFINITY;
  int k = 0;
  __device__ __forceinline__ void step(float z, float c, int kk) {
    const float d = z - c;
    const float dd = d * d;
    if (dd < best) {
      best = dd;
      k = kk;
    }
  }
};

// The quantized value of z for the winner a.k (NaN and index 0 for non-finite z); adds its
// squared error to sse.
// A codebook row's smallest and largest values and their first indices. A z beyond the row's
// range takes the end value: the squared distances of a huge finite z (2e7, 1e30) round to ties,
// so the range decides there. NaN fails both comparisons (settle then gives NaN and index 0).
struct Range {
  float lo = INFINITY, hi = -INFINITY;
  int klo = 0, khi = 0;
  __device__ __forceinline__ void add(float c, int k) {
    if (c < lo) {
      lo = c;
      klo = k;
    }
    if (c > hi) {
      hi = c;
      khi = k;
    }
  }
  __device__ __forceinline__ void apply(float z, Argmin& a) const {
    if (z > hi) a.k = khi;
    if (z < lo) a.k = klo;
  }
};

__device__ __forceinline__ float settle(float z, const float* crow, Argmin& a, float& sse) {
  float qv = crow[a.k];
  if (!is_finite(z)) {
    a.k = 0;
    qv = NAN;
  }
  const float e = z - qv;
  sse += e * e;
  return qv;
}

// Global codebook (C == 1): flat grid-stride loop, V = 16 / sizeof(T) elements per 16-byte
// load when `vec`, the codebook in shared memory padded with +inf to a multiple of 4.
template <typename T, typename I>
__global__ void __launch_bounds__(kThreads)
    nearest_fwd_global(const T* __restrict__ z, const float* __restrict__ cb, int64_t n, int K,
                       bool vec, T* __restrict__ q, I* __restrict__ idx,
                       float* __restrict__ partial) {
  constexpr int V = 16 / sizeof(T);
  __shared__ float4 s_cb4[kMaxK / 4];
  __shared__ float scratch[32];
  float* s_cb = reinterpret_cast<float*>(s_cb4);
  const int groups = (K + 3) / 4;
  __shared__ Range s_range;
  for (int k = threadIdx.x; k < 4 * groups; k += blockDim.x) s_cb[k] = k < K ? cb[k] : INFINITY;
  if (threadIdx.x == 0) {
    Range r;
    for (int k = 0; k < K; ++k) r.add(cb[k], k);
    s_range = r;
  }
  __syncthreads();
  const Range range = s_range;

  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  float sse = 0.f;
  int64_t done = 0;
  if (vec) {
    const int64_t nv = n / V;
    for (int64_t i = tid; i < nv; i += stride) {
      const Pack<T, V> zp = reinterpret_cast<const Pack<T, V>*>(z)[i];
      float zf[V];
      Argmin a[V];
#pragma unroll
      for (int j = 0; j < V; ++j) zf[j] = to_float(zp.v[j]);
      for (int g = 0; g < groups; ++g) {
        const float4 c = s_cb4[g];
#pragma unroll
        for (int j = 0; j < V; ++j) {
          a[j].step(zf[j], c.x, 4 * g);
          a[j].step(zf[j], c.y, 4 * g + 1);
          a[j].step(zf[j], c.z, 4 * g + 2);
          a[j].step(zf[j], c.w, 4 * g + 3);
        }
      }
      Pack<T, V> qp;
      Pack<I, V> ip;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        range.apply(zf[j], a[j]);
        qp.v[j] = from_float<T>(settle(zf[j], s_cb, a[j], sse));
        ip.v[j] = static_cast<I>(a[j].k);
      }
      reinterpret_cast<Pack<T, V>*>(q)[i] = qp;
      reinterpret_cast<Pack<I, V>*>(idx)[i] = ip;
    }
    done = nv * V;
  }
  for (int64_t r = done + tid; r < n; r += stride) {
    const float zf = to_float(z[r]);
    Argmin a;
    for (int k = 0; k < K; ++k) a.step(zf, s_cb[k], k);
    range.apply(zf, a);
    q[r] = from_float<T>(settle(zf, s_cb, a, sse));
    idx[r] = static_cast<I>(a.k);
  }
  sse = block_sum(sse, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = sse;
}

// Per-dim codebook (C == D): a thread takes kRows rows of one column, so one codebook load
// serves kRows elements. Work item w = (row group w / D, column w % D), grid-stride, with the
// column tracked incrementally. The codebook sits in shared memory rows of stride `ks` (odd), or
// is read from global memory when ks == 0.
template <typename T, typename I>
__global__ void __launch_bounds__(kThreads)
    nearest_fwd_rows(const T* __restrict__ z, const float* __restrict__ cb, int64_t M, int64_t D,
                     int K, int64_t ks, T* __restrict__ q, I* __restrict__ idx,
                     float* __restrict__ partial) {
  extern __shared__ float s_cb[];
  __shared__ float scratch[32];
  if (ks > 0) stage_codebook(cb, D, K, ks, s_cb);
  __syncthreads();
  const float* base = ks > 0 ? s_cb : cb;
  const int64_t row_stride = ks > 0 ? ks : K;

  const int64_t work = ceil_div(M, kRows) * D;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t dcol = stride % D, dgroup = stride / D;
  int64_t col = tid % D, group = tid / D;
  float sse = 0.f;
  for (int64_t w = tid; w < work; w += stride) {
    const float* crow = base + col * row_stride;
    float zf[kRows];
    Argmin a[kRows];
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int64_t m = group * kRows + j;
      zf[j] = m < M ? to_float(z[m * D + col]) : 0.f;
    }
    Range range;
#pragma unroll 4
    for (int k = 0; k < K; ++k) {
      const float c = crow[k];
      range.add(c, k);
#pragma unroll
      for (int j = 0; j < kRows; ++j) a[j].step(zf[j], c, k);
    }
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int64_t m = group * kRows + j;
      range.apply(zf[j], a[j]);
      if (m < M) {
        q[m * D + col] = from_float<T>(settle(zf[j], crow, a[j], sse));
        idx[m * D + col] = static_cast<I>(a[j].k);
      }
    }
    col += dcol;
    group += dgroup;
    if (col >= D) {
      col -= D;
      ++group;
    }
  }
  sse = block_sum(sse, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = sse;
}

// Launch shape of one call; the grid (= the number of partials) depends only on the sizes and
// the device.
struct FwdPlan {
  int64_t blocks;
  int64_t ks;
  size_t smem;
};

template <typename T, typename I>
FwdPlan fwd_plan(int64_t M, int64_t D, int64_t C, int64_t K) {
  constexpr int V = 16 / sizeof(T);
  FwdPlan p{0, 0, 0};
  int64_t work, resident;
  if (C == 1) {
    work = ceil_div(M * D, V);
    resident = resident_blocks(nearest_fwd_global<T, I>, kThreads, 0);
  } else {
    p.ks = smem_codebook_stride(C, K);
    p.smem = static_cast<size_t>(C * p.ks) * sizeof(float);
    work = ceil_div(M, kRows) * D;
    resident = resident_blocks(nearest_fwd_rows<T, I>, kThreads, p.smem);
  }
  const int64_t needed = ceil_div(work, kThreads);
  p.blocks = needed < resident ? needed : resident;
  p.blocks = p.blocks > 0 ? p.blocks : 1;
  return p;
}

bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

template <typename T, typename I>
Status launch_fwd(const T* z, const float* cb, int64_t M, int64_t D, int64_t C, int64_t K, T* q,
                  I* idx, float* sse, float* partial, cudaStream_t stream) {
  const FwdPlan p = fwd_plan<T, I>(M, D, C, K);
  const unsigned grid = static_cast<unsigned>(p.blocks);
  if (C == 1) {
    constexpr int V = 16 / sizeof(T);
    const uintptr_t idx_bytes = V * sizeof(I) > 16 ? 16 : V * sizeof(I);
    const bool vec = aligned(z, 16) && aligned(q, 16) && aligned(idx, idx_bytes);
    nearest_fwd_global<T, I><<<grid, kThreads, 0, stream>>>(z, cb, M * D, static_cast<int>(K),
                                                             vec, q, idx, partial);
  } else {
    if (Status s = allow_smem(nearest_fwd_rows<T, I>, p.smem)) return s;
    nearest_fwd_rows<T, I><<<grid, kThreads, p.smem, stream>>>(z, cb, M, D, static_cast<int>(K),
                                                                p.ks, q, idx, partial);
  }
  if (Status s = launch_status()) return s;
  return sum_partials(partial, p.blocks, 1, nullptr, 1.f, sse, stream);
}

}  // namespace

int64_t nearest_forward_workspace(Dtype dtype, IndexDtype index_dtype, int64_t M, int64_t D,
                                  int64_t C, int64_t K) {
  int64_t blocks = 1;
  with_dtype(dtype, [&](auto t) {
    return with_index_dtype(index_dtype, [&](auto i) -> Status {
      blocks = fwd_plan<decltype(t), decltype(i)>(M, D, C, K).blocks;
      return nullptr;
    });
  });
  return blocks;
}

Status nearest_forward(Dtype dtype, IndexDtype index_dtype, const void* z, const float* codebook,
                       int64_t M, int64_t D, int64_t C, int64_t K, void* q, void* idx,
                       float* sse, float* workspace, void* stream) {
  return with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    return with_index_dtype(index_dtype, [&](auto i) {
      using I = decltype(i);
      return launch_fwd<T, I>(static_cast<const T*>(z), codebook, M, D, C, K, static_cast<T*>(q),
                              static_cast<I*>(idx), sse, workspace,
                              static_cast<cudaStream_t>(stream));
    });
  });
}

}  // namespace fqvae_cuda
