"""Shared pieces of the fault tests: the tiny run's flags, a copy of a run, and the check that
a command fails with one error line."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fqvae.cli import main

SMALL = [
    "--model", "factorqvae", "--data", "toy", "--arch", "small", "--batch-size", "8",
    "--no-progress", "--no-tensorboard", "--set", "eval.final_num_train=0",
]  # fmt: skip


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def error_line(capsys, argv: list[str], code: int = 2, within: float = 15.0) -> str:
    """Run ``fqvae ARGV``; assert the exit code, one error line, and no traceback."""
    start = time.perf_counter()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    if within:
        assert time.perf_counter() - start < within, "the check came after the work"
    return lines[0]
