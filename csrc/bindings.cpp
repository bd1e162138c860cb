// The fqvae._C extension module: C++ CPU kernels, plus the CUDA kernels when built with CUDA.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>

#include "cpu/ops.h"

#ifdef FQVAE_WITH_CUDA
#include "cuda/bind.h"
#endif

namespace py = pybind11;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace cpu = fqvae::cpu;
  using Release = py::call_guard<py::gil_scoped_release>;
  m.doc() = "fqvae fused kernels (C++ CPU backend; CUDA when built with it)";
#ifdef FQVAE_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("cpu_nearest_forward", &cpu::nearest_forward, Release(), py::arg("z"),
        py::arg("codebook"), py::arg("index_dtype"));
  m.def("cpu_nearest_backward", &cpu::nearest_backward, Release(), py::arg("grad_q"),
        py::arg("coef_z"), py::arg("coef_c"), py::arg("z"), py::arg("codebook"), py::arg("idx"));
  m.def("cpu_gumbel_forward", &cpu::gumbel_forward, Release(), py::arg("z"), py::arg("codebook"),
        py::arg("tau"), py::arg("seed"), py::arg("offset"), py::arg("hard"),
        py::arg("return_probs"));
  m.def("cpu_gumbel_backward", &cpu::gumbel_backward, Release(), py::arg("grad_value"),
        py::arg("grad_kl"), py::arg("grad_probs"), py::arg("z"), py::arg("codebook"),
        py::arg("tau"), py::arg("seed"), py::arg("offset"));
  m.def("cpu_permute_forward", &cpu::permute_forward, Release(), py::arg("x"), py::arg("seed"),
        py::arg("offset"));
  m.def("cpu_permute_backward", &cpu::permute_backward, Release(), py::arg("grad"),
        py::arg("perm"));
  m.def("cpu_isa", &cpu::isa_name);
  m.def("cpu_random_bits", &cpu::random_bits, Release(), py::arg("rows"), py::arg("cols"),
        py::arg("seed"), py::arg("offset"));
#ifdef FQVAE_WITH_CUDA
  fqvae_bind_cuda(m);
#endif
}
