"""FactorVAE (Kim & Mnih 2018): the VAE plus ``gamma * TC`` with a discriminator on ``z``."""

from __future__ import annotations

from typing import Any

from fqvae.models.tc import TCMixin
from fqvae.models.vae import VAE


class FactorVAE(TCMixin, VAE):
    """Loss ``recon + kl_weight * KL + gamma * TC``; the discriminator reads ``z`` (``D_in = L``).

    Options: VAE's, plus ``gamma`` and the discriminator's ``disc_width``/``disc_depth``.
    Defaults: the FactorQVAE code's Shapes3D values (kl 1e-4, gamma 1e-4).
    """

    name = "factorvae"

    def __init__(self, *, arch: str = "dalle", gamma: float = 1e-4, **options: Any) -> None:
        super().__init__(arch=arch, gamma=gamma, **options)
