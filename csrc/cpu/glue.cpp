#include "glue.h"

#include <ATen/ops/empty.h>

#include "ops.h"

namespace fqvae::cpu {

IndexType index_type(at::ScalarType type) {
  switch (type) {
    case at::kByte:
      return IndexType::kU8;
    case at::kShort:
      return IndexType::kI16;
    case at::kInt:
      return IndexType::kI32;
    case at::kLong:
      return IndexType::kI64;
    default:
      TORCH_CHECK(false, "index dtype must be uint8, int16, int32 or int64, got ", type);
  }
}

at::ScalarType acc_type(const at::Tensor& z) {
  return z.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

Layout quantizer_layout(const at::Tensor& z, const at::Tensor& codebook) {
  check_cpu(z, "z");
  check_cpu(codebook, "codebook");
  TORCH_CHECK(z.dim() == 2 && codebook.dim() == 2, "z must be (M, D) and codebook (C, K)");
  const int64_t rows = codebook.size(0), K = codebook.size(1);
  TORCH_CHECK(rows == 1 || rows == z.size(1), "codebook rows must be 1 or D = ", z.size(1));
  TORCH_CHECK(K >= 1 && K <= 65536, "codebook size must be in [1, 65536], got ", K);
  return Layout{z.numel(), rows, static_cast<int>(K), rows + kLanes,
                Groups(z.numel(), K * (rows + kLanes))};
}

at::Tensor tile_codebook(const at::Tensor& codebook, at::ScalarType acc) {
  const int64_t rows = codebook.size(0), width = rows + kLanes;
  const at::Tensor cbt = codebook.to(acc).t();  // (K, C)
  return cbt.repeat({1, (width + rows - 1) / rows}).narrow(1, 0, width).contiguous();
}

at::Tensor fold_codebook_partials(const std::vector<double>& partials, int64_t groups,
                                  int64_t rows, int64_t K, double scale, at::ScalarType dtype) {
  const int64_t width = rows + kLanes, cells = K * width;
  std::vector<double> total(static_cast<size_t>(rows * K), 0.0);
  for (int64_t g = 0; g < groups; ++g) {
    const double* part = partials.data() + g * cells;
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t j = 0; j < width; ++j) total[(j % rows) * K + k] += part[k * width + j];
    }
  }
  at::Tensor out = at::empty({rows, K}, at::TensorOptions().dtype(at::kDouble));
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < rows * K; ++i) o[i] = scale * total[i];
  return out.to(dtype);
}

double sum_in_order(const std::vector<double>& partials) {
  double total = 0.0;
  for (double p : partials) total += p;
  return total;
}

const char* isa_name() { return cpu_has_avx2() ? "avx2" : "generic"; }

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

}  // namespace fqvae::cpu
