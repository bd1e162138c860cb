"""fqvae: disentangled representation learning with quantized latents."""

from fqvae import ops
from fqvae.backends import available_backends, backend

__all__ = ["ops", "backend", "available_backends"]
__version__ = "0.1.0"
