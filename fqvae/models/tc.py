"""Total-correlation penalty with a density-ratio discriminator (FactorQVAE spec §3-5)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae import ops
from fqvae.models.common import check_nonneg, frozen_call
from fqvae.nn import TCDiscriminator


def tc_estimate(disc: nn.Module, codes: Tensor) -> Tensor:
    """``mean_b(D(codes)[:, 0] - D(codes)[:, 1])`` with D's parameters frozen (detached), so the
    gradient reaches ``codes`` only. ``codes``: ``(B, L, K)`` soft one-hots or ``(B, L)``."""
    logits = frozen_call(disc, codes.flatten(1))
    return (logits[:, 0] - logits[:, 1]).mean()


def discriminator_terms(disc: nn.Module, codes: Tensor, other: Tensor) -> dict[str, Tensor]:
    """Spec §5 safe form: ``0.5 * (CE(D(codes), 0) + CE(D(permute_dims(other)), 1))``.

    ``codes`` are detached here; ``other`` (codes of the other half-batch) must carry no graph.
    Returns ``loss`` and ``disc_acc`` (the fraction of both halves classified correctly).
    Both halves go through D as one batch: one pass of twice the rows costs about two thirds
    of two passes on a CPU.
    """
    perm = ops.permute_dims(other.detach())
    logits = disc(torch.cat([codes.detach().flatten(1), perm.flatten(1)]))
    d_real, d_perm = logits.split([len(codes), len(perm)])
    zeros = torch.zeros(len(d_real), dtype=torch.long, device=d_real.device)
    ones = torch.ones(len(d_perm), dtype=torch.long, device=d_perm.device)
    loss = 0.5 * (F.cross_entropy(d_real, zeros) + F.cross_entropy(d_perm, ones))
    correct = (d_real.argmax(1) == 0).sum() + (d_perm.argmax(1) == 1).sum()
    return {"loss": loss, "disc_acc": correct.float() / (len(d_real) + len(d_perm))}


class TCMixin:
    """Adds ``gamma * TC`` to a model's loss and the discriminator update; FactorVAE, FactorDVAE
    and FactorQVAE are this mixin in front of VAE, dVAE and QVAE.

    The host model implements ``_losses(x) -> (terms, codes)`` (the codes carry gradient),
    ``_disc_codes(x)`` (the codes alone) and ``code_features`` (features per image of the
    codes: the discriminator's input size). This mixin registers the ``TCDiscriminator``
    (``disc_depth`` hidden layers of ``disc_width`` units) as the submodule ``discriminator``.
    Training splits each batch (see :mod:`fqvae.models.base`). The TC weight is 0 for the first
    ``gamma_delay`` batches, then ramps linearly to ``gamma`` over ``gamma_warmup`` batches
    (both 0, the papers': the full weight from the first batch).
    """

    has_discriminator = True

    def __init__(
        self,
        *,
        gamma: float,
        gamma_warmup: int = 0,
        gamma_delay: int = 0,
        disc_width: int = 1000,
        disc_depth: int = 4,
        **host: Any,
    ) -> None:
        super().__init__(**host)
        check_nonneg(gamma=gamma)
        for key, steps in (("gamma_warmup", gamma_warmup), ("gamma_delay", gamma_delay)):
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                raise ValueError(f"{key} must be an int >= 0, got {steps!r}")
        self.gamma = float(gamma)
        self.gamma_warmup = gamma_warmup
        self.gamma_delay = gamma_delay
        self.gamma_now = self._gamma_at(0)
        self.discriminator = TCDiscriminator(self.code_features, disc_width, disc_depth)

    def _gamma_at(self, it: int) -> float:
        """The TC weight at batch ``it`` (completed batches)."""
        since = it - self.gamma_delay
        if since < 0:
            return 0.0
        return self.gamma * min(1.0, since / self.gamma_warmup) if self.gamma_warmup else self.gamma

    def set_step(self, it: int) -> None:
        super().set_step(it)
        self.gamma_now = self._gamma_at(it)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        terms, codes = self._losses(x)
        tc = tc_estimate(self.discriminator, codes)
        weighted = self.gamma_now * tc
        terms["loss"] = terms["loss"] + weighted
        terms.update(tc_raw=tc.detach(), tc_weighted=weighted.detach(), codes=codes.detach())
        return terms

    def discriminator_loss(self, codes: Tensor, x_other: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            other = self._disc_codes(x_other)
        return discriminator_terms(self.discriminator, codes, other)
