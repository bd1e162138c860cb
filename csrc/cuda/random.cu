// The shared Philox stream: out (rows, cols) int64 with out[r, c] = random_u32(r, c, seed, offset),
// one Philox call per (row, group of 4 columns), grid-stride.
#include "common.cuh"

namespace fqvae_cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    random_bits_kernel(int64_t rows, int64_t cols, uint64_t seed, uint32_t offset,
                       int64_t* __restrict__ out) {
  const int64_t groups = ceil_div(cols, 4);
  const int64_t n = rows * groups;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t r = i / groups, g = i % groups;
    const fqvae::U32x4 bits =
        fqvae::random_u32x4(static_cast<uint64_t>(r), static_cast<uint32_t>(g), seed, offset);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = 4 * g + j;
      if (c < cols) out[r * cols + c] = static_cast<int64_t>(bits.v[j]);
    }
  }
}

}  // namespace

Status random_bits(int64_t rows, int64_t cols, uint64_t seed, uint32_t offset, int64_t* out,
                   void* stream) {
  if (rows <= 0 || cols <= 0) return nullptr;
  if (cols > (int64_t{1} << 34)) return "fqvae cuda: random_bits has too many columns";
  const int64_t needed = ceil_div(rows * ceil_div(cols, 4), kThreads);
  const int64_t resident = resident_blocks(random_bits_kernel, kThreads, 0);
  const int64_t blocks = needed < resident ? needed : resident;
  random_bits_kernel<<<static_cast<unsigned>(blocks), kThreads, 0,
                       static_cast<cudaStream_t>(stream)>>>(rows, cols, seed, offset, out);
  return launch_status();
}

}  // namespace fqvae_cuda
