// Torch-facing glue of the CUDA backend: validates tensors, allocates outputs and workspaces
// with torch, and calls the raw-pointer launchers of launchers.h. It includes no CUDA header:
// the caller (fqvae/backends/cuda_backend.py) makes the tensors' device current and passes the
// current stream as an integer handle, so every allocation and launch is ordered on that stream.
#include <torch/extension.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "bind.h"
#include "launchers.h"

namespace {

namespace fc = fqvae_cuda;
using at::Tensor;

void* as_stream(int64_t handle) { return reinterpret_cast<void*>(static_cast<intptr_t>(handle)); }

void check_status(fc::Status status, const char* op) {
  TORCH_CHECK(status == nullptr, op, " failed: ", status ? status : "");
}

fc::Dtype float_dtype(const Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return fc::Dtype::kFloat32;
    case at::kHalf:
      return fc::Dtype::kFloat16;
    case at::kBFloat16:
      return fc::Dtype::kBFloat16;
    default:
      TORCH_CHECK(false, name, " must be float16, bfloat16 or float32, got ", t.scalar_type());
  }
}

fc::IndexDtype index_dtype_of(at::ScalarType dtype) {
  switch (dtype) {
    case at::kByte:
      return fc::IndexDtype::kUInt8;
    case at::kShort:
      return fc::IndexDtype::kInt16;
    case at::kInt:
      return fc::IndexDtype::kInt32;
    case at::kLong:
      return fc::IndexDtype::kInt64;
    default:
      TORCH_CHECK(false, "index dtype must be uint8, int16, int32 or int64, got ", dtype);
  }
}

void check_device(const Tensor& t, const Tensor& like, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.device() == like.device(), name, " must be on ", like.device(),
              ", got ", t.device());
}

// Sizes of a canonical quantization call: z (M, D), codebook (C, K) with C in {1, D}.
struct Sizes {
  int64_t M, D, C, K;
};

Sizes check_quantize(const Tensor& z, const Tensor& codebook) {
  TORCH_CHECK(z.is_cuda(), "z must be a CUDA tensor, got ", z.device());
  TORCH_CHECK(z.dim() == 2 && z.is_contiguous(), "z must be a contiguous (M, D) tensor");
  float_dtype(z, "z");
  check_device(codebook, z, "codebook");
  TORCH_CHECK(codebook.dim() == 2, "codebook must be a (C, K) tensor");
  const Sizes s{z.size(0), z.size(1), codebook.size(0), codebook.size(1)};
  TORCH_CHECK(s.C == 1 || s.C == s.D, "codebook must have 1 or D = ", s.D, " rows, got ", s.C);
  TORCH_CHECK(s.K >= 1 && s.K <= fc::kMaxK, "codebook size K must be in [1, ", fc::kMaxK,
              "], got ", s.K);
  return s;
}

Tensor codebook_f32(const Tensor& codebook) { return codebook.to(at::kFloat).contiguous(); }

// An optional gradient of the given shape, in z's dtype and contiguous (undefined if absent).
Tensor grad_like(const std::optional<Tensor>& grad, const Tensor& z, at::IntArrayRef shape,
                 const char* name) {
  if (!grad.has_value() || !grad->defined()) return Tensor();
  check_device(*grad, z, name);
  TORCH_CHECK(grad->sizes() == shape, name, " must have shape ", shape, ", got ", grad->sizes());
  return grad->to(z.scalar_type()).contiguous();
}

Tensor float_scalar(const Tensor& t, const Tensor& z, const char* name) {
  check_device(t, z, name);
  TORCH_CHECK(t.numel() == 1, name, " must have one element");
  return t.to(at::kFloat).contiguous();
}

Tensor workspace(int64_t floats, const Tensor& z) {
  return at::empty({floats > 0 ? floats : 1}, z.options().dtype(at::kFloat));
}

const void* data_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
const float* float_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<float>() : nullptr;
}

std::tuple<Tensor, Tensor, Tensor> nearest_forward(const Tensor& z, const Tensor& codebook,
                                                   at::ScalarType index_dtype, int64_t stream) {
  const Sizes s = check_quantize(z, codebook);
  const fc::Dtype dtype = float_dtype(z, "z");
  const fc::IndexDtype itype = index_dtype_of(index_dtype);
  Tensor q = at::empty_like(z);
  Tensor idx = at::empty(z.sizes(), z.options().dtype(index_dtype));
  if (z.numel() == 0) return {q, idx, at::zeros({}, z.options().dtype(at::kFloat))};
  Tensor sse = at::empty({}, z.options().dtype(at::kFloat));
  const Tensor cb = codebook_f32(codebook);
  Tensor ws = workspace(fc::nearest_forward_workspace(dtype, itype, s.M, s.D, s.C, s.K), z);
  check_status(fc::nearest_forward(dtype, itype, z.data_ptr(), cb.data_ptr<float>(), s.M, s.D,
                                   s.C, s.K, q.data_ptr(), idx.data_ptr(), sse.data_ptr<float>(),
                                   ws.data_ptr<float>(), as_stream(stream)),
               "cuda_nearest_forward");
  return {q, idx, sse};
}

