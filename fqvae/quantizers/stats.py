"""What every quantizer shares: the codebook-usage statistics."""

from __future__ import annotations

import torch
from torch import Tensor

KL_EPS = 1e-10


def perplexity(p: Tensor) -> Tensor:
    """``exp`` of the entropy of the usage distribution ``p`` (``(K,)``, summing to 1)."""
    return torch.exp(-(p * torch.log(p + KL_EPS)).sum())


def count_values(slots: Tensor, size: int) -> Tensor:
    """How often each of ``size`` slots occurs in the int64 ``slots``: ``(size,)`` int64.
    ``bincount`` on a CPU outside ``torch.compile`` (3x faster there; a host sync on a GPU, and
    a graph break under compile, since its output size depends on the data), else ``index_add_``."""
    if slots.device.type == "cpu" and not torch.compiler.is_compiling():
        return torch.bincount(slots, minlength=size)
    counts = torch.zeros(size, dtype=torch.int64, device=slots.device)
    return counts.index_add_(0, slots, torch.ones_like(slots))


def usage_perplexity(indices: Tensor, num_values: int) -> tuple[Tensor, Tensor]:
    """Counts per value and ``exp`` of the entropy of the index histogram."""
    usage = count_values(indices.flatten(), num_values)
    return usage, perplexity(usage.float() / max(indices.numel(), 1))
