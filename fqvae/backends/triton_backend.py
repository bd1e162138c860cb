"""The kernel contract (see :mod:`fqvae.backends`) on Triton kernels from ``fqvae.kernels``.

Runs on CUDA tensors, and on CPU tensors only under the Triton interpreter
(``TRITON_INTERPRET=1``, for tests). ``z`` may be fp16/bf16/fp32 (accumulation in fp32); float64
falls back to the reference. Permutations of batches above ``kernels.MAX_SORT_BATCH`` draw their
keys with the Triton stream kernel and sort them with ``torch.argsort(stable=True)`` (the same
permutation as the in-kernel sort).
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

import torch

DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.cache
def _kernels() -> ModuleType:
    """``fqvae.kernels`` when installed, else the repository's top-level ``kernels`` package."""
    try:
        return importlib.import_module("fqvae.kernels")
    except ModuleNotFoundError as exc:
        if exc.name != "fqvae.kernels":
            raise
    module = importlib.import_module("kernels")
    if not hasattr(module, "nearest_forward"):
        raise ImportError(f"{module.__name__!r} is not fqvae's Triton kernel package")
    return module


def available(device: torch.device) -> str | None:
    device = torch.device(device)
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return "Triton runs on CPU only in the interpreter (set TRITON_INTERPRET=1)"
    if device.type not in ("cpu", "cuda"):
        return f"Triton kernels do not run on {device.type} devices"
    try:
        _kernels()
    except ImportError as exc:
        return f"the Triton kernels failed to import ({exc})"
    return None


def nearest_forward(z, codebook, index_dtype):
    return _kernels().nearest_forward(z, codebook, index_dtype)


def nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx):
    return _kernels().nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx)


def gumbel_forward(z, codebook, tau, seed, offset, hard, return_probs):
    return _kernels().gumbel_forward(z, codebook, tau, seed, offset, hard, return_probs)


def gumbel_backward(grad_value, grad_kl, grad_probs, z, codebook, tau, seed, offset):
    return _kernels().gumbel_backward(
        grad_value, grad_kl, grad_probs, z, codebook, tau, seed, offset
    )


def permute_forward(x, seed, offset):
    return _kernels().permute_forward(x, seed, offset)


def permute_backward(grad, perm):
    return _kernels().permute_backward(grad, perm)


def random_bits(rows, cols, seed, offset, device):
    return _kernels().random_bits(rows, cols, seed, offset, torch.device(device))
