// Shared Gumbel helpers that need ATen: the float64 noise and the argument checks.
#include <ATen/ops/from_blob.h>
#include <ATen/ops/log.h>
#include <ATen/ops/neg.h>

#include "gumbel.h"

namespace fqvae::cpu::gumbel {

// In place: u -> -log(-log(u)) with ATen's float32 log, the reference's own arithmetic.
void exact_gumbel(float* buf, int64_t count) {
  at::Tensor t = at::from_blob(buf, {count}, at::TensorOptions().dtype(at::kFloat));
  t.log_().neg_().log_().neg_();
}

Common make_common(const at::Tensor& z, const at::Tensor& codebook, const at::Tensor& ext,
                   double tau, uint64_t seed, uint32_t offset) {
  const Layout L = quantizer_layout(z, codebook);
  TORCH_CHECK(tau > 0, "tau must be > 0, got ", tau);
  return Common{L, z.data_ptr(), ext.data_ptr(), tau, seed, offset};
}

}  // namespace fqvae::cpu::gumbel
