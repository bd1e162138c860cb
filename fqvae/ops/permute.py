"""``permute_dims``: the op, its fake, its backward op, autograd and eager twin."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from fqvae import backends
from fqvae.ops._common import (
    _check_dim,
    _eager,
    _eager_twin,
    _rng_tensor,
    _seed_offset,
)


def _permute_impl(x: Tensor, rng: Tensor) -> tuple[Tensor, Tensor]:
    seed, offset = _seed_offset(rng)
    if x.numel() == 0:
        return torch.empty_like(x), torch.empty(x.shape[:2], dtype=torch.int64, device=x.device)
    return backends.select(x.device, x.dtype).permute_forward(x, seed, offset)


_permute = torch.library.custom_op("fqvae::permute_dims", _permute_impl, mutates_args=())


@_permute.register_fake
def _(x, rng):
    return torch.empty_like(x), x.new_empty(x.shape[:2], dtype=torch.int64)


def _permute_backward_impl(grad: Tensor, perm: Tensor) -> Tensor:
    if grad.numel() == 0:
        return torch.zeros_like(grad)
    return backends.select(grad.device, grad.dtype).permute_backward(grad, perm)


_permute_backward = torch.library.custom_op(
    "fqvae::permute_dims_backward", _permute_backward_impl, mutates_args=()
)


@_permute_backward.register_fake
def _(grad, perm):
    return torch.empty_like(grad)


def _permute_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])


def _permute_grad(ctx, grad_out, grad_perm, backward=_permute_backward):
    (perm,) = ctx.saved_tensors
    return backward(grad_out.contiguous(), perm), None


_permute.register_autograd(_permute_grad, setup_context=_permute_setup)
_permute_eager = _eager_twin(
    "PermuteDims",
    _permute_impl,
    _permute_setup,
    functools.partial(_permute_grad, backward=_permute_backward_impl),
)


def permute_dims(
    x: Tensor,
    seed: int | Tensor | None = None,
    offset: int = 0,
    batch_dim: int = 0,
    dim: int = 1,
) -> Tensor:
    """Permute the batch independently for every index along ``dim``.

    ``out[b, l, ...] = x[perm_l[b], l, ...]`` where ``perm_l`` is a uniform random permutation of
    the ``batch_dim`` axis drawn for latent ``l`` (see :func:`fqvae.reference.permutations`). All
    other axes move with their slot as a unit (e.g. ``(B, L, K)`` soft one-hots move as K-vectors).
    Out of place; the gradient flows back through the inverse permutation.
    """
    if not isinstance(x, Tensor):
        raise TypeError("x must be a torch.Tensor")
    if x.dim() < 2:
        raise ValueError(
            f"x must have at least 2 dimensions (batch and latent), got shape {tuple(x.shape)}"
        )
    batch_dim = _check_dim(batch_dim, x.dim(), "batch_dim")
    dim = _check_dim(dim, x.dim(), "dim")
    if batch_dim == dim:
        raise ValueError(f"batch_dim and dim must differ, both are {dim}")
    rng = _rng_tensor(seed, offset)
    x3 = x.movedim((batch_dim, dim), (0, 1))
    moved = x3.shape
    features = math.prod(moved[2:])  # explicit: reshape(..., -1) is ambiguous for empty x
    x3 = x3.reshape(moved[0], moved[1], features).contiguous()
    out, _ = (_permute_eager if _eager(x3) else _permute)(x3, rng)
    return out.reshape(moved).movedim((0, 1), (batch_dim, dim))


# ----------------------------------------------------------------------------- the random stream
