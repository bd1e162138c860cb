"""``LogitsQuantize``: dVAE's quantizer, a global codebook of K scalars read through encoder
logits with a Gumbel-softmax whose noise is fqvae's counter-based Philox stream."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae import ops
from fqvae.quantizers.scalar import QuantizeOutput
from fqvae.quantizers.stats import KL_EPS, usage_perplexity
from fqvae.schedules import ExponentialTau


def gumbel_softmax(logits: Tensor, tau: float | Tensor, seed: int | Tensor | None = None) -> Tensor:
    """``softmax((logits + g) / tau)`` over the last axis (K); soft, not straight-through.

    ``g ~ Gumbel(0, 1)`` comes from fqvae's counter-based Philox stream
    (:func:`fqvae.ops.gumbel_noise`, offset 0): entry ``k`` of row ``r`` of the logits viewed as
    ``(-1, K)`` gets the noise that :func:`fqvae.ops.quantize_gumbel` adds for element ``r``,
    entry ``k``. ``seed=None`` draws the seed from PyTorch's generator as QVAE's quantizer does
    (one ``randint``, inside the graph under ``torch.compile``). ``tau``: a float, or a 0-d
    tensor (no recompile when it changes).
    """
    k = logits.shape[-1]
    noise = ops.gumbel_noise(logits.numel() // k, k, seed, device=logits.device)
    return torch.softmax((logits + noise.view(logits.shape).to(logits.dtype)) / tau, dim=-1)


def uniform_kl(logits: Tensor) -> Tensor:
    """Mean over rows of ``sum_k q_k log(K q_k + 1e-10)``, ``q = softmax(logits)``."""
    q = torch.softmax(logits, dim=-1)
    return (q * torch.log(logits.shape[-1] * q + KL_EPS)).sum(-1).mean()


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
        self._tau = torch.tensor(float(schedule.start), dtype=torch.float64)

    @property
    def tau(self) -> float:
        """The temperature, a host float."""
        return float(self._tau)

    def set_step(self, step: int) -> None:
        self._tau.fill_(float(self.schedule(step)))

    @property
    def tau_tensor(self) -> Tensor:
        """``tau`` as a 0-d float64 CPU tensor updated in place, as
        :attr:`ScalarQuantize.tau_tensor` gives it: read it inside a compiled forward."""
        return self._tau

    def forward(
        self, head: Tensor, return_probs: bool = True, compute_loss: bool = True
    ) -> QuantizeOutput:
        """As :meth:`fqvae.ScalarQuantize.forward`; ``compute_loss=False`` gives a zero KL."""
        k = self.codebook.shape[0]
        logits = head.view(-1, self.num_latents, k)
        if self.training:
            probs = gumbel_softmax(logits, self._tau)
            indices = probs.argmax(-1)
        else:
            indices = logits.argmax(-1)
            probs = F.one_hot(indices, k).to(logits.dtype)
        value = probs @ self.codebook
        with torch.no_grad():
            usage, ppl = usage_perplexity(indices, k)
        kl = uniform_kl(logits) if compute_loss else logits.new_zeros((), dtype=torch.float32)
        return QuantizeOutput(value, indices, kl, probs, ppl, usage)
