"""FactorVAE: the VAE plus ``gamma * TC`` with a discriminator on the sample ``z``."""

from __future__ import annotations

from typing import Any

from fqvae.models.common import check_nonneg
from fqvae.models.tc import TCMixin
from fqvae.models.vae import VAE
from fqvae.nn import TCDiscriminator


class FactorVAE(TCMixin, VAE):
    """Loss ``recon + kl_weight * KL + gamma * TC``; the discriminator reads ``z`` (``D_in = L``).

    Defaults: the FactorQVAE code's Shapes3D values (kl 1e-4, gamma 1e-4).
    """

    name = "factorvae"

    def __init__(
        self,
        *,
        in_channels: int = 3,
        image_size: int = 64,
        num_latents: int,
        arch: str = "dalle",
        kl_weight: float = 1e-4,
        gamma: float = 1e-4,
        repr: str = "sample",
        disc_width: int = 1000,
        disc_depth: int = 4,
        **optim: Any,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            num_latents=num_latents,
            arch=arch,
            kl_weight=kl_weight,
            repr=repr,
            **optim,
        )
        check_nonneg(gamma=gamma)
        self.gamma = float(gamma)
        self.discriminator = TCDiscriminator(num_latents, disc_width, disc_depth)
