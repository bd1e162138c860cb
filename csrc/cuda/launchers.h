// Host launchers of the fqvae CUDA kernels: raw device pointers, sizes, scalars and a stream.
// Plain C++ (no CUDA, no torch headers) so the torch-facing glue compiles without CUDA headers.
//
// Layouts are the backend contract's canonical ones: z is a contiguous (M, D) tensor, the
// codebook a contiguous float32 (C, K) tensor with C == D (per-dim) or C == 1 (global),
// 1 <= K <= kMaxK. Every launcher runs on the current CUDA device (the caller sets it) and on
// `stream` (a cudaStream_t), returns nullptr on success or a static error message, and never
// synchronizes. Kernels that reduce (sse, kl, codebook gradients) write per-block partial sums
// into a float32 workspace of the size the matching *_workspace function returns, then sum them
// in a fixed order: results are deterministic for identical inputs on a given device.
#pragma once

#include <cstdint>

namespace fqvae_cuda {

using Status = const char*;

enum class Dtype : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };
enum class IndexDtype : int { kUInt8 = 0, kInt16 = 1, kInt32 = 2, kInt64 = 3 };

constexpr int64_t kMaxK = 256;
// permute_forward sorts a whole batch column in shared memory up to this batch size.
constexpr int64_t kMaxSortBatch = 8192;

// q (M, D) dtype; idx (M, D) index dtype; sse: one float, the sum of (z - q)^2.
int64_t nearest_forward_workspace(Dtype dtype, IndexDtype index_dtype, int64_t M, int64_t D,
                                  int64_t C, int64_t K);
Status nearest_forward(Dtype dtype, IndexDtype index_dtype, const void* z, const float* codebook,
                       int64_t M, int64_t D, int64_t C, int64_t K, void* q, void* idx,
                       float* sse, float* workspace, void* stream);

// gz (M, D) dtype = grad_q + coef_z * (z - q); gc (C, K) float32 = coef_c * sum (q - z) per
// (row, idx). grad_q may be null; coef_z and coef_c point to one float each on the device.
int64_t nearest_backward_workspace(Dtype dtype, IndexDtype index_dtype, int64_t M, int64_t D,
                                   int64_t C, int64_t K);
Status nearest_backward(Dtype dtype, IndexDtype index_dtype, const void* grad_q,
                        const float* coef_z, const float* coef_c, const void* z,
                        const float* codebook, const void* idx, int64_t M, int64_t D, int64_t C,
                        int64_t K, void* gz, float* gc, float* workspace, void* stream);

// value (M, D) dtype; idx (M, D) int64; kl: one float, the mean over the M * D elements;
// probs (M, D, K) dtype, written only when non-null.
int64_t gumbel_forward_workspace(Dtype dtype, int64_t M, int64_t D, int64_t C, int64_t K);
Status gumbel_forward(Dtype dtype, const void* z, const float* codebook, int64_t M, int64_t D,
                      int64_t C, int64_t K, float tau, uint64_t seed, uint32_t offset, bool hard,
                      void* value, int64_t* idx, float* kl, void* probs, float* workspace,
                      void* stream);

// gz (M, D) dtype, gc (C, K) float32. grad_value (M, D) dtype, grad_kl (one float) and
// grad_probs (M, D, K) dtype may each be null.
int64_t gumbel_backward_workspace(Dtype dtype, int64_t M, int64_t D, int64_t C, int64_t K);
Status gumbel_backward(Dtype dtype, const void* grad_value, const float* grad_kl,
                       const void* grad_probs, const void* z, const float* codebook, int64_t M,
                       int64_t D, int64_t C, int64_t K, float tau, uint64_t seed, uint32_t offset,
                       void* gz, float* gc, float* workspace, void* stream);

// x, out: (B, L) rows of row_bytes bytes each (any dtype); perm (B, L) int64. One launch:
// sorts the keys (random_u32(l, b) << 32 | b) of every column l and gathers
// out[b, l] = x[perm[b, l], l]. Needs 1 <= B <= kMaxSortBatch.
Status permute_forward(const void* x, int64_t B, int64_t L, int64_t row_bytes, uint64_t seed,
                       uint32_t offset, void* out, int64_t* perm, void* stream);
// out[b, l] = x[perm[b, l], l] (inverse == false) or out[perm[b, l], l] = x[b, l] (true).
Status permute_apply(const void* x, const int64_t* perm, int64_t B, int64_t L, int64_t row_bytes,
                     bool inverse, void* out, void* stream);

// out (rows, cols) int64: the shared Philox stream random_u32(r, c).
Status random_bits(int64_t rows, int64_t cols, uint64_t seed, uint32_t offset, int64_t* out,
                   void* stream);

}  // namespace fqvae_cuda
