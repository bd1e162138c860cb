"""DALL-E dVAE-style residual encoder and decoder (FactorQVAE spec §7).

At 64x64 the encoder is 128 -> 256 -> 512 channels over 64 -> 32 -> 16 pixels and the decoder
mirrors it from a 64-channel 16x16 seed map; other sizes (a multiple of 4) scale the maps.
Every Conv and Linear weight is drawn from N(0, 0.02) and every bias is 0.
"""

from __future__ import annotations

from torch import Tensor, nn

GROUPS = 3
BLOCKS_PER_GROUP = 2
POST_GAIN = 1.0 / (GROUPS * BLOCKS_PER_GROUP) ** 2


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """Draw every Conv/ConvTranspose/Linear weight in ``module`` from N(0, std); zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResBlock(nn.Module):
    """``id(x) + POST_GAIN * res(x)``; ``res`` is four ReLU+conv layers through ``o/4`` channels.

    ``kernels`` are the four conv sizes: (3, 3, 3, 1) in the encoder, (1, 3, 3, 3) in the decoder.
    """

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, int, int, int]) -> None:
        super().__init__()
        hidden = c_out // 4
        widths = [c_in, hidden, hidden, hidden, c_out]
        layers: list[nn.Module] = []
        for k, a, b in zip(kernels, widths[:-1], widths[1:]):
            layers += [nn.ReLU(), nn.Conv2d(a, b, k, padding=k // 2)]
        self.res = nn.Sequential(*layers)
        self.id = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.id(x) + POST_GAIN * self.res(x)


def enc_block(c_in: int, c_out: int) -> ResBlock:
    return ResBlock(c_in, c_out, (3, 3, 3, 1))


def dec_block(c_in: int, c_out: int) -> ResBlock:
    return ResBlock(c_in, c_out, (1, 3, 3, 3))


class DalleEncoder(nn.Module):
    """``(B, C, S, S) -> (B, out_features)``; S must be a multiple of 4."""

    def __init__(
        self, in_channels: int, image_size: int, out_features: int, channel: int = 128
    ) -> None:
        super().__init__()
        c1, c2, c3 = channel, 2 * channel, 4 * channel
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            enc_block(c1, c1), enc_block(c1, c1), nn.MaxPool2d(2),
            enc_block(c1, c2), enc_block(c2, c2), nn.MaxPool2d(2),
            enc_block(c2, c3), enc_block(c3, c3),
        )  # fmt: skip
        flat = c3 * (image_size // 4) ** 2
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.ReLU(),
            nn.Linear(flat, 128), nn.ReLU(),
            nn.Linear(128, 128), nn.ReLU(),
            nn.Linear(128, out_features),
        )  # fmt: skip
        init_normal(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.convs(x))


class DalleDecoder(nn.Module):
    """``(B, L) -> (B, C, S, S)`` unbounded outputs (no final activation)."""

    def __init__(
        self,
        in_features: int,
        out_channels: int,
        image_size: int,
        channel: int = 128,
        seed_channels: int = 64,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channel, 2 * channel, 4 * channel
        self.seed_shape = (seed_channels, image_size // 4, image_size // 4)
        self.seed = nn.Linear(in_features, seed_channels * (image_size // 4) ** 2)
        self.blocks = nn.Sequential(
            dec_block(seed_channels, c3), dec_block(c3, c3), nn.Upsample(scale_factor=2),
            dec_block(c3, c2), dec_block(c2, c2), nn.Upsample(scale_factor=2),
            dec_block(c2, c1), dec_block(c1, c1),
            nn.ReLU(), nn.Conv2d(c1, out_channels, 1),
        )  # fmt: skip
        init_normal(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.blocks(self.seed(z).view(-1, *self.seed_shape))
