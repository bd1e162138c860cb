// Per-column batch permutations. x, out: (B, L) rows of row_bytes bytes (any dtype), moved in
// units of U (the widest of 16/8/4/2/1 bytes that divides the row and aligns both buffers).
//   permute_fwd: one block per column l sorts the keys (random_u32(l, b) << 32 | b) of its B
//     rows in shared memory (bitonic, padded to a power of two; the keys are distinct, so this is
//     the stable argsort of the reference), writes perm[b, l] and gathers
//     out[b, l] = x[perm[b, l], l].
//   permute_apply: out[b, l] = x[perm[b, l], l], or the inverse scatter
//     out[perm[b, l], l] = x[b, l], grid-stride over (b, l, unit).
#include "common.cuh"

namespace fqvae_cuda {
namespace {

using Key = unsigned long long;

template <typename U>
__global__ void permute_fwd(const U* __restrict__ x, int64_t B, int64_t L, int64_t W, int P,
                            uint64_t seed, uint32_t offset, U* __restrict__ out,
                            int64_t* __restrict__ perm) {
  extern __shared__ Key keys[];  // (P,)
  const int64_t l = blockIdx.x;
  for (int g = threadIdx.x; 4 * g < P; g += blockDim.x) {
    const fqvae::U32x4 bits = fqvae::random_u32x4(static_cast<uint64_t>(l), g, seed, offset);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int b = 4 * g + j;
      if (b < P) keys[b] = b < B ? (static_cast<Key>(bits.v[j]) << 32) | static_cast<Key>(b) : ~Key{0};
    }
  }
  __syncthreads();
  for (int size = 2; size <= P; size <<= 1) {
    for (int half = size >> 1; half > 0; half >>= 1) {
      for (int p = threadIdx.x; p < P / 2; p += blockDim.x) {
        const int i = (p / half) * 2 * half + p % half, j = i + half;
        const Key a = keys[i], b = keys[j];
        if ((a > b) == ((i & size) == 0)) {
          keys[i] = b;
          keys[j] = a;
        }
      }
      __syncthreads();
    }
  }
  for (int64_t b = threadIdx.x; b < B; b += blockDim.x)
    perm[b * L + l] = static_cast<int64_t>(keys[b] & 0xffffffffu);
  for (int64_t i = threadIdx.x; i < B * W; i += blockDim.x) {
    const int64_t b = i / W, w = i % W;
    const int64_t src = static_cast<int64_t>(keys[b] & 0xffffffffu);
    out[(b * L + l) * W + w] = x[(src * L + l) * W + w];
  }
}

template <typename U>
__global__ void permute_apply_kernel(const U* __restrict__ x, const int64_t* __restrict__ perm,
                                     int64_t B, int64_t L, int64_t W, bool inverse,
                                     U* __restrict__ out) {
  const int64_t n = B * L * W;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t bl = i / W, w = i % W, l = bl % L;
    const int64_t p = perm[bl];
    if (static_cast<uint64_t>(p) >= static_cast<uint64_t>(B)) continue;
    const int64_t other = (p * L + l) * W + w;
    if (inverse) {
      out[other] = x[i];
    } else {
      out[i] = x[other];
    }
  }
}

// Calls f(U{}) with U the widest unit that divides row_bytes and aligns both pointers.
template <typename F>
Status with_unit(int64_t row_bytes, const void* a, const void* b, F&& f) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b) |
                         static_cast<uintptr_t>(row_bytes);
  if (bits % 16 == 0) return f(uint4{}, 16);
  if (bits % 8 == 0) return f(uint2{}, 8);
  if (bits % 4 == 0) return f(uint32_t{}, 4);
  if (bits % 2 == 0) return f(uint16_t{}, 2);
  return f(uint8_t{}, 1);
}

int next_pow2(int64_t v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

Status permute_forward(const void* x, int64_t B, int64_t L, int64_t row_bytes, uint64_t seed,
                       uint32_t offset, void* out, int64_t* perm, void* stream) {
  if (B < 1 || B > kMaxSortBatch) return "fqvae cuda: permute_forward batch size out of range";
  if (L > 0x7fffffff) return "fqvae cuda: permute_forward has too many columns";
  const int P = next_pow2(B < 2 ? 2 : B);
  const int threads = P / 2 < 32 ? 32 : (P / 2 > 1024 ? 1024 : P / 2);
  const size_t smem = static_cast<size_t>(P) * sizeof(Key);
  return with_unit(row_bytes, x, out, [&](auto u, int64_t unit) {
    using U = decltype(u);
    if (Status s = allow_smem(permute_fwd<U>, smem)) return s;
    permute_fwd<U><<<static_cast<unsigned>(L), threads, smem, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const U*>(x), B, L, row_bytes / unit, P, seed, offset, static_cast<U*>(out),
        perm);
    return launch_status();
  });
}

Status permute_apply(const void* x, const int64_t* perm, int64_t B, int64_t L, int64_t row_bytes,
                     bool inverse, void* out, void* stream) {
  return with_unit(row_bytes, x, out, [&](auto u, int64_t unit) {
    using U = decltype(u);
    constexpr int kThreads = 256;
    const int64_t W = row_bytes / unit;
    const int64_t needed = ceil_div(B * L * W, kThreads);
    const int64_t resident = resident_blocks(permute_apply_kernel<U>, kThreads, 0);
    const int64_t blocks = needed < resident ? needed : resident;
    permute_apply_kernel<U><<<static_cast<unsigned>(blocks > 0 ? blocks : 1), kThreads, 0,
                              static_cast<cudaStream_t>(stream)>>>(
        static_cast<const U*>(x), perm, B, L, W, inverse, static_cast<U*>(out));
    return launch_status();
  });
}

}  // namespace fqvae_cuda
