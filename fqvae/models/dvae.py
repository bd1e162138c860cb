"""dVAE: the encoder emits ``L * K`` logits that select values of a global scalar codebook
through a Gumbel-softmax (FactorQVAE spec §1.1, §11)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae.models.common import (
    AutoencoderModel,
    check_choice,
    check_nonneg,
    codebook_traversal,
    evaluating,
)
from fqvae.models.qvae import check_tau, initial_codebook

KL_EPS = 1e-10


class LogitsQuantizeOutput(NamedTuple):
    """``value``, ``indices``: ``(B, L)``; ``probs``: ``(B, L, K)``; ``kl``, ``perplexity``: 0-d."""

    value: Tensor
    indices: Tensor
    probs: Tensor
    kl: Tensor
    perplexity: Tensor


def gumbel_softmax(logits: Tensor, tau: float) -> Tensor:
    """``softmax((logits + g) / tau)``, ``g ~ Gumbel(0, 1)`` i.i.d.; soft, not straight-through."""
    gumbels = -torch.empty_like(logits).exponential_().log()
    return torch.softmax((logits + gumbels) / tau, dim=-1)


def uniform_kl(logits: Tensor) -> Tensor:
    """Mean over rows of ``sum_k q_k log(K q_k + 1e-10)``, ``q = softmax(logits)``."""
    q = torch.softmax(logits, dim=-1)
    return (q * torch.log(logits.shape[-1] * q + KL_EPS)).sum(-1).mean()


def perplexity(indices: Tensor, num_values: int) -> Tensor:
    """``exp`` of the entropy of the index histogram."""
    p = torch.bincount(indices.flatten(), minlength=num_values).float() / max(indices.numel(), 1)
    return torch.exp(-(p * torch.log(p + KL_EPS)).sum())


class LogitsQuantize(nn.Module):
    """A global codebook of K scalars read through encoder logits ``(B, L, K)``.

    Training: ``w = gumbel_softmax(a, tau)``; eval: ``w = onehot(argmax a)``. ``value = w @ c``.
    """

    def __init__(self, codebook: Tensor, tau: float = 1.0) -> None:
        super().__init__()
        self.codebook = nn.Parameter(codebook)
        self.tau = tau

    def forward(self, logits: Tensor) -> LogitsQuantizeOutput:
        k = self.codebook.shape[0]
        if self.training:
            probs = gumbel_softmax(logits, self.tau)
            indices = probs.argmax(-1)
        else:
            indices = logits.argmax(-1)
            probs = F.one_hot(indices, k).to(logits.dtype)
        value = probs @ self.codebook
        with torch.no_grad():
            ppl = perplexity(indices, k)
        return LogitsQuantizeOutput(value, indices, probs, uniform_kl(logits), ppl)


class DVAE(AutoencoderModel):
    """Encoder head ``L * K`` logits -> :class:`LogitsQuantize` -> decoder.

    Loss ``recon + kl_weight * KL``. ``tau = tau_init * exp(-tau_rate * it)`` via :meth:`set_step`.
    ``repr``: ``"index"`` (argmax of the logits, the reference) or ``"value"``.
    """

    name = "dvae"
    discrete = True

    def __init__(
        self,
        *,
        in_channels: int = 3,
        image_size: int = 64,
        num_latents: int,
        arch: str = "dalle",
        num_values: int = 64,
        kl_weight: float = 5e-3,
        tau_rate: float = 1e-5,
        tau_init: float = 1.0,
        codebook_init: str = "normal",
        repr: str = "index",
        **optim: Any,
    ) -> None:
        if isinstance(num_values, bool) or not isinstance(num_values, int) or num_values < 2:
            raise ValueError(f"num_values must be an int >= 2, got {num_values!r}")
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            num_latents=num_latents,
            arch=arch,
            head_features=num_latents * num_values,
            **optim,
        )
        check_nonneg(kl_weight=kl_weight)
        check_tau(tau_rate, tau_init)
        self.kl_weight = float(kl_weight)
        self.num_values = num_values
        self.tau_rate, self.tau_init = float(tau_rate), float(tau_init)
        self.repr_kind = check_choice("repr", repr, ("index", "value"))
        self.latent = LogitsQuantize(initial_codebook(codebook_init, num_values), tau_init)

    def set_step(self, it: int) -> None:
        self.latent.tau = self.tau_init * math.exp(-self.tau_rate * it)

    def quantize(self, x: Tensor) -> LogitsQuantizeOutput:
        logits = self.encoder(x).view(-1, self.num_latents, self.num_values)
        return self.latent(logits)

    def _losses(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        self.check_input(x)
        q = self.quantize(x)
        recon = self.recon_loss(self.decoder(q.value), x)
        terms = {
            "loss": recon + self.kl_weight * q.kl,
            "recon": recon.detach(),
            "kl": q.kl.detach(),
            "perplexity": q.perplexity,
            "tau": recon.new_tensor(self.latent.tau),
        }
        return terms, q.probs

    def _disc_codes(self, x: Tensor) -> Tensor:
        return self.quantize(x).probs

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self._losses(x)[0]

    @torch.no_grad()
    def encode_latents(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.quantize(x).value

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        with evaluating(self):
            q = self.quantize(x)
        return q.indices if self.repr_kind == "index" else q.value

    def traversal_values(self, steps: int) -> Tensor:
        return codebook_traversal(self.latent.codebook, self.num_latents, steps)
