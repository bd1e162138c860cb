"""fqvae: disentangled representation learning with quantized latents."""

from fqvae import ops
from fqvae.backends import backend, available_backends

__all__ = ["ops", "backend", "available_backends"]
__version__ = "0.1.0"
