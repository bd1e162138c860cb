"""``python -m fqvae`` (and the console script, the same ``fqvae.cli.run``) flushes subnormal
floats on every CPU thread, which makes a CPU training step faster; ``fqvae.cli.main`` alone, as
a library call, leaves the caller's floating-point mode alone."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

N = 1 << 22

# Replaces ``main`` with a parallel multiply over subnormals on two threads: the count of
# nonzero products is the number of elements whose thread keeps subnormals.
PROBE = f"""
import runpy

import torch
import fqvae.cli as cli

def count():
    torch.set_num_threads(2)
    print(int((torch.full(({N},), 1e-39) * 1.0).count_nonzero()))
    return 0

cli.main = count
{{entry}}
"""


def _nonzero_products(entry: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(entry=entry)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="flush-to-zero is an x86 mode; elsewhere torch.set_flush_denormal does nothing",
)
def test_the_fqvae_process_flushes_subnormals_on_every_thread() -> None:
    assert _nonzero_products("cli.main()") == N  # a library call keeps subnormals
    # ``python -m fqvae``: flushed on both threads
    assert _nonzero_products("runpy.run_module('fqvae', run_name='__main__')") == 0
