"""QVAE: a global scalar codebook with the Gumbel-softmax relaxation and a KL to the uniform
prior (FactorQVAE spec §1, §11), without the TC term. ``codebook="per_dim"`` (one row of values
per latent, as QLAE's) is an ablation, not the paper's model."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fqvae.models.common import (
    AutoencoderModel,
    check_choice,
    check_nonneg,
    codebook_traversal,
    evaluating,
    latents_in_use,
)
from fqvae.quantizers import QuantizeOutput, ScalarQuantize
from fqvae.schedules import ExponentialTau

CODEBOOK_INITS = ("normal", "uniform")
CODEBOOKS = ("global", "per_dim")


def initial_codebook(
    kind: str, num_values: int, scale: float = 1.0, rows: int | None = None
) -> Tensor:
    """``(K,)`` values, or ``(rows, K)`` with ``rows`` (one independent draw per latent):
    ``scale`` times N(0, 1) (``"normal"``, the reference at scale 1) or U(-1/K, 1/K)
    (``"uniform"``)."""
    check_choice("codebook_init", kind, CODEBOOK_INITS)
    if not scale > 0:
        raise ValueError(f"codebook_scale must be > 0, got {scale}")
    shape = (num_values,) if rows is None else (rows, num_values)
    if kind == "normal":
        return scale * torch.randn(shape)
    return scale * torch.empty(shape).uniform_(-1.0 / num_values, 1.0 / num_values)


def check_tau(tau_rate: float, tau_init: float) -> None:
    check_nonneg(tau_rate=tau_rate, tau_init=tau_init)
    if not tau_init > 0:
        raise ValueError(f"tau_init must be > 0, got {tau_init}")


class QVAE(AutoencoderModel):
    """Encoder head ``L`` -> ``ScalarQuantize(codebook="global", mode="gumbel")`` -> decoder.

    Training decodes the soft mixture ``sum_k w_k c_k``; eval quantizes to the nearest value.
    ``tau = tau_init * exp(-tau_rate * it)`` is set by :meth:`set_step` (it = completed batches).
    ``repr``: ``"index"`` (codebook index, the reference) or ``"value"``. The codebook starts at
    ``codebook_scale`` times its ``codebook_init`` draw (1: the reference's N(0, 1)).
    ``codebook``: ``"global"`` (the paper's: K values shared by every latent) or ``"per_dim"``
    (an ablation: K values of its own for each latent, ``(L, K)``).

    dVAE reuses everything here and swaps the encoder head and the latent module
    (:meth:`head_size`, :meth:`make_latent`); the latent returns a :class:`QuantizeOutput`.
    """

    name = "qvae"
    discrete = True

    def __init__(
        self,
        *,
        num_latents: int,
        arch: str = "dalle",
        num_values: int = 64,
        kl_weight: float = 1e-3,
        tau_rate: float = 1e-5,
        tau_init: float = 1.0,
        codebook_init: str = "normal",
        codebook_scale: float = 1.0,
        codebook: str = "global",
        repr: str = "index",
        **base: Any,
    ) -> None:
        head = self.head_size(num_latents, num_values)
        super().__init__(num_latents=num_latents, arch=arch, head_features=head, **base)
        check_nonneg(kl_weight=kl_weight)
        check_tau(tau_rate, tau_init)
        self.kl_weight = float(kl_weight)
        self.num_values = num_values
        self.repr_kind = check_choice("repr", repr, ("index", "value"))
        self.codebook_kind = check_choice("codebook", codebook, CODEBOOKS)
        rows = num_latents if codebook == "per_dim" else None
        values = initial_codebook(codebook_init, num_values, codebook_scale, rows)
        self.latent = self.make_latent(values, ExponentialTau(rate=tau_rate, start=tau_init))

    @staticmethod
    def head_size(num_latents: int, num_values: int) -> int:
        """The encoder's output size: one scalar per latent."""
        return num_latents

    def make_latent(self, codebook: Tensor, schedule: ExponentialTau) -> nn.Module:
        """The latent module: the codebook ``(K,)`` or ``(L, K)`` read by a Gumbel-softmax over
        ``-(z - c)^2``."""
        return ScalarQuantize(
            codebook.shape[-1],
            self.num_latents,
            codebook=self.codebook_kind,
            mode="gumbel",
            init=codebook,
            kl_weight=1.0,
            tau=schedule.start,
            schedule=schedule,
        )

    @property
    def code_features(self) -> int:
        """Features per image of the codes ``_losses`` returns: ``(L, K)`` soft one-hots."""
        return self.num_latents * self.num_values

    def set_step(self, it: int) -> None:
        self.latent.set_step(it)

    def quantize(self, x: Tensor) -> QuantizeOutput:
        """Latent output for images ``x``; ``probs`` is the ``(B, L, K)`` soft one-hot."""
        return self.latent(self.encoder(x), return_probs=True)

    def noise_free_indices(self, head: Tensor) -> Tensor:
        """``(B, L)`` int64: the codes eval mode reads from the encoder output ``head``."""
        return self.latent.codes_to_indices(head.detach())

    def _losses(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        self.check_input(x)
        head = self.encoder(x)
        q = self.latent(head, return_probs=True)
        recon = self.recon_loss(self.decoder(q.quantized), x)
        kl = q.loss
        terms = {
            "loss": recon + self.kl_weight * kl,
            "recon": recon.detach(),
            "kl": kl.detach(),
            "perplexity": q.perplexity,
            "tau": self.latent.tau_tensor.to(recon),
            "in_use": latents_in_use(self.noise_free_indices(head)),
        }
        return terms, q.probs

    def _disc_codes(self, x: Tensor) -> Tensor:
        return self.quantize(x).probs

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self._losses(x)[0]

    @torch.no_grad()
    def encode_latents(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.latent(self.encoder(x), compute_loss=False).quantized

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        with evaluating(self):
            q = self.latent(self.encoder(x), compute_loss=False)
        return q.indices if self.repr_kind == "index" else q.quantized

    def traversal_values(self, steps: int) -> Tensor:
        return codebook_traversal(self.latent.codebook, self.num_latents, steps)
