"""fqvae: disentangled representation learning with quantized latents."""

from fqvae import ops, schedules
from fqvae.backends import available_backends, backend
from fqvae.quantizers import QuantizeOutput, ScalarQuantize

__all__ = ["QuantizeOutput", "ScalarQuantize", "available_backends", "backend", "ops", "schedules"]
__version__ = "0.1.0"
