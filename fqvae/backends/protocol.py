"""The kernel contract as a type: every ``fqvae.backends.*_backend`` module satisfies
:class:`Backend` (``tests/test_ops_api.py`` checks the names and parameters). The semantics of
each function are documented in :mod:`fqvae.backends`."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Backend(Protocol):
    """A backend module, on canonical layouts: ``z`` ``(M, D)`` contiguous, ``codebook``
    ``(C, K)`` with ``C`` in ``{1, D}``, accumulation in float32 (float64 for float64 ``z``)."""

    DTYPES: tuple[torch.dtype, ...]

    def available(self, device: torch.device) -> str | None: ...

    def nearest_forward(
        self, z: Tensor, codebook: Tensor, index_dtype: torch.dtype
    ) -> tuple[Tensor, Tensor, Tensor]: ...

    def nearest_backward(
        self,
        grad_q: Tensor | None,
        coef_z: Tensor,
        coef_c: Tensor,
        z: Tensor,
        codebook: Tensor,
        idx: Tensor,
    ) -> tuple[Tensor, Tensor]: ...

    def gumbel_forward(
        self,
        z: Tensor,
        codebook: Tensor,
        tau: float,
        seed: int,
        offset: int,
        hard: bool,
        return_probs: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]: ...

    def gumbel_backward(
        self,
        grad_value: Tensor | None,
        grad_kl: Tensor | None,
        grad_probs: Tensor | None,
        z: Tensor,
        codebook: Tensor,
        tau: float,
        seed: int,
        offset: int,
    ) -> tuple[Tensor, Tensor]: ...

    def permute_forward(self, x: Tensor, seed: int, offset: int) -> tuple[Tensor, Tensor]: ...

    def permute_backward(self, grad: Tensor, perm: Tensor) -> Tensor: ...

    def random_bits(
        self, rows: int, cols: int, seed: int, offset: int, device: torch.device | str = "cpu"
    ) -> Tensor: ...
