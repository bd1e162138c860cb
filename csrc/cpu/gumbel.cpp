// Shared Gumbel helpers that need ATen: the float64 noise and the argument checks.
#include <ATen/ops/from_blob.h>
#include <ATen/ops/log_cpu_dispatch.h>
#include <ATen/ops/neg_cpu_dispatch.h>

#include "gumbel.h"

namespace fqvae::cpu::gumbel {

// Calls the CPU kernels directly (no dispatcher): this runs inside the kernels' worker threads,
// where the caller's dispatch state (e.g. a Python dispatch mode) must not apply.
void exact_gumbel(float* buf, int64_t count) {
  at::Tensor t = at::from_blob(buf, {count}, at::TensorOptions().dtype(at::kFloat));
  at::cpu::neg_(at::cpu::log_(at::cpu::neg_(at::cpu::log_(t))));
}

Common make_common(const at::Tensor& z, const at::Tensor& codebook, const at::Tensor& ext,
                   double tau, uint64_t seed, uint32_t offset) {
  const Layout L = quantizer_layout(z, codebook);
  TORCH_CHECK(tau > 0, "tau must be > 0, got ", tau);
  return Common{L, z.data_ptr(), ext.data_ptr(), tau, seed, offset};
}

}  // namespace fqvae::cpu::gumbel
