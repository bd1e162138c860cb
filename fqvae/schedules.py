"""Temperature schedules for Gumbel quantization: callables mapping a step to ``tau > 0``."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ConstantTau:
    """``tau(step) = value``."""

    value: float = 1.0

    def __post_init__(self) -> None:
        if not self.value > 0:
            raise ValueError(f"tau must be > 0, got {self.value}")

    def __call__(self, step: int) -> float:
        return self.value


@dataclass(frozen=True)
class ExponentialTau:
    """``tau(step) = start * exp(-rate * step)``, floored at ``minimum`` (FactorQVAE: start 1,
    rate 1e-5 per batch)."""

    rate: float = 1e-5
    start: float = 1.0
    minimum: float = 1e-4

    def __post_init__(self) -> None:
        if self.rate < 0 or not self.start > 0 or not self.minimum > 0:
            raise ValueError("ExponentialTau needs rate >= 0, start > 0 and minimum > 0")

    def __call__(self, step: int) -> float:
        return max(self.start * math.exp(-self.rate * step), self.minimum)


@dataclass(frozen=True)
class CosineTau:
    """Cosine from ``start`` to ``end`` over ``steps``, then constant at ``end``."""

    start: float = 1.0
    end: float = 0.1
    steps: int = 10000

    def __post_init__(self) -> None:
        if not (self.start > 0 and self.end > 0 and self.steps > 0):
            raise ValueError("CosineTau needs start > 0, end > 0 and steps > 0")

    def __call__(self, step: int) -> float:
        t = min(max(step, 0), self.steps) / self.steps
        return self.end + 0.5 * (self.start - self.end) * (1.0 + math.cos(math.pi * t))
