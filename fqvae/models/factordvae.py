"""FactorDVAE: dVAE plus ``gamma * TC`` on the soft one-hots."""

from __future__ import annotations

from typing import Any

from fqvae.models.dvae import DVAE
from fqvae.models.tc import TCMixin


class FactorDVAE(TCMixin, DVAE):
    """Loss ``recon + kl_weight * KL + gamma * TC``; the discriminator reads ``(B, L, K)`` soft
    one-hots. Options: dVAE's, plus ``gamma`` and the discriminator's ``disc_width``/
    ``disc_depth``. Defaults: Shapes3D (kl 5e-3, gamma 5e-4), executed tau rate 2e-5 per batch.
    """

    name = "factordvae"

    def __init__(
        self, *, arch: str = "dalle", gamma: float = 5e-4, tau_rate: float = 2e-5, **options: Any
    ) -> None:
        super().__init__(arch=arch, gamma=gamma, tau_rate=tau_rate, **options)