std::tuple<Tensor, Tensor> nearest_backward(const std::optional<Tensor>& grad_q,
                                            const Tensor& coef_z, const Tensor& coef_c,
                                            const Tensor& z, const Tensor& codebook,
                                            const Tensor& idx, int64_t stream) {
  const Sizes s = check_quantize(z, codebook);
  const fc::Dtype dtype = float_dtype(z, "z");
  check_device(idx, z, "idx");
  TORCH_CHECK(idx.sizes() == z.sizes(), "idx must have the shape of z");
  const fc::IndexDtype itype = index_dtype_of(idx.scalar_type());
  const Tensor gq = grad_like(grad_q, z, z.sizes(), "grad_q");
  const Tensor cz = float_scalar(coef_z, z, "coef_z");
  const Tensor cc = float_scalar(coef_c, z, "coef_c");
  const Tensor idx_c = idx.contiguous();
  Tensor gz = at::empty_like(z);
  if (z.numel() == 0) return {gz, at::zeros_like(codebook)};
  Tensor gc = at::empty({s.C, s.K}, z.options().dtype(at::kFloat));
  const Tensor cb = codebook_f32(codebook);
  Tensor ws = workspace(fc::nearest_backward_workspace(dtype, itype, s.M, s.D, s.C, s.K), z);
  check_status(fc::nearest_backward(dtype, itype, data_or_null(gq), cz.data_ptr<float>(),
                                    cc.data_ptr<float>(), z.data_ptr(), cb.data_ptr<float>(),
                                    idx_c.data_ptr(), s.M, s.D, s.C, s.K, gz.data_ptr(),
                                    gc.data_ptr<float>(), ws.data_ptr<float>(),
                                    as_stream(stream)),
               "cuda_nearest_backward");
  return {gz, gc.to(codebook.scalar_type())};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> gumbel_forward(const Tensor& z, const Tensor& codebook,
                                                          double tau, uint64_t seed,
                                                          int64_t offset, bool hard,
                                                          bool return_probs, int64_t stream) {
  const Sizes s = check_quantize(z, codebook);
  const fc::Dtype dtype = float_dtype(z, "z");
  TORCH_CHECK(tau > 0.0, "tau must be > 0, got ", tau);
  Tensor value = at::empty_like(z);
  Tensor idx = at::empty(z.sizes(), z.options().dtype(at::kLong));
  Tensor probs = return_probs ? at::empty({s.M, s.D, s.K}, z.options()) : Tensor();
  if (z.numel() == 0) return {value, idx, at::zeros({}, z.options().dtype(at::kFloat)), probs};
  Tensor kl = at::empty({}, z.options().dtype(at::kFloat));
  const Tensor cb = codebook_f32(codebook);
  Tensor ws = workspace(fc::gumbel_forward_workspace(dtype, s.M, s.D, s.C, s.K), z);
  check_status(fc::gumbel_forward(dtype, z.data_ptr(), cb.data_ptr<float>(), s.M, s.D, s.C, s.K,
                                  static_cast<float>(tau), seed, static_cast<uint32_t>(offset),
                                  hard, value.data_ptr(), idx.data_ptr<int64_t>(),
                                  kl.data_ptr<float>(), return_probs ? probs.data_ptr() : nullptr,
                                  ws.data_ptr<float>(), as_stream(stream)),
               "cuda_gumbel_forward");
  return {value, idx, kl, probs};
}

std::tuple<Tensor, Tensor> gumbel_backward(const std::optional<Tensor>& grad_value,
                                           const std::optional<Tensor>& grad_kl,
                                           const std::optional<Tensor>& grad_probs,
                                           const Tensor& z, const Tensor& codebook, double tau,
                                           uint64_t seed, int64_t offset, int64_t stream) {
  const Sizes s = check_quantize(z, codebook);
  const fc::Dtype dtype = float_dtype(z, "z");
  TORCH_CHECK(tau > 0.0, "tau must be > 0, got ", tau);
  const Tensor gv = grad_like(grad_value, z, z.sizes(), "grad_value");
  const Tensor gp = grad_like(grad_probs, z, {s.M, s.D, s.K}, "grad_probs");
  const Tensor gkl = grad_kl.has_value() && grad_kl->defined()
                         ? float_scalar(*grad_kl, z, "grad_kl")
                         : Tensor();
  Tensor gz = at::empty_like(z);
  if (z.numel() == 0) return {gz, at::zeros_like(codebook)};
  Tensor gc = at::empty({s.C, s.K}, z.options().dtype(at::kFloat));
  const Tensor cb = codebook_f32(codebook);
  Tensor ws = workspace(fc::gumbel_backward_workspace(dtype, s.M, s.D, s.C, s.K), z);
  check_status(fc::gumbel_backward(dtype, data_or_null(gv), float_or_null(gkl), data_or_null(gp),
                                   z.data_ptr(), cb.data_ptr<float>(), s.M, s.D, s.C, s.K,
                                   static_cast<float>(tau), seed, static_cast<uint32_t>(offset),
                                   gz.data_ptr(), gc.data_ptr<float>(), ws.data_ptr<float>(),
                                   as_stream(stream)),
               "cuda_gumbel_backward");
  return {gz, gc.to(codebook.scalar_type())};
}

void check_rows(const Tensor& x, const char* name) {
  TORCH_CHECK(x.is_cuda(), name, " must be a CUDA tensor, got ", x.device());
  TORCH_CHECK(x.dim() == 3 && x.is_contiguous(), name, " must be a contiguous (B, L, F) tensor");
}

std::tuple<Tensor, Tensor> permute_forward(const Tensor& x, uint64_t seed, int64_t offset,
                                           int64_t stream) {
  check_rows(x, "x");
  const int64_t B = x.size(0), L = x.size(1);
  Tensor out = at::empty_like(x);
  Tensor perm = at::empty({B, L}, x.options().dtype(at::kLong));
  if (x.numel() == 0) return {out, perm};
  TORCH_CHECK(B <= fc::kMaxSortBatch, "cuda_permute_forward sorts batches of at most ",
              fc::kMaxSortBatch, " in one launch, got ", B);
  check_status(fc::permute_forward(x.data_ptr(), B, L, x.size(2) * x.element_size(), seed,
                                   static_cast<uint32_t>(offset), out.data_ptr(),
                                   perm.data_ptr<int64_t>(), as_stream(stream)),
               "cuda_permute_forward");
  return {out, perm};
}

Tensor permute_backward(const Tensor& grad, const Tensor& perm, int64_t stream) {
  check_rows(grad, "grad");
  const int64_t B = grad.size(0), L = grad.size(1);
  check_device(perm, grad, "perm");
  TORCH_CHECK(perm.scalar_type() == at::kLong && perm.dim() == 2 && perm.size(0) == B &&
                  perm.size(1) == L,
              "perm must be an int64 (B, L) tensor");
  const Tensor perm_c = perm.contiguous();
  Tensor gx = at::empty_like(grad);
  if (grad.numel() == 0) return gx;
  check_status(fc::permute_apply(grad.data_ptr(), perm_c.data_ptr<int64_t>(), B, L,
                                 grad.size(2) * grad.element_size(), true, gx.data_ptr(),
                                 as_stream(stream)),
               "cuda_permute_backward");
  return gx;
}

Tensor random_bits(int64_t rows, int64_t cols, uint64_t seed, int64_t offset,
                   int64_t device_index, int64_t stream) {
  TORCH_CHECK(rows >= 0 && cols >= 0, "rows and cols must be >= 0");
  Tensor out = at::empty({rows, cols}, at::TensorOptions()
                                           .dtype(at::kLong)
                                           .device(at::kCUDA, static_cast<int>(device_index)));
  check_status(fc::random_bits(rows, cols, seed, static_cast<uint32_t>(offset),
                               out.data_ptr<int64_t>(), as_stream(stream)),
               "cuda_random_bits");
  return out;
}

}  // namespace

