"""FactorQVAE (Baykal et al. 2024): QVAE plus ``gamma * TC`` on the soft one-hots."""

from __future__ import annotations

from typing import Any

from fqvae.models.qvae import QVAE
from fqvae.models.tc import TCMixin


class FactorQVAE(TCMixin, QVAE):
    """Loss ``MSE + kl_weight * KL + gamma * TC``; the discriminator reads the ``(B, L, K)``
    soft one-hots (``D_in = L * K``). Soft (Gumbel) in training, hard nearest in eval.

    Options: QVAE's, plus ``gamma`` and the discriminator's ``disc_width``/``disc_depth``.
    Defaults: the reference's Shapes3D weights (kl 1e-3, gamma 1e-4) and its executed tau
    schedule, ``tau_rate = 2e-5`` per batch (spec §9).
    """

    name = "factorqvae"

    def __init__(
        self, *, arch: str = "dalle", gamma: float = 1e-4, tau_rate: float = 2e-5, **options: Any
    ) -> None:
        super().__init__(arch=arch, gamma=gamma, tau_rate=tau_rate, **options)
