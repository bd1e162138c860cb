"""Published configurations that only change a method's defaults, as rows of one table.

``CONFIGURATIONS[name] = (method, defaults)``: :func:`fqvae.models.build_model` builds ``method``
with ``defaults`` under the hparams the caller gives, and names the model ``name``. The names
are the ones earlier releases registered as classes, so configs, checkpoints and commands that
use them keep working.
"""

from __future__ import annotations

from typing import Any

from fqvae.models.common import HSU_OPTIM

#: the FactorQVAE code's optimizer: one Adam on the cosine schedule, no weight decay or clipping
_FACTORQVAE_OPTIM = {
    "optimizer": "adam",
    "weight_decay": 0.0,
    "clip_value": None,
    "lr_schedule": "cosine",
}

CONFIGURATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    # Hsu et al.'s global-codebook ablation (qlae.md §1): one vector of 10 values at
    # linspace(-0.5, 0.5) shared by every latent, with QLAE's losses, weights and optimizer
    "qlae_global_hsu2023": ("qlae_hsu2023", {"codebook": "global"}),
    # QLAE as the FactorQVAE code configures it (factorqvae.md §11): (L, 16) codebooks drawn from
    # N(0, 1), MSE on centered pixels, the DALL-E-style backbone, one Adam with the cosine
    # schedule and no weight decay, and the codebook index as the representation
    "qlae_factorqvae": (
        "qlae_hsu2023",
        {
            "arch": "dalle",
            "num_values": 16,
            "codebook_init": "normal",
            "repr": "index",
            "pixels": "centered",
            **_FACTORQVAE_OPTIM,
        },
    ),
    # the AE and BioAE beside QLAE (qlae.md §7): the conv/style backbone, BCE with logits on
    # [0, 1] pixels and the split optimizer; weight decay 0 and 1e-4 (their per-dataset files
    # set others, in the published table), BioAE's penalties (1, 0.1)
    "ae_hsu2023": ("ae", {"arch": "qlae", "pixels": "unit", **HSU_OPTIM, "weight_decay": 0.0}),
    "bioae_hsu2023": (
        "bioae",
        {
            "arch": "qlae",
            "pixels": "unit",
            "nonneg": 1.0,
            "activity": 0.1,
            **HSU_OPTIM,
            "weight_decay": 1e-4,
        },
    ),
}
