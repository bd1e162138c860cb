// Device and launch helpers shared by the fqvae CUDA kernels (CUDA runtime headers only).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../philox.h"
#include "launchers.h"

namespace fqvae_cuda {

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ----------------------------------------------------------------------------- element types

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ bool is_finite(float v) { return fabsf(v) <= 3.402823466e+38f; }

// Calls f(T{}) with T the element type of `dtype`.
template <typename F>
Status with_dtype(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::kFloat32:
      return f(float{});
    case Dtype::kFloat16:
      return f(__half{});
    case Dtype::kBFloat16:
      return f(__nv_bfloat16{});
  }
  return "fqvae cuda: unsupported dtype";
}

// Calls f(I{}) with I the integer type of `index_dtype`.
template <typename F>
Status with_index_dtype(IndexDtype index_dtype, F&& f) {
  switch (index_dtype) {
    case IndexDtype::kUInt8:
      return f(uint8_t{});
    case IndexDtype::kInt16:
      return f(int16_t{});
    case IndexDtype::kInt32:
      return f(int32_t{});
    case IndexDtype::kInt64:
      return f(int64_t{});
  }
  return "fqvae cuda: unsupported index dtype";
}

// ----------------------------------------------------------------------------- reductions

// Sum of v over the block, valid in thread 0; fixed order, so deterministic. `scratch` holds
// 32 floats; every thread of the block must call it.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + 31) >> 5;
    v = lane < warps ? scratch[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  return v;
}

// out[j] = (scale ? *scale : 1) * sum_b partial[b * W + j] / divisor, b = 0..P-1 in fixed order.
Status sum_partials(const float* partial, int64_t P, int64_t W, const float* scale, float divisor,
                    float* out, cudaStream_t stream);

// ----------------------------------------------------------------------------- column plans

// Backward kernels give every thread one column of z (so one codebook row) and accumulate its
// codebook-gradient contributions in private shared-memory bins s_bins[k * threads + t]. A block
// then writes its (C, K) partial sums, and sum_partials adds the blocks' partials in order.
//   narrow (C <= threads): `lanes` = (threads / C) * C threads, thread t owns column t % C and
//     the flat elements start + t, start + t + lanes, ... of a block chunk of `chunk` elements;
//   wide (C > threads, lanes == 0): grid.y tiles the columns, thread t owns column
//     blockIdx.y * threads + t over a block chunk of `chunk` rows.
struct ColumnPlan {
  int threads;
  int lanes;
  int64_t chunk;
  dim3 grid;
};

struct ColumnSeq {
  int64_t first, step, end, col;
  bool active;
};

__device__ __forceinline__ ColumnSeq column_seq(int64_t M, int64_t D, int64_t C, int lanes,
                                                int64_t chunk) {
  const int t = threadIdx.x;
  ColumnSeq s;
  if (lanes > 0) {
    const int64_t n = M * D, start = blockIdx.x * chunk;
    s.first = start + t;
    s.step = lanes;
    s.end = min(n, start + chunk);
    s.col = t % C;
    s.active = t < lanes;
  } else {
    const int64_t m0 = blockIdx.x * chunk;
    s.col = static_cast<int64_t>(blockIdx.y) * blockDim.x + t;
    s.first = m0 * D + s.col;
    s.step = D;
    s.end = min(M, m0 + chunk) * D;
    s.active = s.col < D;
  }
  return s;
}

// Writes the block's partial (C, K) sums of the bins to partial + blockIdx.x * C * K (in the
// wide plan, only the block's own columns). Call after a __syncthreads().
__device__ __forceinline__ void store_bins(const float* bins, int K, int64_t C, int lanes,
                                           float* partial) {
  const int threads = blockDim.x;
  float* out = partial + static_cast<int64_t>(blockIdx.x) * C * K;
  if (lanes > 0) {
    for (int64_t o = threadIdx.x; o < C * K; o += threads) {
      const int64_t c = o / K;
      const int k = static_cast<int>(o % K);
      float s = 0.f;
      for (int64_t j = c; j < lanes; j += C) s += bins[k * threads + j];
      out[o] = s;
    }
  } else {
    const int64_t c0 = static_cast<int64_t>(blockIdx.y) * threads;
    for (int o = threadIdx.x; o < threads * K; o += threads) {
      const int t = o / K, k = o % K;
      if (c0 + t < C) out[(c0 + t) * K + k] = bins[k * threads + t];
    }
  }
}

// Threads per block for `K` private bins per thread (at most 64 KB of bins).
inline int bin_threads(int64_t K) {
  const int64_t t = (16384 / K) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : (t > 256 ? 256 : t));
}

ColumnPlan column_plan(int64_t M, int64_t D, int64_t C, int64_t K, int threads,
                       int64_t resident_blocks);

// ----------------------------------------------------------------------------- launch helpers

inline int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, value = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&value, attr, dev);
  return value;
}

// Lets `kernel` use `smem` bytes of dynamic shared memory.
template <typename Kernel>
Status allow_smem(Kernel kernel, size_t smem) {
  if (smem <= 48 * 1024) return nullptr;
  if (smem > static_cast<size_t>(device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin)))
    return "fqvae cuda: the kernel needs more shared memory than the device has";
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(smem));
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// The cache behind resident_blocks: one entry per (kernel, threads, smem, device).
struct ResidentKey {
  const void* kernel;
  int threads;
  size_t smem;
  int device;
};
int64_t cached_resident_blocks(const ResidentKey& key);  // 0 when not cached yet
void cache_resident_blocks(const ResidentKey& key, int64_t blocks);

// Blocks of `kernel` resident on the whole current device at once (at least one). Cached: the
// occupancy query costs microseconds, which count on every call of a small op.
template <typename Kernel>
int64_t resident_blocks(Kernel kernel, int threads, size_t smem) {
  int device = 0;
  cudaGetDevice(&device);
  const ResidentKey key{reinterpret_cast<const void*>(kernel), threads, smem, device};
  int64_t blocks = cached_resident_blocks(key);
  if (blocks > 0) return blocks;
  allow_smem(kernel, smem);
  int per_sm = 0;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem);
  const int64_t sms = device_attribute(cudaDevAttrMultiProcessorCount);
  blocks = static_cast<int64_t>(per_sm > 0 ? per_sm : 1) * (sms > 0 ? sms : 1);
  cache_resident_blocks(key, blocks);
  return blocks;
}

inline Status launch_status() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// A codebook of C * K floats is staged in shared memory with an odd row stride (so lanes reading
// consecutive rows hit distinct banks) when it takes at most 64 KB; returns the stride, or 0 to
// read it from global memory instead.
inline int64_t smem_codebook_stride(int64_t C, int64_t K) {
  const int64_t stride = K | 1;
  return C * stride <= 16384 ? stride : 0;
}

// Copies the (C, K) codebook into shared memory rows of `stride` floats.
__device__ __forceinline__ void stage_codebook(const float* __restrict__ cb, int64_t C, int K,
                                               int64_t stride, float* s_cb) {
  for (int64_t i = threadIdx.x; i < C * K; i += blockDim.x) s_cb[(i / K) * stride + i % K] = cb[i];
}

}  // namespace fqvae_cuda
