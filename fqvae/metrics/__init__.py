"""Disentanglement metrics: DCI, MIG, SAP, FactorVAE score and InfoMEC.

Each metric takes codes ``latents`` (N, num_latents) and ground-truth ``factors``
(N, num_factors) as numpy arrays or torch tensors and returns a dict; ``evaluate`` samples a
model's codes from a dataset the way disentanglement_lib does and runs several metrics at once.
"""

from fqvae.metrics.dci import completeness, dci, disentanglement
from fqvae.metrics.evaluate import METRICS, PRESETS, evaluate, infer_discrete
from fqvae.metrics.factorvae import factorvae_score
from fqvae.metrics.infomec import infomec
from fqvae.metrics.mig import mig
from fqvae.metrics.sampling import sample_factor_code
from fqvae.metrics.sap import sap

__all__ = [
    "METRICS",
    "PRESETS",
    "completeness",
    "dci",
    "disentanglement",
    "evaluate",
    "factorvae_score",
    "infer_discrete",
    "infomec",
    "mig",
    "sample_factor_code",
    "sap",
]
