"""dVAE: the encoder emits ``L * K`` logits that select values of a global scalar codebook
through a Gumbel-softmax (FactorQVAE spec §1.1, §11). Everything but the latent is QVAE's.

The Gumbel noise comes from the same counter-based Philox stream as QVAE's and FactorQVAE's
(:mod:`fqvae.reference` documents the layout), seeded from PyTorch's default generator, so
``torch.manual_seed`` reproduces every quantized model's training noise on every backend."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae import ops
from fqvae.models.qvae import QVAE
from fqvae.quantize import QuantizeOutput
from fqvae.schedules import ExponentialTau

KL_EPS = 1e-10


def draw_seed() -> int:
    """A Philox seed from PyTorch's default generator, drawn as :mod:`fqvae.ops` draws one for
    ``seed=None`` (one ``randint``), so ``torch.manual_seed`` fixes it."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64))


def gumbel_softmax(logits: Tensor, tau: float, seed: int | None = None) -> Tensor:
    """``softmax((logits + g) / tau)`` over the last axis (K); soft, not straight-through.

    ``g ~ Gumbel(0, 1)`` comes from fqvae's counter-based Philox stream
    (:func:`fqvae.ops.gumbel_noise`, offset 0): entry ``k`` of row ``r`` of the logits viewed as
    ``(-1, K)`` gets the noise that :func:`fqvae.ops.quantize_gumbel` adds for element ``r``,
    entry ``k``. ``seed=None`` draws the seed with :func:`draw_seed`, as QVAE's quantizer does.
    """
    k = logits.shape[-1]
    seed = draw_seed() if seed is None else seed
    noise = ops.gumbel_noise(logits.numel() // k, k, seed, device=logits.device)
    return torch.softmax((logits + noise.view(logits.shape).to(logits.dtype)) / tau, dim=-1)


def uniform_kl(logits: Tensor) -> Tensor:
    """Mean over rows of ``sum_k q_k log(K q_k + 1e-10)``, ``q = softmax(logits)``."""
    q = torch.softmax(logits, dim=-1)
    return (q * torch.log(logits.shape[-1] * q + KL_EPS)).sum(-1).mean()


def usage_perplexity(indices: Tensor, num_values: int) -> tuple[Tensor, Tensor]:
    """Counts per value and ``exp`` of the entropy of the index histogram."""
    usage = torch.bincount(indices.flatten(), minlength=num_values)
    p = usage.float() / max(indices.numel(), 1)
    return usage, torch.exp(-(p * torch.log(p + KL_EPS)).sum())


class LogitsQuantize(nn.Module):
    """A global codebook of K scalars read through encoder logits ``(B, L * K)``.

    Training: ``w = gumbel_softmax(a, tau)`` (Philox noise, one seed drawn per call); eval:
    ``w = onehot(argmax a)``; ``value = w @ c``.
    Returns a :class:`QuantizeOutput` (``loss``: the KL to the uniform prior; ``probs``: ``w``,
    always). ``set_step`` sets ``tau`` from ``schedule``, as :class:`ScalarQuantize` does.
    """

    def __init__(self, codebook: Tensor, num_latents: int, schedule: ExponentialTau) -> None:
        super().__init__()
        self.codebook = nn.Parameter(codebook)
        self.num_latents = num_latents
        self.schedule = schedule
        self.tau = schedule.start

    def set_step(self, step: int) -> None:
        self.tau = self.schedule(step)

    def forward(
        self, head: Tensor, return_probs: bool = True, compute_loss: bool = True
    ) -> QuantizeOutput:
        """As :meth:`fqvae.ScalarQuantize.forward`; ``compute_loss=False`` gives a zero KL."""
        k = self.codebook.shape[0]
        logits = head.view(-1, self.num_latents, k)
        if self.training:
            probs = gumbel_softmax(logits, self.tau)
            indices = probs.argmax(-1)
        else:
            indices = logits.argmax(-1)
            probs = F.one_hot(indices, k).to(logits.dtype)
        value = probs @ self.codebook
        with torch.no_grad():
            usage, ppl = usage_perplexity(indices, k)
        kl = uniform_kl(logits) if compute_loss else logits.new_zeros((), dtype=torch.float32)
        return QuantizeOutput(value, indices, kl, probs, ppl, usage)


class DVAE(QVAE):
    """Encoder head ``L * K`` logits -> :class:`LogitsQuantize` -> decoder; the rest is QVAE's.

    Loss ``recon + kl_weight * KL``. ``tau = tau_init * exp(-tau_rate * it)`` via :meth:`set_step`.
    ``repr``: ``"index"`` (argmax of the logits, the reference) or ``"value"``.
    """

    name = "dvae"

    def __init__(
        self, *, arch: str = "dalle", num_values: int = 64, kl_weight: float = 5e-3, **options: Any
    ) -> None:
        if isinstance(num_values, bool) or not isinstance(num_values, int) or num_values < 2:
            raise ValueError(f"num_values must be an int >= 2, got {num_values!r}")
        super().__init__(arch=arch, num_values=num_values, kl_weight=kl_weight, **options)

    @staticmethod
    def head_size(num_latents: int, num_values: int) -> int:
        """The encoder's output size: K logits per latent."""
        return num_latents * num_values

    def make_latent(self, codebook: Tensor, schedule: ExponentialTau) -> nn.Module:
        return LogitsQuantize(codebook, self.num_latents, schedule)
