"""VAE (beta-VAE as configured in the FactorQVAE code, spec §11): Gaussian posterior with a
log-variance head and ``recon + kl_weight * KL``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fqvae.models.common import (
    AutoencoderModel,
    GaussianCodes,
    check_choice,
    check_nonneg,
)


def kl_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, e^logvar) || N(0, 1))`` summed over latents, averaged over the batch."""
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(1).mean()


class VAE(GaussianCodes, AutoencoderModel):
    """Encoder head ``2L``: ``mu`` then ``logvar``. Training decodes a sample, eval decodes ``mu``.

    ``repr``: ``"sample"`` (``mu + sigma * eps``, the reference) or ``"mean"``.
    """

    name = "vae"

    def __init__(
        self,
        *,
        num_latents: int,
        arch: str = "dalle",
        kl_weight: float = 1e-4,
        repr: str = "sample",
        **base: Any,
    ) -> None:
        super().__init__(num_latents=num_latents, arch=arch, head_features=2 * num_latents, **base)
        check_nonneg(kl_weight=kl_weight)
        self.kl_weight = float(kl_weight)
        self.repr_kind = check_choice("repr", repr, ("sample", "mean"))

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(mu, logvar, z)``, each ``(B, L)``; ``z`` is a reparameterised sample."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return mu, logvar, z

    def _losses(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        self.check_input(x)
        mu, logvar, z = self.posterior(x)
        recon = self.recon_loss(self.decoder(z), x)
        kl = kl_normal(mu, logvar)
        loss = recon + self.kl_weight * kl
        return {"loss": loss, "recon": recon.detach(), "kl": kl.detach()}, z

    def _disc_codes(self, x: Tensor) -> Tensor:
        return self.posterior(x)[2]

    @property
    def code_features(self) -> int:
        """Features per image of the codes ``_losses`` returns: the sample ``z``, ``L``."""
        return self.num_latents

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self._losses(x)[0]
