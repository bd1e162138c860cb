"""fqvae's operators as autograd-aware ``torch.library`` custom ops.

Public functions (stable API):

* :func:`quantize_nearest` — nearest scalar codebook lookup with a straight-through gradient and
  the fused QLAE quantization/commitment loss;
* :func:`quantize_gumbel` — Gumbel-softmax relaxed scalar quantization with the KL to the uniform
  prior;
* :func:`permute_dims` — per-latent batch permutation for total-correlation sampling.

Each public function validates its arguments, moves the latent axis last and calls a custom op
(``torch.ops.fqvae.*``). The op runs the backend chosen by :mod:`fqvae.backends` and has a fake
implementation and an autograd formula, so it works under ``torch.compile(fullgraph=True)``.
Eager calls on ordinary tensors take the op's *eager twin*: an ``autograd.Function`` that runs
the same implementation, context setup and backward without the dispatcher round trips of a
Python custom op (which cost more than a small kernel).
Random ops take a seed: an ``int``, a 0-d int64 tensor, or ``None`` to draw one from PyTorch's
default generator (so ``torch.manual_seed`` makes runs reproducible).
"""

from fqvae.ops._common import MAX_K, NonFiniteCodebook
from fqvae.ops.gumbel import MIN_TAU, quantize_gumbel
from fqvae.ops.nearest import quantize_nearest
from fqvae.ops.noise import gumbel_noise, random_bits
from fqvae.ops.permute import permute_dims
from fqvae.reference import GumbelResult, NearestResult

__all__ = [
    "MAX_K",
    "MIN_TAU",
    "GumbelResult",
    "NearestResult",
    "NonFiniteCodebook",
    "gumbel_noise",
    "permute_dims",
    "quantize_gumbel",
    "quantize_nearest",
    "random_bits",
]
