"""Shared test setup: the Triton interpreter on CPU-only machines, the ``gpu`` marker, and the
finished tiny run the fault tests copy."""

import os
from pathlib import Path

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 4-step run (``fault_cases.SMALL``); tests copy it before changing anything."""
    from fault_cases import SMALL

    from fqvae.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    torch.set_num_threads(1)
    assert main(["train", *SMALL, "--steps", "4", "--out", str(out), "--log-every", "2"]) == 0
    return out
