"""fqvae doctor (also python -m fqvae doctor): what this installation can run, and why not.

Prints the versions of Python, PyTorch and Triton, the compiler and ninja that build the kernels,
the CUDA toolkit, where the compiled kernels are cached, and for each device the backends that
run there or the reason one does not. Exits 1 when the C++ kernels are unusable.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import shutil
import subprocess
import sys

import torch

from fqvae import __version__, backends
from fqvae.backends import extension


def _version(command: list[str], marker: str = "") -> str:
    """The first line ``command`` prints that contains ``marker``, or why it could not run."""
    if shutil.which(command[0]) is None:
        return "not found"
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed ({exc})"
    lines = [line for line in (out.stdout or out.stderr).strip().splitlines() if marker in line]
    return f"{shutil.which(command[0])}: {lines[0].strip() if lines else '?'}"


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def report() -> tuple[list[tuple[str, str]], bool]:
    """``(rows, ok)``: label/value rows to print, and whether the C++ kernels work."""
    cxx, nvcc = extension.compiler(), extension.nvcc()
    rows = [
        ("fqvae", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none: a CPU build'})"),
        ("triton", _package("triton")),
        ("C++ compiler", _version([cxx, "--version"]) if cxx else "not found"),
        ("ninja", _package("ninja")),
        (
            "CUDA toolkit",
            _version([nvcc, "--version"], "release")
            if nvcc
            else "not found (nvcc is not on PATH, in $CUDA_HOME or in /usr/local/cuda)",
        ),
        (
            "CUDA kernels",
            "compiled in"
            if extension.cuda_reason() is None
            else f"skipped: {extension.cuda_reason()}",
        ),
    ]
    try:
        reason = extension.error()
    except extension.ExtensionError as exc:  # FQVAE_REQUIRE_EXT=1: still report
        reason = str(exc)
    try:
        folder = str(extension.build_dir(extension.cuda_reason() is None))
    except extension.ExtensionError as exc:
        folder = str(exc)
    rows += [("kernel cache", folder), ("compiled kernels", reason or "loaded")]
    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    for device in devices:
        for name in backends.NAMES:
            why = backends.unavailable_reason(name, torch.device(device), torch.float32)
            rows.append((f"{device} {name}", "available" if why is None else f"no: {why}"))
    return rows, reason is None


def run(args: argparse.Namespace) -> int:
    rows, ok = report()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    if not ok:
        print(f"\nfqvae runs on the slow eager reference: {extension.FIX}", file=sys.stderr)
    return 0 if ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand."""
    p = subparsers.add_parser(
        "doctor", help="check the installation's kernels and toolchain", description=__doc__
    )
    p.set_defaults(func=run)
