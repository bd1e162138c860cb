"""``fqvae data``: ``make`` a replica, ``show`` a factor traversal, ``prepare`` a cache."""

from __future__ import annotations

import argparse
import sys
import time

from fqvae.data.registry import DATASETS, GENERATED, make, prepare
from fqvae.data.show import write_traversal
from fqvae.files import check_output_file


def _classes(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _run(fn, args: argparse.Namespace) -> int:
    """Run a subcommand; a bad argument or file is one line on stderr and exit code 2."""
    try:
        fn(args)
    except (OSError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"fqvae data: error: {message}", file=sys.stderr)
        return 2
    return 0


def _make(args: argparse.Namespace) -> None:
    check_output_file(args.out, "--out", overwrite=args.overwrite)
    start = time.perf_counter()
    path = make(args.name, args.out, seed=args.seed, reduced=args.reduced)
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s")


def _show(args: argparse.Namespace) -> None:
    extra = {"allow_reduced": True} if args.path is not None and args.allow_reduced else {}
    out = args.out or f"data_{args.name}.png"
    write_traversal(args.name, out, args.path, args.base, args.cols, **extra)
    print(f"wrote {out}")


def _prepare(args: argparse.Namespace) -> None:
    extra = {"variant": args.variant} if args.name == "mpi3d" else {}
    if args.image_size is not None:
        extra["image_size"] = args.image_size
    print(f"wrote cache {prepare(args.name, args.src, args.out, **extra)}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its ``make``, ``show`` and ``prepare`` subcommands."""
    data = subparsers.add_parser(
        "data",
        help="datasets: make replicas, show factors, prepare caches",
        description="Datasets. make writes a procedural replica of dSprites or Shapes3D in the "
        "real file layout (no download needed), show draws one row per factor, and prepare "
        "converts original files into a memory-mappable cache, optionally at a smaller size.",
    )
    sub = data.add_subparsers(dest="data_command", required=True)

    p = sub.add_parser("make", help="write a procedural replica in the real file layout")
    p.add_argument("name", choices=GENERATED)
    p.add_argument(
        "--out", required=True, help="output file (.h5 for shapes3d/toy, .npz for dsprites)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="recorded in the file; rendering is deterministic"
    )
    p.add_argument("--reduced", action="store_true", help="write the small CI grid")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=lambda a: _run(_make, a))

    p = sub.add_parser("show", help="write a PNG grid: one row per factor, varying that factor")
    p.add_argument("name", choices=DATASETS)
    p.add_argument("--path", help="read this file/folder instead of rendering the replica")
    p.add_argument("--out", help="PNG path (default data_NAME.png)")
    p.add_argument("--base", type=_classes, help="comma-separated classes held fixed")
    p.add_argument("--cols", type=int, default=10, help="at most this many classes per row")
    p.add_argument("--allow-reduced", action="store_true", help="accept a reduced grid file")
    p.set_defaults(func=lambda a: _run(_show, a))

    p = sub.add_parser("prepare", help="convert original files into a memory-mappable cache")
    p.add_argument("name", choices=DATASETS)
    p.add_argument("--src", required=True, help="original file or folder")
    p.add_argument("--out", required=True, help="cache directory")
    p.add_argument("--variant", default="complex", help="MPI3D variant")
    p.add_argument(
        "--image-size", type=int, help="store images area-averaged to this side (e.g. 32)"
    )
    p.set_defaults(func=lambda a: _run(_prepare, a))
