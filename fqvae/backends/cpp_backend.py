"""The C++ CPU backend: OpenMP-parallel, vectorized kernels in ``csrc/cpu`` compiled into
``fqvae._C`` (built on first use: :mod:`fqvae.backends.extension`).

Kernels work in float32 (float64 for float64 ``z``) and take the codebook in any float dtype;
reductions (``sse``, ``kl``, codebook gradients) are summed in fixed-size groups in a fixed order,
so results do not depend on the number of threads. Gumbel noise is recomputed in backward.
The AVX2+FMA kernel variants run where the CPU has them (``cpu_isa()`` on the extension says which);
``FQVAE_CPU_GENERIC=1``, read when the extension first runs, forces the baseline variants.
"""

from __future__ import annotations

import torch

from fqvae.backends import extension

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_C = None


def available(device: torch.device) -> str | None:
    global _C
    if torch.device(device).type != "cpu":
        return f"it runs only on CPU tensors, not {torch.device(device).type}"
    reason = extension.error()
    if reason is None:
        _C = extension.load()
    return reason


def nearest_forward(z, codebook, index_dtype):
    return _C.cpu_nearest_forward(z, codebook, index_dtype)


def nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx):
    return _C.cpu_nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx)


def gumbel_forward(z, codebook, tau, seed, offset, hard, return_probs):
    return _C.cpu_gumbel_forward(z, codebook, tau, seed, offset, hard, return_probs)


def gumbel_backward(grad_value, grad_kl, grad_probs, z, codebook, tau, seed, offset):
    return _C.cpu_gumbel_backward(grad_value, grad_kl, grad_probs, z, codebook, tau, seed, offset)


def permute_forward(x, seed, offset):
    return _C.cpu_permute_forward(x, seed, offset)


def permute_backward(grad, perm):
    return _C.cpu_permute_backward(grad, perm)


def random_bits(rows, cols, seed, offset, device="cpu"):
    return _C.cpu_random_bits(rows, cols, seed, offset)
