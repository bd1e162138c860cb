"""VQ-VAE, Hsu et al.'s ablation of QLAE (QLAE spec §1): each latent is a 64-d vector quantized
to the nearest of 512 shared embeddings with a straight-through gradient.

The latent values this model exchanges with the trainer and the traversal code are the integer
indices (as floats, ``(B, L)``): :meth:`VQVAE.decode_latents` looks the embeddings up.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from fqvae.models.common import HSU_OPTIM, AutoencoderModel, check_nonneg, evaluating
from fqvae.quantizers.stats import usage_perplexity
from fqvae.quantizers.vector import VectorCodes, VectorQuantize


class VQVAE(AutoencoderModel):
    """Encoder head ``L * embedding_dim`` -> :class:`VectorQuantize` -> decoder (input
    ``L * embedding_dim``).

    Loss ``recon + codebook_weight * mean((sg(z) - e)^2) + commit_weight * mean((z - sg(e))^2)``
    (means, analogous to QLAE: *our reading*), BCE with logits on ``[0, 1]`` pixels, the
    conv/style architecture and QLAE's split optimizer; ``weight_decay`` 0 (the config default;
    0.01 is the "with weight decay" variant). The representation is the embedding index per
    latent.
    """

    name = "vqvae_hsu2023"
    pixels = "unit"
    discrete = True
    optim_defaults: ClassVar[dict[str, Any]] = {**HSU_OPTIM, "weight_decay": 0.0}

    def __init__(
        self,
        *,
        arch: str = "qlae",
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        codebook_weight: float = 1.0,
        commit_weight: float = 0.25,
        **base: Any,
    ) -> None:
        for name, value in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        check_nonneg(codebook_weight=codebook_weight, commit_weight=commit_weight)
        latents = base.get("num_latents")  # validated by AutoencoderModel
        features = latents * embedding_dim if type(latents) is int and latents > 0 else None
        super().__init__(arch=arch, head_features=features, decoder_features=features, **base)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.codebook_weight, self.commit_weight = codebook_weight, commit_weight
        self.latent = VectorQuantize(num_embeddings, embedding_dim)

    def quantize(self, x: Tensor) -> tuple[Tensor, VectorCodes]:
        """The encoder output ``z`` ``(B, L * embedding_dim)`` and its quantization."""
        z = self.encoder(x)
        return z, self.latent(z, self.num_latents)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.check_input(x)
        _, q = self.quantize(x)
        recon = self.recon_loss(self.decoder(q.quantized), x)
        aux = self.codebook_weight * q.codebook + self.commit_weight * q.commit
        _, perplexity = usage_perplexity(q.indices.detach(), self.num_embeddings)
        return {
            "loss": recon + aux,
            "recon": recon.detach(),
            "quant_loss": aux.detach(),
            "perplexity": perplexity,
        }

    def decode_latents(self, z: Tensor) -> Tensor:
        return self.to_pixels(self.decoder(self.latent.lookup(z)))

    @torch.no_grad()
    def encode_latents(self, x: Tensor) -> Tensor:
        return self.representation(x).float()

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.quantize(x)[1].indices

    def traversal_values(self, steps: int) -> Tensor:
        """Embedding indices spread evenly over the codebook, the same for every latent."""
        device = self.latent.embeddings.device
        ranks = torch.linspace(0, self.num_embeddings - 1, steps, device=device).round()
        return ranks.expand(self.num_latents, -1)
