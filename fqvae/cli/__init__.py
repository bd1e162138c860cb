"""The ``fqvae`` command: one module per subcommand in this package, each adding its own parser
(``register``); the layers below know nothing of the command line."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

import torch

# subcommand name -> module exposing ``register(subparsers)``; the module adds its parser and sets
# ``func`` (a callable taking the parsed args and returning an exit code) via ``set_defaults``.
_SUBCOMMANDS = {
    "data": "fqvae.cli.data",
    "eval": "fqvae.cli.eval",
    "train": "fqvae.cli.train",
    "demo": "fqvae.cli.demo",
    "study": "fqvae.cli.study",
    "doctor": "fqvae.cli.doctor",
}


#: what ``fqvae --help`` says above the command list
DESCRIPTION = """\
Disentangled representation learning with quantized latents.

Start here:
  fqvae demo                       FactorQVAE against an autoencoder, a few minutes on a CPU
  fqvae data make shapes3d --out shapes3d.h5
  fqvae train --model factorqvae --data shapes3d --data-path shapes3d.h5
  fqvae eval runs/factorqvae-shapes3d

`fqvae COMMAND --help` describes each command; README.md has the full guide."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fqvae",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in _SUBCOMMANDS.values():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def flush_subnormals() -> bool:
    """Flush subnormal floats (below 1.2e-38 in fp32) to zero on this thread and on every CPU
    thread torch starts after it: POSIX threads inherit their creator's floating-point mode, so
    this must run before torch's thread pool exists. Subnormals turn up in Adam's moment
    estimates and the Gumbel soft one-hots; on x86 each operation on one costs about a hundred
    normal ones. Returns False where the CPU has no such mode (then nothing changes)."""
    return torch.set_flush_denormal(True)


def run() -> int:
    """The ``fqvae`` process (console script and ``python -m fqvae``): :func:`main` with
    subnormals flushed (:func:`flush_subnormals`). ``main`` alone leaves the caller's
    floating-point mode as it is."""
    flush_subnormals()
    return main()
