"""The total-correlation discriminator (FactorQVAE spec §3)."""

from __future__ import annotations

from torch import Tensor, nn

from fqvae.nn.dalle import init_normal


class TCDiscriminator(nn.Module):
    """MLP ``(B, in_features) -> (B, 2)`` logits; logit 0 = joint sample, 1 = permuted sample.

    ``depth`` hidden-to-hidden layers of ``width`` units with LeakyReLU(0.2); the reference is
    width 1000, depth 4 (six Linear layers). Weights N(0, 0.02), biases 0.
    """

    def __init__(self, in_features: int, width: int = 1000, depth: int = 4) -> None:
        super().__init__()
        if width < 1 or depth < 0:
            raise ValueError(f"discriminator needs width >= 1 and depth >= 0, got {width}, {depth}")
        layers: list[nn.Module] = [nn.Linear(in_features, width), nn.LeakyReLU(0.2)]
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, codes: Tensor) -> Tensor:
        return self.net(codes)
