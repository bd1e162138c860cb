"""The ``fqvae`` command: one module per subcommand in this package, each adding its own parser
(``register``); the layers below know nothing of the command line."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fqvae", description=__doc__)
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
