"""``VectorQuantize``: VQ-VAE's quantizer, ``num_embeddings`` shared vectors chosen by squared
Euclidean distance with a straight-through gradient."""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn


class VectorCodes(NamedTuple):
    """``quantized`` ``(B, L * dim)`` (straight-through), ``indices`` ``(B, L)`` int64, and the
    unweighted ``codebook`` and ``commit`` losses (0-d)."""

    quantized: Tensor
    indices: Tensor
    codebook: Tensor
    commit: Tensor


class VectorQuantize(nn.Module):
    """``num_embeddings`` shared ``dim``-d embeddings; nearest by squared Euclidean distance.

    Init (*our choice*; the spec is silent): ``U(-1/num_embeddings, 1/num_embeddings)``, as in
    the original VQ-VAE.
    """

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        bound = 1.0 / num_embeddings
        self.embeddings = nn.Parameter(torch.empty(num_embeddings, dim).uniform_(-bound, bound))

    def forward(self, z: Tensor, num_latents: int) -> VectorCodes:
        vectors = rearrange(z, "b (l d) -> b l d", l=num_latents)
        emb = self.embeddings
        dist = (vectors.square().sum(-1, keepdim=True) - 2 * vectors @ emb.T) + emb.square().sum(-1)
        indices = dist.argmin(-1)
        chosen = emb[indices]
        codebook = (vectors.detach() - chosen).square().mean()
        commit = (vectors - chosen.detach()).square().mean()
        quantized = vectors + (chosen - vectors).detach()
        return VectorCodes(rearrange(quantized, "b l d -> b (l d)"), indices, codebook, commit)

    def lookup(self, indices: Tensor) -> Tensor:
        """``(B, L * dim)`` embeddings of integer-valued ``indices`` ``(B, L)``."""
        return rearrange(self.embeddings[indices.round().long()], "b l d -> b (l d)")
