"""The quantizers, one module each: :class:`ScalarQuantize` (FactorQVAE, QLAE),
:class:`LogitsQuantize` (dVAE) and :class:`VectorQuantize` (VQ-VAE), with their shared
statistics in :mod:`fqvae.quantizers.stats`."""

from fqvae.quantizers.logits import LogitsQuantize
from fqvae.quantizers.scalar import QuantizeOutput, ScalarQuantize
from fqvae.quantizers.vector import VectorCodes, VectorQuantize

__all__ = ["LogitsQuantize", "QuantizeOutput", "ScalarQuantize", "VectorCodes", "VectorQuantize"]
