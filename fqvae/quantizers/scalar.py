"""``ScalarQuantize``: the drop-in scalar quantization layer (FactorQVAE and QLAE quantizers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from fqvae import ops
from fqvae.quantizers.stats import count_values, perplexity

_MODES = ("nearest", "gumbel")
_CODEBOOKS = ("global", "per_dim")
_INITS = ("linspace", "normal")


class QuantizeOutput(NamedTuple):
    """What :class:`ScalarQuantize` returns.

    ``quantized``: like the input (same shape and dtype). ``indices``: int64, like the input.
    ``loss``: 0-d float32, the weighted auxiliary loss (``kl_weight * KL`` in gumbel mode,
    ``quant_weight * Lq + commit_weight * Lc`` in nearest mode). ``probs``: the soft one-hot,
    ``input.shape + (K,)``, only when asked. ``perplexity``: 0-d float32, ``exp`` of the entropy
    of the batch's index histogram. ``usage``: int64 counts per value, ``(K,)`` for a global
    codebook or ``(D, K)`` per dimension. The last two are computed without a host sync.
    """

    quantized: Tensor
    indices: Tensor
    loss: Tensor
    probs: Tensor | None
    perplexity: Tensor
    usage: Tensor


class ScalarQuantize(nn.Module):
    """Quantize every latent scalar to one of ``num_values`` learned values.

    Args:
        num_values: codebook size K (2..256).
        num_latents: number of latents D (the size of the input's ``dim`` axis); required for
            ``codebook="per_dim"``, checked against the input when given.
        codebook: ``"global"`` (one ``(K,)`` codebook shared by all latents, FactorQVAE) or
            ``"per_dim"`` (one row of K values per latent, ``(D, K)``, QLAE).
        mode: ``"nearest"`` (hard lookup with a straight-through gradient, QLAE) or ``"gumbel"``
            (Gumbel-softmax relaxation in training, hard nearest in eval, FactorQVAE).
        dim: the latent axis: 1 for ``(B, D)`` vectors and channel-first ``(B, C, ...)`` maps,
            -1 for channel-last.
        init: ``"linspace"`` (values evenly spaced over ``init_range``), ``"normal"``
            (N(0, ``init_std``), FactorQVAE), or a tensor of shape ``(K,)`` / ``(D, K)``.
        learnable: train the values (a parameter) or keep them fixed (a buffer).
        quant_weight, commit_weight: nearest-mode loss weights (QLAE: 0.01 and 0.01).
        kl_weight: gumbel-mode weight of the KL to the uniform prior.
        tau: initial temperature; ``schedule`` (a callable ``step -> tau``, see
            :mod:`fqvae.schedules`) is applied by :meth:`set_step`.
        straight_through: gumbel mode returns ``c[argmax]`` with the soft gradient.
        hard_eval: in eval mode gumbel quantizes to the nearest value (the FactorQVAE rule).
    """

    def __init__(
        self,
        num_values: int,
        num_latents: int | None = None,
        codebook: str = "global",
        mode: str = "nearest",
        *,
        dim: int = 1,
        init: str | Tensor = "linspace",
        init_range: tuple[float, float] = (-0.5, 0.5),
        init_std: float = 1.0,
        learnable: bool = True,
        quant_weight: float = 0.01,
        commit_weight: float = 0.01,
        kl_weight: float = 1.0,
        tau: float = 1.0,
        schedule: Callable[[int], float] | None = None,
        straight_through: bool = False,
        hard_eval: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(num_values, bool) or not isinstance(num_values, int):
            raise TypeError(f"num_values must be an int, got {num_values!r}")
        if not 2 <= num_values <= ops.MAX_K:
            raise ValueError(f"num_values must be in [2, {ops.MAX_K}], got {num_values}")
        if codebook not in _CODEBOOKS:
            raise ValueError(f"codebook must be one of {_CODEBOOKS}, got {codebook!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if codebook == "per_dim" and num_latents is None:
            raise ValueError('codebook="per_dim" needs num_latents (one codebook row per latent)')
        if num_latents is not None and (not isinstance(num_latents, int) or num_latents < 1):
            raise ValueError(f"num_latents must be a positive int, got {num_latents!r}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.num_values = num_values
        self.num_latents = num_latents
        self.codebook_kind = codebook
        self.mode = mode
        self.dim = dim
        self.quant_weight = float(quant_weight)
        self.commit_weight = float(commit_weight)
        self.kl_weight = float(kl_weight)
        self.schedule = schedule
        self.straight_through = straight_through
        self.hard_eval = hard_eval
        # A CPU tensor (not a buffer): updating it in place never recompiles a compiled model.
        self._tau = torch.tensor(float(tau), dtype=torch.float64)
        values = self._initial_values(init, init_range, init_std)
        if learnable:
            self.codebook = nn.Parameter(values)
        else:
            self.register_buffer("codebook", values)

    def _initial_values(
        self, init: str | Tensor, init_range: tuple[float, float], std: float
    ) -> Tensor:
        shape = (
            (self.num_latents, self.num_values)
            if self.codebook_kind == "per_dim"
            else (self.num_values,)
        )
        if isinstance(init, Tensor):
            if tuple(init.shape) != shape:
                raise ValueError(f"init tensor must have shape {shape}, got {tuple(init.shape)}")
            if not init.dtype.is_floating_point or not bool(torch.isfinite(init).all()):
                raise ValueError("init tensor must be floating point and finite")
            return init.detach().clone().float()
        if init == "linspace":
            lo, hi = init_range
            if not lo < hi:
                raise ValueError(f"init_range must satisfy lo < hi, got {init_range}")
            return torch.linspace(lo, hi, self.num_values).expand(shape).clone()
        if init == "normal":
            return torch.randn(shape) * std
        raise ValueError(f"init must be one of {_INITS} or a tensor, got {init!r}")

    @property
    def tau(self) -> float:
        """The current Gumbel temperature."""
        return float(self._tau)

    @tau.setter
    def tau(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"tau must be > 0, got {value}")
        self._tau.fill_(float(value))

    @property
    def tau_tensor(self) -> Tensor:
        """The current Gumbel temperature as the layer holds it: a 0-d float64 CPU tensor,
        updated in place. Read this one inside a compiled forward (``tau`` is a host float)."""
        return self._tau

    def set_step(self, step: int) -> float:
        """Set ``tau`` from the schedule at ``step``; returns the new tau."""
        if self.schedule is None:
            raise ValueError("set_step needs a schedule; pass schedule=... or set .tau directly")
        self.tau = self.schedule(step)
        return self.tau

    def get_extra_state(self) -> dict[str, Any]:
        return {"tau": self.tau}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.tau = state["tau"]

    def _check_input(self, z: Tensor) -> None:
        if not isinstance(z, Tensor) or not z.is_floating_point():
            raise TypeError(
                "ScalarQuantize expects a floating-point tensor, "
                f"got {getattr(z, 'dtype', type(z))}"
            )
        if z.dim() < 1 or not -z.dim() <= self.dim < z.dim():
            raise ValueError(f"dim={self.dim} is out of range for input of shape {tuple(z.shape)}")
        if self.num_latents is not None and z.shape[self.dim] != self.num_latents:
            raise ValueError(
                f"input has {z.shape[self.dim]} latents along dim {self.dim}, "
                f"expected {self.num_latents}"
            )

    def forward(
        self, z: Tensor, return_probs: bool = False, compute_loss: bool = True
    ) -> QuantizeOutput:
        """Quantize ``z`` (any shape, latents along ``self.dim``); see :class:`QuantizeOutput`.

        ``compute_loss=False`` skips the eval-mode KL of gumbel mode (a second pass over the
        input, for logging only); ``loss`` is then 0. Use it when only the codes are needed.
        """
        self._check_input(z)
        probs = None
        if self.mode == "nearest" or (not self.training and self.hard_eval):
            near = ops.quantize_nearest(
                z,
                self.codebook,
                self.dim,
                quant_weight=self.quant_weight,
                commit_weight=self.commit_weight,
            )
            quantized, indices, loss = near
            if self.mode == "gumbel":
                if compute_loss:
                    # the KL reads the noise-free logits; seed 0 keeps the global RNG untouched
                    kl = ops.quantize_gumbel(z, self.codebook, self.dim, tau=self._tau, seed=0).kl
                    loss = self.kl_weight * kl
                else:
                    loss = torch.zeros((), device=z.device)
                if return_probs:
                    probs = nn.functional.one_hot(indices, self.num_values).to(z.dtype)
            elif return_probs:
                raise ValueError('return_probs needs mode="gumbel"')
        else:
            out = ops.quantize_gumbel(
                z,
                self.codebook,
                self.dim,
                tau=self._tau,
                hard=self.straight_through,
                return_probs=return_probs,
            )
            quantized, indices, probs = out.value, out.indices, out.probs
            loss = self.kl_weight * out.kl
        usage, perplexity = self._usage(indices)
        return QuantizeOutput(quantized, indices, loss, probs, perplexity, usage)

    @torch.no_grad()
    def _usage(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        k = self.num_values
        flat = indices.movedim(self.dim, -1)
        if self.codebook_kind == "per_dim":
            rows = torch.arange(flat.shape[-1], device=flat.device) * k
            slots, size = (flat + rows).reshape(-1), flat.shape[-1] * k
        else:
            slots, size = flat.reshape(-1), k
        counts = count_values(slots, size)
        usage = counts.view(-1, k) if self.codebook_kind == "per_dim" else counts
        p = usage.reshape(-1, k).sum(0).float() / max(indices.numel(), 1)
        return usage, perplexity(p)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Codebook values for integer ``indices`` (latents along ``self.dim``)."""
        if indices.dtype.is_floating_point:
            raise TypeError(f"indices must be integers, got {indices.dtype}")
        idx = indices.long()
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.num_values):
            raise IndexError(
                f"indices must lie in [0, {self.num_values}), got values in "
                f"[{int(idx.min())}, {int(idx.max())}]"
            )
        if self.codebook_kind == "global":
            return self.codebook[idx]
        moved = idx.movedim(self.dim, -1)
        if moved.shape[-1] != self.num_latents:
            raise ValueError(
                f"indices have {moved.shape[-1]} latents along dim {self.dim}, "
                f"expected {self.num_latents}"
            )
        rows = self.codebook.expand(*moved.shape[:-1], -1, -1)
        return torch.gather(rows, -1, moved[..., None]).squeeze(-1).movedim(-1, self.dim)

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """Indices (int64) of the nearest codebook values to ``codes``."""
        return ops.quantize_nearest(
            codes.to(self.codebook.dtype), self.codebook.detach(), self.dim
        ).indices

    def extra_repr(self) -> str:
        parts = [
            f"num_values={self.num_values}",
            f"codebook={self.codebook_kind!r}",
            f"mode={self.mode!r}",
            f"dim={self.dim}",
        ]
        if self.num_latents is not None:
            parts.insert(1, f"num_latents={self.num_latents}")
        if self.mode == "gumbel":
            parts.append(f"tau={self.tau:.4g}, kl_weight={self.kl_weight:g}")
        else:
            parts.append(
                f"quant_weight={self.quant_weight:g}, commit_weight={self.commit_weight:g}"
            )
        if not isinstance(self.codebook, nn.Parameter):
            parts.append("learnable=False")
        return ", ".join(parts)
