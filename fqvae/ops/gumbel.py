"""``quantize_gumbel``: the op, its fake, its backward op, autograd and eager twin."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from fqvae import backends
from fqvae.ops._common import (
    _acc_dtype,
    _canonical,
    _check_codebook_finite,
    _check_quantize_args,
    _eager,
    _eager_twin,
    _restore,
    _rng_tensor,
    _seed_offset,
)
from fqvae.reference import GumbelResult

MIN_TAU = 1e-20  # below it, distances over tau leave float32's range (all-NaN samples)


def _tau_value(tau: Tensor) -> float:
    value = float(tau)
    if not MIN_TAU <= value < math.inf:
        raise ValueError(
            f"tau must be finite and >= {MIN_TAU:g} (float32 cannot divide the distances by less), "
            f"got {value}"
        )
    return value


def _gumbel_impl(
    z: Tensor, codebook: Tensor, rng: Tensor, tau: Tensor, hard: bool, return_probs: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_codebook_finite(codebook)
    tau_value = _tau_value(tau)
    k = codebook.shape[-1]
    if z.numel() == 0:
        probs_shape = (*z.shape, k) if return_probs else (0,)
        return (
            torch.empty_like(z),
            torch.empty(z.shape, dtype=torch.int64, device=z.device),
            torch.zeros((), dtype=_acc_dtype(z), device=z.device),
            z.new_empty(probs_shape),
        )
    seed, offset = _seed_offset(rng)
    mod = backends.select(z.device, z.dtype)
    value, idx, kl, probs = mod.gumbel_forward(
        z, codebook, tau_value, seed, offset, hard, return_probs
    )
    return value, idx, kl, (probs if return_probs else z.new_empty((0,)))


_gumbel = torch.library.custom_op("fqvae::quantize_gumbel", _gumbel_impl, mutates_args=())


@_gumbel.register_fake
def _(z, codebook, rng, tau, hard, return_probs):
    k = codebook.shape[-1]
    probs = z.new_empty((*z.shape, k) if return_probs else (0,))
    return (
        torch.empty_like(z),
        z.new_empty(z.shape, dtype=torch.int64),
        z.new_empty((), dtype=_acc_dtype(z)),
        probs,
    )


def _gumbel_backward_impl(
    grad_value: Tensor | None,
    grad_kl: Tensor | None,
    grad_probs: Tensor | None,
    z: Tensor,
    codebook: Tensor,
    rng: Tensor,
    tau: Tensor,
) -> tuple[Tensor, Tensor]:
    if z.numel() == 0:
        return torch.zeros_like(z), torch.zeros_like(codebook)
    seed, offset = _seed_offset(rng)
    mod = backends.select(z.device, z.dtype)
    return mod.gumbel_backward(
        grad_value, grad_kl, grad_probs, z, codebook, float(tau), seed, offset
    )


_gumbel_backward = torch.library.custom_op(
    "fqvae::quantize_gumbel_backward", _gumbel_backward_impl, mutates_args=()
)


@_gumbel_backward.register_fake
def _(grad_value, grad_kl, grad_probs, z, codebook, rng, tau):
    return torch.empty_like(z), torch.empty_like(codebook)


def _gumbel_setup(ctx, inputs, output):
    z, codebook, rng, tau, _, return_probs = inputs
    ctx.return_probs = return_probs
    ctx.save_for_backward(z, codebook, rng, tau)


def _gumbel_grad(ctx, grad_value, grad_idx, grad_kl, grad_probs, backward=_gumbel_backward):
    z, codebook, rng, tau = ctx.saved_tensors
    grad_probs = grad_probs if ctx.return_probs else None
    gz, gc = backward(grad_value, grad_kl, grad_probs, z, codebook, rng, tau)
    return gz, gc, None, None, None, None


_gumbel.register_autograd(_gumbel_grad, setup_context=_gumbel_setup)
_gumbel_eager = _eager_twin(
    "QuantizeGumbel",
    _gumbel_impl,
    _gumbel_setup,
    functools.partial(_gumbel_grad, backward=_gumbel_backward_impl),
)


def quantize_gumbel(
    z: Tensor,
    codebook: Tensor,
    dim: int = -1,
    *,
    tau: float | Tensor = 1.0,
    seed: int | Tensor | None = None,
    offset: int = 0,
    hard: bool = False,
    return_probs: bool = False,
) -> GumbelResult:
    """Gumbel-softmax relaxed quantization (semantics: :func:`fqvae.reference.quantize_gumbel`).

    Args:
        z: fp16/bf16/fp32/fp64 tensor of any shape; ``dim`` is the latent axis (size D).
        codebook: ``(K,)`` global or ``(D, K)`` per-dimension, ``2 <= K <= 256``, finite.
        tau: temperature in [1e-20, inf) (a float, or a 0-d tensor to avoid recompiles under
            ``torch.compile`` when it changes every step).
        seed, offset: the noise stream; same inputs and ``(seed, offset)`` give the same output.
        hard: return ``c[argmax]`` with the soft value's gradient (straight-through).
        return_probs: also return the soft one-hot ``y`` (``z.shape + (K,)``, ``z.dtype``).
    Returns:
        ``GumbelResult(value, indices, kl, probs)``; ``kl`` is a 0-d float32 tensor (float64 for
        float64 input). Backward regenerates the noise; no ``N x K`` tensor is stored.
    """
    dim = _check_quantize_args(z, codebook, dim)
    if isinstance(tau, Tensor):
        if tau.numel() != 1 or not tau.dtype.is_floating_point:
            raise TypeError("a tensor tau must be a one-element floating-point tensor")
        tau_t = tau.detach().reshape(()).to("cpu", torch.float64)
    else:
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
            raise ValueError(f"tau must be a number > 0, got {tau!r}")
        tau_t = torch.tensor(float(tau), dtype=torch.float64)
    rng = _rng_tensor(seed, offset)
    z2, cb2, moved = _canonical(z, codebook, dim)
    op = _gumbel_eager if _eager(z2, cb2) else _gumbel
    value, idx, kl, probs = op(z2, cb2, rng, tau_t, hard, return_probs)
    k = codebook.shape[-1]
    out_probs = probs.reshape(*moved, k).movedim(-2, dim) if return_probs else None
    return GumbelResult(_restore(value, moved, dim), _restore(idx, moved, dim), kl, out_probs)


# ----------------------------------------------------------------------------- permute
