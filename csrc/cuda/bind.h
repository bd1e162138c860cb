// Registers the CUDA backend's functions (cuda_*) on the fqvae._C module.
#pragma once

#include <torch/extension.h>

void fqvae_bind_cuda(pybind11::module_& m);
