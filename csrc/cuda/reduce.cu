// Fixed-order second pass over per-block partial sums, the column plans of the backward
// kernels, and the cache of resident block counts (see common.cuh).
#include <map>
#include <mutex>
#include <tuple>

#include "common.cuh"

namespace fqvae_cuda {
namespace {

constexpr int kReduceThreads = 256;

__device__ __forceinline__ float finish(float sum, const float* scale, float divisor) {
  return (scale ? *scale : 1.f) * sum / divisor;
}

// One block per output j (for few outputs): strided per-thread sums, then block_sum.
__global__ void __launch_bounds__(kReduceThreads)
    sum_partials_block(const float* __restrict__ partial, int64_t P, int64_t W,
                       const float* __restrict__ scale, float divisor, float* __restrict__ out) {
  __shared__ float scratch[32];
  const int64_t j = blockIdx.x;
  float s = 0.f;
  for (int64_t b = threadIdx.x; b < P; b += blockDim.x) s += partial[b * W + j];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) out[j] = finish(s, scale, divisor);
}

// One thread per output j (for many outputs): a serial sum over the P partials.
__global__ void __launch_bounds__(kReduceThreads)
    sum_partials_thread(const float* __restrict__ partial, int64_t P, int64_t W,
                        const float* __restrict__ scale, float divisor, float* __restrict__ out) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= W) return;
  float s = 0.f;
  for (int64_t b = 0; b < P; ++b) s += partial[b * W + j];
  out[j] = finish(s, scale, divisor);
}

std::mutex resident_mutex;
std::map<std::tuple<const void*, int, size_t, int>, int64_t> resident_cache;

std::tuple<const void*, int, size_t, int> as_tuple(const ResidentKey& key) {
  return {key.kernel, key.threads, key.smem, key.device};
}

}  // namespace

int64_t cached_resident_blocks(const ResidentKey& key) {
  std::lock_guard<std::mutex> lock(resident_mutex);
  const auto it = resident_cache.find(as_tuple(key));
  return it == resident_cache.end() ? 0 : it->second;
}

void cache_resident_blocks(const ResidentKey& key, int64_t blocks) {
  std::lock_guard<std::mutex> lock(resident_mutex);
  resident_cache[as_tuple(key)] = blocks;
}

Status sum_partials(const float* partial, int64_t P, int64_t W, const float* scale, float divisor,
                    float* out, cudaStream_t stream) {
  if (W <= 64) {
    sum_partials_block<<<static_cast<unsigned>(W), kReduceThreads, 0, stream>>>(
        partial, P, W, scale, divisor, out);
  } else {
    sum_partials_thread<<<static_cast<unsigned>(ceil_div(W, kReduceThreads)), kReduceThreads, 0,
                          stream>>>(partial, P, W, scale, divisor, out);
  }
  return launch_status();
}

ColumnPlan column_plan(int64_t M, int64_t D, int64_t C, int64_t K, int threads,
                       int64_t resident_blocks) {
  const int64_t n = M * D;
  // Keep the partials (blocks, C, K) small next to the data.
  const int64_t cap = (n > (int64_t{1} << 20) ? n : (int64_t{1} << 20)) / (C * K);
  ColumnPlan plan{threads, 0, 0, dim3(1, 1, 1)};
  if (C <= threads) {
    plan.lanes = static_cast<int>(threads / C * C);
    int64_t blocks = resident_blocks < cap ? resident_blocks : cap;
    blocks = blocks < ceil_div(n, plan.lanes) ? blocks : ceil_div(n, plan.lanes);
    blocks = blocks > 0 ? blocks : 1;
    plan.chunk = ceil_div(ceil_div(n, blocks), plan.lanes) * plan.lanes;
    plan.grid.x = static_cast<unsigned>(ceil_div(n, plan.chunk));
  } else {
    const int64_t tiles = ceil_div(C, threads);
    int64_t blocks = resident_blocks / tiles;
    blocks = blocks < cap ? blocks : cap;
    blocks = blocks < M ? blocks : M;
    blocks = blocks > 0 ? blocks : 1;
    plan.chunk = ceil_div(M, blocks);
    plan.grid.x = static_cast<unsigned>(ceil_div(M, plan.chunk));
    plan.grid.y = static_cast<unsigned>(tiles);
  }
  return plan;
}

}  // namespace fqvae_cuda
