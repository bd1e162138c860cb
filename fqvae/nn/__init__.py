"""Networks: encoders, decoders and the TC discriminator; :func:`build_backbone` picks a pair."""

from __future__ import annotations

from torch import nn

from fqvae.nn.dalle import DalleDecoder, DalleEncoder
from fqvae.nn.discriminator import TCDiscriminator
from fqvae.nn.dlib import DlibDecoder, DlibEncoder
from fqvae.nn.qlae import QlaeDecoder, QlaeEncoder
from fqvae.nn.small import Small3Decoder, Small3Encoder, SmallDecoder, SmallEncoder

#: arch name -> (encoder class, decoder class, required divisor of the image size)
ARCHS = {
    "dalle": (DalleEncoder, DalleDecoder, 4),
    "qlae": (QlaeEncoder, QlaeDecoder, 16),
    "small": (SmallEncoder, SmallDecoder, 16),
    "small3": (Small3Encoder, Small3Decoder, 8),
    "dlib": (DlibEncoder, DlibDecoder, 16),
}
#: the backbones sized for CPU training (the trainer times a step of any other before step 1)
CPU_ARCHS = ("small", "small3")

__all__ = [
    "ARCHS",
    "CPU_ARCHS",
    "DalleDecoder",
    "DalleEncoder",
    "DlibDecoder",
    "DlibEncoder",
    "QlaeDecoder",
    "QlaeEncoder",
    "Small3Decoder",
    "Small3Encoder",
    "SmallDecoder",
    "SmallEncoder",
    "TCDiscriminator",
    "build_backbone",
]


def build_backbone(
    arch: str, in_channels: int, image_size: int, head_features: int, decoder_features: int
) -> tuple[nn.Module, nn.Module]:
    """Encoder ``(B, C, S, S) -> (B, head_features)`` and decoder ``(B, decoder_features) ->
    (B, C, S, S)`` of architecture ``arch`` (``"dalle"``, ``"qlae"``, ``"small"``, ``"small3"``,
    ``"dlib"``)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {sorted(ARCHS)}")
    encoder_cls, decoder_cls, divisor = ARCHS[arch]
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if not isinstance(image_size, int) or image_size < divisor or image_size % divisor:
        raise ValueError(
            f"arch {arch!r} needs an image_size that is a positive multiple of {divisor}, "
            f"got {image_size!r}"
        )
    encoder = encoder_cls(in_channels, image_size, head_features)
    decoder = decoder_cls(decoder_features, in_channels, image_size)
    return encoder, decoder
