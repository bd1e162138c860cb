"""FactorDVAE: dVAE plus ``gamma * TC`` on the soft one-hots."""

from __future__ import annotations

from typing import Any

from fqvae.models.common import check_nonneg
from fqvae.models.dvae import DVAE
from fqvae.models.tc import TCMixin
from fqvae.nn import TCDiscriminator


class FactorDVAE(TCMixin, DVAE):
    """Loss ``recon + kl_weight * KL + gamma * TC``; the discriminator reads ``(B, L, K)`` soft
    one-hots. Defaults: Shapes3D (kl 5e-3, gamma 5e-4), executed tau rate 2e-5 per batch."""

    name = "factordvae"

    def __init__(
        self,
        *,
        in_channels: int = 3,
        image_size: int = 64,
        num_latents: int,
        arch: str = "dalle",
        num_values: int = 64,
        kl_weight: float = 5e-3,
        gamma: float = 5e-4,
        tau_rate: float = 2e-5,
        tau_init: float = 1.0,
        codebook_init: str = "normal",
        repr: str = "index",
        disc_width: int = 1000,
        disc_depth: int = 4,
        **optim: Any,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            num_latents=num_latents,
            arch=arch,
            num_values=num_values,
            kl_weight=kl_weight,
            tau_rate=tau_rate,
            tau_init=tau_init,
            codebook_init=codebook_init,
            repr=repr,
            **optim,
        )
        check_nonneg(gamma=gamma)
        self.gamma = float(gamma)
        self.discriminator = TCDiscriminator(num_latents * num_values, disc_width, disc_depth)
