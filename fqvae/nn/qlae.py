"""QLAE's conv encoder and StyleGAN-like FiLM decoder (QLAE spec §3), PyTorch default init.

At 64x64 the encoder ends at 256x4x4 and the decoder grows a learned 256x4x4 constant to 64x64;
other sizes (a multiple of 16) scale the 4x4 maps to ``S/16``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ENC_WIDTHS = (32, 32, 32, 64, 64, 64, 128, 128, 128, 256, 256, 256)
DEC_WIDTHS = (256, 256, 256, 128, 128, 128, 64, 64, 64, 32, 32, 32)
KERNELS = (3, 3, 4) * 4
STRIDES = (1, 1, 2) * 4
HIDDEN = 256


def instance_norm(channels: int, affine: bool) -> nn.GroupNorm:
    """Instance norm as the reference builds it: one group per channel, eps 1e-6."""
    return nn.GroupNorm(channels, channels, eps=1e-6, affine=affine)


class QlaeEncoder(nn.Module):
    """``(B, C, S, S) -> (B, out_features)``: 12 conv/InstanceNorm/LeakyReLU blocks, then an MLP."""

    def __init__(self, in_channels: int, image_size: int, out_features: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c, k, s in zip(ENC_WIDTHS, KERNELS, STRIDES):
            layers += [
                nn.Conv2d(c_in, c, k, stride=s, padding=1, bias=False),
                instance_norm(c, affine=True),
                nn.LeakyReLU(0.2),
            ]
            c_in = c
        self.convs = nn.Sequential(*layers)
        flat = c_in * (image_size // 16) ** 2
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, out_features),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.convs(x))


class StyleBlock(nn.Module):
    """ConvTranspose (no bias), LeakyReLU(0.2), InstanceNorm (no affine), then FiLM from ``w``.

    FiLM: ``[scale, shift] = ReLU(Linear(w))``, so both are non-negative (a reference quirk).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=1, bias=False)
        self.act = nn.LeakyReLU(0.2)
        self.norm = instance_norm(c_out, affine=False)
        self.film = nn.Linear(HIDDEN, 2 * c_out)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = self.norm(self.act(self.conv(x)))
        scale, shift = torch.relu(self.film(w)).chunk(2, dim=1)
        return x * scale[:, :, None, None] + shift[:, :, None, None]


class QlaeDecoder(nn.Module):
    """``(B, L) -> (B, C, S, S)`` logits: a learned constant modulated by ``w = MLP(z)``."""

    def __init__(self, in_features: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_features, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU()
        )
        side = image_size // 16
        self.const = nn.Parameter(torch.full((DEC_WIDTHS[0], side, side), 0.1))
        c_ins = (DEC_WIDTHS[0], *DEC_WIDTHS[:-1])
        self.blocks = nn.ModuleList(
            StyleBlock(a, b, k, s) for a, b, k, s in zip(c_ins, DEC_WIDTHS, KERNELS, STRIDES)
        )
        self.out = nn.Conv2d(DEC_WIDTHS[-1], out_channels, 3, padding=1, bias=False)

    def forward(self, z: Tensor) -> Tensor:
        w = self.mlp(z)
        x = self.const.expand(z.shape[0], *self.const.shape)
        for block in self.blocks:
            x = block(x, w)
        return self.out(x)
