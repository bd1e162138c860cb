"""``quantize_nearest``: the op, its fake, its backward op, autograd and eager twin."""

from __future__ import annotations

import functools
import numbers

import torch
from torch import Tensor

from fqvae import backends
from fqvae.ops._common import (
    _INDEX_DTYPES,
    _acc_dtype,
    _canonical,
    _check_codebook_finite,
    _check_quantize_args,
    _eager,
    _eager_twin,
    _restore,
)
from fqvae.reference import NearestResult


def _nearest_impl(
    z: Tensor, codebook: Tensor, index_dtype: torch.dtype, quant_weight: float, commit_weight: float
) -> tuple[Tensor, Tensor, Tensor]:
    _check_codebook_finite(codebook)
    if z.numel() == 0:
        return (
            torch.empty_like(z),
            torch.empty(z.shape, dtype=index_dtype, device=z.device),
            torch.zeros((), dtype=_acc_dtype(z), device=z.device),
        )
    q, idx, sse = backends.select(z.device, z.dtype).nearest_forward(z, codebook, index_dtype)
    # quant_weight * mse + commit_weight * mse in one kernel; the extra `sse * 0` keeps the
    # reference's NaN (0 * inf) when exactly one weight is 0 and the error overflows
    loss = sse * ((quant_weight + commit_weight) / z.numel())
    if (quant_weight == 0.0) != (commit_weight == 0.0):
        loss = loss + sse * 0.0
    return q, idx, loss


_nearest = torch.library.custom_op("fqvae::quantize_nearest", _nearest_impl, mutates_args=())


@_nearest.register_fake
def _(z, codebook, index_dtype, quant_weight, commit_weight):
    loss = z.new_empty((), dtype=_acc_dtype(z))
    return torch.empty_like(z), z.new_empty(z.shape, dtype=index_dtype), loss


def _nearest_backward_impl(
    grad_q: Tensor | None, coef_z: Tensor, coef_c: Tensor, z: Tensor, codebook: Tensor, idx: Tensor
) -> tuple[Tensor, Tensor]:
    if z.numel() == 0:
        return torch.zeros_like(z), torch.zeros_like(codebook)
    mod = backends.select(z.device, z.dtype)
    return mod.nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx)


_nearest_backward = torch.library.custom_op(
    "fqvae::quantize_nearest_backward", _nearest_backward_impl, mutates_args=()
)


@_nearest_backward.register_fake
def _(grad_q, coef_z, coef_c, z, codebook, idx):
    return torch.empty_like(z), torch.empty_like(codebook)


def _nearest_setup(ctx, inputs, output):
    z, codebook, _, ctx.quant_weight, ctx.commit_weight = inputs
    ctx.save_for_backward(z, codebook, output[1])


def _nearest_grad(ctx, grad_q, grad_idx, grad_loss, backward=_nearest_backward):
    z, codebook, idx = ctx.saved_tensors
    scale = 2.0 / max(z.numel(), 1)
    if grad_loss is None:
        coef_z = coef_c = torch.zeros((), dtype=_acc_dtype(z), device=z.device)
    else:
        grad_loss = grad_loss.to(_acc_dtype(z))
        coef_z = grad_loss * (scale * ctx.commit_weight)
        coef_c = grad_loss * (scale * ctx.quant_weight)
    gz, gc = backward(grad_q, coef_z, coef_c, z, codebook, idx)
    return gz, gc, None, None, None


_nearest.register_autograd(_nearest_grad, setup_context=_nearest_setup)
_nearest_eager = _eager_twin(
    "QuantizeNearest",
    _nearest_impl,
    _nearest_setup,
    functools.partial(_nearest_grad, backward=_nearest_backward_impl),
)


def _weight(value: float, name: str) -> float:
    """A loss weight as a Python float (numbers and NumPy scalars; not tensors or bools)."""
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def quantize_nearest(
    z: Tensor,
    codebook: Tensor,
    dim: int = -1,
    *,
    quant_weight: float = 0.0,
    commit_weight: float = 0.0,
    index_dtype: torch.dtype = torch.int64,
) -> NearestResult:
    """Quantize each element of ``z`` to its nearest codebook value (see
    :func:`fqvae.reference.quantize_nearest` for the exact semantics).

    Args:
        z: fp16/bf16/fp32/fp64 tensor of any shape; ``dim`` is the latent axis (size D).
        codebook: ``(K,)`` global or ``(D, K)`` per-dimension, ``2 <= K <= 256``, finite.
        quant_weight: weight of ``mean((sg(z) - q)^2)``, the term that trains the codebook.
        commit_weight: weight of ``mean((z - sg(q))^2)``, the term that pulls ``z`` to its code.
        index_dtype: integer dtype of the returned indices.
    Returns:
        ``NearestResult(quantized, indices, loss)``: ``quantized`` like ``z`` with a
        straight-through gradient, ``indices`` shaped like ``z``, ``loss`` a 0-d float32 tensor
        (float64 for float64 input), computed in the same kernel as the lookup.
    """
    dim = _check_quantize_args(z, codebook, dim)
    if index_dtype not in _INDEX_DTYPES:
        raise TypeError(f"index_dtype must be one of {_INDEX_DTYPES}, got {index_dtype}")
    if index_dtype == torch.uint8 and codebook.shape[-1] > 256:
        raise ValueError("index_dtype=torch.uint8 holds at most 256 codebook entries")
    weights = (_weight(quant_weight, "quant_weight"), _weight(commit_weight, "commit_weight"))
    z2, cb2, moved = _canonical(z, codebook, dim)
    op = _nearest_eager if _eager(z2, cb2) else _nearest
    q, idx, loss = op(z2, cb2, index_dtype, *weights)
    return NearestResult(_restore(q, moved, dim), _restore(idx, moved, dim), loss)


# ----------------------------------------------------------------------------- gumbel
