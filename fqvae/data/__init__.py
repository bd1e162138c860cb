"""Factor-labelled image datasets: real-file loaders, procedural replicas and fast batching.

Example::

    from fqvae import data
    ds = data.load("shapes3d", "/data/3dshapes.h5")  # or $FQVAE_DATA_ROOT
    x = ds.batch(ds.split()[0][:64], "cuda")  # float32 (64, 3, 64, 64) in [-0.5, 0.5]
    data.make("shapes3d", "/data/3dshapes.h5")  # procedural replica in the real layout
"""

from fqvae.data.dataset import GroundTruthDataset, TorchView, split_indices
from fqvae.data.factors import FactorTable
from fqvae.data.registry import DATASETS, GENERATED, load, make, prepare, table
from fqvae.data.resize import resize
from fqvae.data.stubs import write_layout_stub
from fqvae.data.toyset import generate as toy

__all__ = [
    "DATASETS",
    "GENERATED",
    "FactorTable",
    "GroundTruthDataset",
    "TorchView",
    "load",
    "make",
    "prepare",
    "resize",
    "split_indices",
    "table",
    "toy",
    "write_layout_stub",
]
