"""dVAE: the encoder emits ``L * K`` logits that select values of a global scalar codebook
through a Gumbel-softmax (FactorQVAE spec §1.1, §11). Everything but the latent is QVAE's.

The Gumbel noise comes from the same counter-based Philox stream as QVAE's and FactorQVAE's
(:mod:`fqvae.reference` documents the layout), seeded from PyTorch's default generator, so
``torch.manual_seed`` reproduces every quantized model's training noise on every backend."""

from __future__ import annotations

from typing import Any

from einops import rearrange
from torch import Tensor, nn

from fqvae.models.qvae import QVAE
from fqvae.quantizers.logits import LogitsQuantize
from fqvae.schedules import ExponentialTau


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
        if options.get("codebook", "global") != "global":
            raise ValueError(
                f"codebook must be 'global' for {self.name} (its logits select values of one "
                f"shared codebook), got {options['codebook']!r}"
            )
        super().__init__(arch=arch, num_values=num_values, kl_weight=kl_weight, **options)

    @staticmethod
    def head_size(num_latents: int, num_values: int) -> int:
        """The encoder's output size: K logits per latent."""
        return num_latents * num_values

    def make_latent(self, codebook: Tensor, schedule: ExponentialTau) -> nn.Module:
        return LogitsQuantize(codebook, self.num_latents, schedule)

    def noise_free_indices(self, head: Tensor) -> Tensor:
        """``(B, L)`` int64: the argmax of each latent's logits in ``head`` ``(B, L * K)``."""
        return rearrange(head.detach(), "b (l k) -> b l k", l=self.num_latents).argmax(-1)
