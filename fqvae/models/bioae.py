"""BioAE: an autoencoder with non-negativity and activity penalties on its code."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fqvae.models.ae import AE
from fqvae.models.common import check_nonneg


class BioAE(AE):
    """Loss ``recon + nonneg * mean(relu(-z)) + activity * mean(z^2)`` (means over batch and
    latents). Defaults: the FactorQVAE code's Shapes3D values (1, 1e-2)."""

    name = "bioae"

    def __init__(
        self, *, arch: str = "dalle", nonneg: float = 1.0, activity: float = 1e-2, **base: Any
    ) -> None:
        super().__init__(arch=arch, **base)
        check_nonneg(nonneg=nonneg, activity=activity)
        self.nonneg, self.activity = float(nonneg), float(activity)

    def penalty(self, z: Tensor) -> dict[str, Tensor]:
        return {
            "nonneg": self.nonneg * torch.relu(-z).mean(),
            "activity": self.activity * z.pow(2).mean(),
        }
