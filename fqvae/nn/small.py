"""Small, fast conv encoders/decoders for CPU runs, tests and the demo.

``arch="small"``: four stride-2 convs (32, 32, 64, 64 channels) take ``S`` (a multiple of 16;
32 and 64 in practice) down to ``S/16``, then 128 hidden units. ``arch="small3"``: three
stride-2 convs (32, 64, 64) down to ``S/8`` (a 4x4 map at 32 px, as dlib's backbone has at
64 px), then 256 hidden units. Each decoder mirrors its encoder with transposed convs.
PyTorch default init.
"""

from __future__ import annotations

from torch import Tensor, nn

WIDTHS = (32, 32, 64, 64)
HIDDEN = 128
WIDTHS3 = (32, 64, 64)
HIDDEN3 = 256


class SmallEncoder(nn.Module):
    """``(B, C, S, S) -> (B, out_features)``."""

    widths, hidden = WIDTHS, HIDDEN

    def __init__(self, in_channels: int, image_size: int, out_features: int) -> None:
        super().__init__()
        widths = self.widths
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *widths[:-1]), widths):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        flat = widths[-1] * (image_size // 2 ** len(widths)) ** 2
        self.net = nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(flat, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SmallDecoder(nn.Module):
    """``(B, L) -> (B, C, S, S)`` unbounded outputs."""

    widths, hidden = WIDTHS, HIDDEN

    def __init__(self, in_features: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        side = image_size // 2 ** len(self.widths)
        self.seed_shape = (self.widths[-1], side, side)
        self.mlp = nn.Sequential(
            nn.Linear(in_features, self.hidden), nn.ReLU(),
            nn.Linear(self.hidden, self.widths[-1] * side * side), nn.ReLU(),
        )  # fmt: skip
        widths = self.widths[::-1]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, (*widths[1:], out_channels)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers[:-1])

    def forward(self, z: Tensor) -> Tensor:
        return self.convs(self.mlp(z).view(-1, *self.seed_shape))


class Small3Encoder(SmallEncoder):
    """``arch="small3"``: ``(B, C, S, S) -> (B, out_features)`` through a ``S/8`` map."""

    widths, hidden = WIDTHS3, HIDDEN3


class Small3Decoder(SmallDecoder):
    """``arch="small3"``: ``(B, L) -> (B, C, S, S)`` from a ``S/8`` map."""

    widths, hidden = WIDTHS3, HIDDEN3
