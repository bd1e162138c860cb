// The C++ CPU backend: the kernel contract of fqvae/backends/__init__.py on canonical layouts
// (z contiguous (M, D), codebook contiguous (C, K) with C in {1, D}).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace fqvae::cpu {

// -> (q like z, idx (M, D) of index_dtype, sse 0-d accumulate dtype)
std::tuple<at::Tensor, at::Tensor, at::Tensor> nearest_forward(const at::Tensor& z,
                                                               const at::Tensor& codebook,
                                                               at::ScalarType index_dtype);

// -> (gz like z, gc like codebook)
std::tuple<at::Tensor, at::Tensor> nearest_backward(const std::optional<at::Tensor>& grad_q,
                                                    const at::Tensor& coef_z,
                                                    const at::Tensor& coef_c, const at::Tensor& z,
                                                    const at::Tensor& codebook,
                                                    const at::Tensor& idx);

// -> (value like z, idx (M, D) int64, kl 0-d accumulate dtype, probs (M, D, K) like z or none)
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::optional<at::Tensor>> gumbel_forward(
    const at::Tensor& z, const at::Tensor& codebook, double tau, uint64_t seed, uint32_t offset,
    bool hard, bool return_probs);

// -> (gz like z, gc like codebook)
std::tuple<at::Tensor, at::Tensor> gumbel_backward(const std::optional<at::Tensor>& grad_value,
                                                   const std::optional<at::Tensor>& grad_kl,
                                                   const std::optional<at::Tensor>& grad_probs,
                                                   const at::Tensor& z, const at::Tensor& codebook,
                                                   double tau, uint64_t seed, uint32_t offset);

// x (B, L, F) contiguous -> (out like x, perm (B, L) int64)
std::tuple<at::Tensor, at::Tensor> permute_forward(const at::Tensor& x, uint64_t seed,
                                                   uint32_t offset);

// grad (B, L, F), perm (B, L) int64 -> gx like grad
at::Tensor permute_backward(const at::Tensor& grad, const at::Tensor& perm);

// "avx2" or "generic": the kernel variant this process runs
const char* isa_name();

// -> (rows, cols) int64 of uint32 values: the shared Philox stream
at::Tensor random_bits(int64_t rows, int64_t cols, uint64_t seed, uint32_t offset);

}  // namespace fqvae::cpu
