"""Triton kernels for fqvae's operators (installed as ``fqvae.kernels``).

Each module holds its ``@triton.jit`` kernels beside small launchers that take the canonical
layouts of the backend contract (:mod:`fqvae.backends`): :mod:`.philox` (the shared random stream),
:mod:`.nearest`, :mod:`.gumbel` and :mod:`.permute`.
"""

from .gumbel import gumbel_backward, gumbel_forward
from .nearest import nearest_backward, nearest_forward
from .permute import MAX_SORT_BATCH, permute_backward, permute_forward
from .philox import random_bits

__all__ = [
    "MAX_SORT_BATCH",
    "gumbel_backward",
    "gumbel_forward",
    "nearest_backward",
    "nearest_forward",
    "permute_backward",
    "permute_forward",
    "random_bits",
]
