"""The shared counter-based random stream: raw bits and Gumbel noise."""

from __future__ import annotations

import torch
from torch import Tensor

from fqvae import backends
from fqvae.ops._common import (
    _rng_tensor,
)


def random_bits(
    rows: int, cols: int, seed: int, offset: int = 0, device: torch.device | str = "cpu"
) -> Tensor:
    """The shared Philox stream as an int64 ``(rows, cols)`` tensor of uint32 values, computed by
    the selected backend (bit-identical across backends)."""
    device = torch.device(device)
    _rng_tensor(seed, offset)
    return backends.select(device, torch.float32).random_bits(rows, cols, seed, offset, device)


def gumbel_noise(
    rows: int, cols: int, seed: int, offset: int = 0, device: torch.device | str = "cpu"
) -> Tensor:
    """The Gumbel(0, 1) noise that :func:`quantize_gumbel` adds for element ``r``, entry ``k``."""
    from fqvae.reference import uniform_from_bits

    u = uniform_from_bits(random_bits(rows, cols, seed, offset, device))
    return -torch.log(-torch.log(u))
