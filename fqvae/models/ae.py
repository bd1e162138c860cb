"""AE: a deterministic autoencoder with MSE loss (FactorQVAE spec §11)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fqvae.models.common import AutoencoderModel, evaluating


class AE(AutoencoderModel):
    """Plain autoencoder; the representation is the raw encoder output ``(B, L)``."""

    name = "ae"

    def __init__(self, *, arch: str = "dalle", **base: Any) -> None:
        super().__init__(arch=arch, **base)

    def penalty(self, z: Tensor) -> dict[str, Tensor]:
        """Extra 0-d loss terms on the code ``z`` (none for the plain AE)."""
        return {}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.check_input(x)
        z = self.encoder(x)
        recon = self.recon_loss(self.decoder(z), x)
        extra = self.penalty(z)
        loss = recon + sum(extra.values())
        return {"loss": loss, "recon": recon.detach(), **{k: v.detach() for k, v in extra.items()}}

    @torch.no_grad()
    def encode_latents(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.encoder(x)

    def representation(self, x: Tensor) -> Tensor:
        return self.encode_latents(x)