void fqvae_bind_cuda(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("cuda_nearest_forward", &nearest_forward, "(q, idx, sse) of nearest quantization",
        py::arg("z"), py::arg("codebook"), py::arg("index_dtype"), py::arg("stream"));
  m.def("cuda_nearest_backward", &nearest_backward, "(gz, gc) of nearest quantization",
        py::arg("grad_q"), py::arg("coef_z"), py::arg("coef_c"), py::arg("z"),
        py::arg("codebook"), py::arg("idx"), py::arg("stream"));
  m.def("cuda_gumbel_forward", &gumbel_forward, "(value, idx, kl, probs | None) of Gumbel",
        py::arg("z"), py::arg("codebook"), py::arg("tau"), py::arg("seed"), py::arg("offset"),
        py::arg("hard"), py::arg("return_probs"), py::arg("stream"));
  m.def("cuda_gumbel_backward", &gumbel_backward, "(gz, gc) of Gumbel quantization",
        py::arg("grad_value"), py::arg("grad_kl"), py::arg("grad_probs"), py::arg("z"),
        py::arg("codebook"), py::arg("tau"), py::arg("seed"), py::arg("offset"),
        py::arg("stream"));
  m.def("cuda_permute_forward", &permute_forward, "(out, perm) of the per-column permutation",
        py::arg("x"), py::arg("seed"), py::arg("offset"), py::arg("stream"));
  m.def("cuda_permute_backward", &permute_backward, "inverse scatter of the permutation",
        py::arg("grad"), py::arg("perm"), py::arg("stream"));
  m.def("cuda_random_bits", &random_bits, "(rows, cols) int64 Philox stream", py::arg("rows"),
        py::arg("cols"), py::arg("seed"), py::arg("offset"), py::arg("device_index"),
        py::arg("stream"));
  m.attr("cuda_permute_max_batch") = fc::kMaxSortBatch;
}
