"""The beta-VAE paper's conv encoder and deconv decoder as disentanglement_lib builds them
(``conv_encoder`` / ``deconv_decoder``; baselines spec §2), PyTorch default init.

Four stride-2 4x4 convs take ``S`` (a multiple of 16) to ``S/16``, and a final ``S/16`` conv
without padding to 1x1 (the 4x4 conv at 64x64); the decoder mirrors it.
"""

from __future__ import annotations

from torch import Tensor, nn

WIDTHS = (32, 32, 64, 64)
HIDDEN = 256


class DlibEncoder(nn.Module):
    """``(B, C, S, S) -> (B, out_features)``."""

    def __init__(self, in_channels: int, image_size: int, out_features: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *WIDTHS[:-1]), WIDTHS):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(WIDTHS[-1], HIDDEN, image_size // 16), nn.ReLU(), nn.Flatten()]
        self.net = nn.Sequential(*layers, nn.Linear(HIDDEN, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DlibDecoder(nn.Module):
    """``(B, in_features) -> (B, C, S, S)`` logits."""

    def __init__(self, in_features: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        widths = WIDTHS[::-1]
        layers: list[nn.Module] = [
            nn.Linear(in_features, HIDDEN),
            nn.ReLU(),
            nn.Unflatten(1, (HIDDEN, 1, 1)),
            nn.ConvTranspose2d(HIDDEN, widths[0], image_size // 16),
            nn.ReLU(),
        ]
        for c_in, c_out in zip(widths, (*widths[1:], out_channels)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
