"""The shared counter-based random stream: raw bits and Gumbel noise.

``random_bits`` is a custom op (``torch.ops.fqvae.random_bits``) taking the ``(seed, offset)``
pair as a tensor, so a model that draws its noise seed from PyTorch's generator
(``seed=None``) traces as one graph under ``torch.compile``."""

from __future__ import annotations

import torch
from torch import Tensor

from fqvae import backends
from fqvae.ops._common import _rng_tensor, _seed_offset


def _random_bits_impl(rng: Tensor, rows: int, cols: int, device: torch.device) -> Tensor:
    seed, offset = _seed_offset(rng)
    bits = backends.select(device, torch.float32).random_bits(rows, cols, seed, offset, device)
    return bits.contiguous()  # the reference's is a column slice


_random_bits = torch.library.custom_op("fqvae::random_bits", _random_bits_impl, mutates_args=())


@_random_bits.register_fake
def _(rng, rows, cols, device):
    return torch.empty((rows, cols), dtype=torch.int64, device=device)


def random_bits(
    rows: int,
    cols: int,
    seed: int | Tensor | None,
    offset: int = 0,
    device: torch.device | str = "cpu",
) -> Tensor:
    """The shared Philox stream as an int64 ``(rows, cols)`` tensor of uint32 values, computed by
    the selected backend (bit-identical across backends). ``seed``: an int, a one-element int64
    tensor, or ``None`` to draw one from PyTorch's default generator."""
    device = torch.device(device)
    rng = _rng_tensor(seed, offset)
    op = _random_bits if torch.compiler.is_compiling() else _random_bits_impl
    return op(rng, rows, cols, device)


def gumbel_noise(
    rows: int,
    cols: int,
    seed: int | Tensor | None,
    offset: int = 0,
    device: torch.device | str = "cpu",
) -> Tensor:
    """The float32 ``(rows, cols)`` Gumbel(0, 1) noise that :func:`quantize_gumbel` adds for
    element ``r``, entry ``k`` (``seed`` as in :func:`random_bits`)."""
    from fqvae.reference import uniform_from_bits

    u = uniform_from_bits(random_bits(rows, cols, seed, offset, device))
    return -torch.log(-torch.log(u))
