"""A small, fast conv encoder/decoder for CPU tests and the demo (``arch="small"``).

Four stride-2 convs take ``S`` (a multiple of 16; 32 and 64 in practice) down to ``S/16``;
the decoder mirrors them with transposed convs. PyTorch default init.
"""

from __future__ import annotations

from torch import Tensor, nn

WIDTHS = (32, 32, 64, 64)
HIDDEN = 128


class SmallEncoder(nn.Module):
    """``(B, C, S, S) -> (B, out_features)``."""

    def __init__(self, in_channels: int, image_size: int, out_features: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *WIDTHS[:-1]), WIDTHS):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        flat = WIDTHS[-1] * (image_size // 16) ** 2
        self.net = nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(flat, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SmallDecoder(nn.Module):
    """``(B, L) -> (B, C, S, S)`` unbounded outputs."""

    def __init__(self, in_features: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        side = image_size // 16
        self.seed_shape = (WIDTHS[-1], side, side)
        self.mlp = nn.Sequential(
            nn.Linear(in_features, HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, WIDTHS[-1] * side * side), nn.ReLU(),
        )  # fmt: skip
        widths = WIDTHS[::-1]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, (*widths[1:], out_channels)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers[:-1])

    def forward(self, z: Tensor) -> Tensor:
        return self.convs(self.mlp(z).view(-1, *self.seed_shape))
