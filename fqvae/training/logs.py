"""Training logs: a CSV file always, TensorBoard when it is installed, a tqdm progress bar."""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


def set_aside(path: Path) -> Path:
    """Rename an unreadable file ``NAME`` to ``NAME.broken`` (``.broken-2``, ...) so nothing
    is lost; returns the new path."""
    target, n = path.with_name(path.name + ".broken"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.broken-{n}")
    path.rename(target)
    return target


class CSVLog:
    """Rows of scalars in ``path``; the header is the keys of the first row. On resume, rows
    after ``resume_step`` (written after the checkpoint the run restarts from) are dropped so
    the file reads as one uninterrupted run."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.fields: list[str] | None = None
        if resume_step is not None and self.path.exists():
            try:
                with open(self.path, newline="") as f:
                    rows = list(csv.DictReader(f))
                kept = [r for r in rows if int(r["step"]) <= resume_step]
            except (csv.Error, KeyError, TypeError, ValueError) as exc:  # keep it, start anew
                broken = set_aside(self.path)
                warnings.warn(
                    f"{self.path} is unreadable ({exc}); kept as {broken.name}, new log started",
                    stacklevel=2,
                )
                return
            if rows:
                self.fields = list(rows[0])
                self._write_all(kept)
        elif self.path.exists():
            self.path.unlink()

    def _write_all(self, rows: list[dict[str, Any]]) -> None:
        assert self.fields is not None
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            self._write_all([])
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)


class Logger:
    """Writes scalar rows to ``DIR/log.csv`` (training) and ``DIR/eval.csv`` (periodic metrics),
    and mirrors them to TensorBoard under ``DIR/tb`` when ``tensorboard`` is importable."""

    def __init__(self, out: Path, tensorboard: bool = True, resume_step: int | None = None):
        self.train = CSVLog(out / "log.csv", resume_step)
        self.eval = CSVLog(out / "eval.csv", resume_step)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed; logging to CSV only", stacklevel=2)
            else:
                self.tb = SummaryWriter(str(out / "tb"), purge_step=resume_step)

    def scalars(self, step: int, values: dict[str, float], kind: str = "train") -> None:
        row = {"step": step, **values}
        (self.train if kind == "train" else self.eval).write(row)
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(f"{kind}/{key}", value, step)

    def image(self, tag: str, path: Path, step: int) -> None:
        """Add the PNG at ``path`` to TensorBoard (no-op without it)."""
        if self.tb is None:
            return
        import numpy as np
        from PIL import Image

        self.tb.add_image(tag, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc="train",
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
    )
