"""fqvae study: run a grid of models x seeds from a TOML spec, and report on it.

Examples:

    fqvae study run studies/shapes3d-cpu.toml --out runs/shapes3d-cpu --jobs 2
    fqvae study run studies/shapes3d-cpu.toml --out runs/shapes3d-cpu --shard 2/4
    fqvae study status runs/shapes3d-cpu
    fqvae study report runs/shapes3d-cpu

The spec format and the report are described in docs/study.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from fqvae.training.config import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``study`` subcommand and its ``run``, ``status`` and ``report`` commands."""
    p = subparsers.add_parser(
        "study",
        help="run a grid of models x seeds from a spec, and report on it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="study_command", required=True)
    r = sub.add_parser(
        "run",
        help="train every (label, seed) of a spec that is not finished",
        description="Train every (label, seed) of SPEC as an `fqvae train` run in "
        "OUT/LABEL/seed-S: finished runs are skipped, interrupted ones resumed, failed ones "
        "recorded in OUT/status.json. Exit 0: every run finished; 1: some run failed; "
        "2: invalid spec or options; 130: interrupted.",
    )
    r.add_argument("spec", help="the study spec (TOML)")
    r.add_argument("--out", required=True, help="the study folder")
    r.add_argument("--models", help="only these labels (comma-separated)")
    r.add_argument("--seeds", help="only these seeds (comma-separated)")
    r.add_argument("--data-path", help="dataset file or folder, passed to every run")
    r.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    r.add_argument(
        "--shard",
        help="i/n: run only the grid cells k (labels in spec order, then seeds; from 0) with "
        "k %% n == i-1",
    )
    r.add_argument("--force", action="store_true", help="use OUT even if it holds a different spec")
    r.add_argument("--dry-run", action="store_true", help="print the plan and commands only")
    r.set_defaults(func=_guarded(run))
    st = sub.add_parser(
        "status",
        help="where each run of a study folder stands",
        description="Print one line per run of the study in DIR: done (with its time and "
        "headline metrics), running (its step and the pid of the process training it), "
        "stopped (its step; `study run` resumes it), failed (exit code and last log line) or "
        "not started. Reads the folder only.",
    )
    st.add_argument("dir", help="the study folder (as given to `study run --out`)")
    st.set_defaults(func=_guarded(status))
    rep = sub.add_parser(
        "report",
        help="tables and figures of a study folder",
        description="Write results.json, results.csv, report.md and figures/ for the runs in "
        "DIR (complete or not).",
    )
    rep.add_argument("dir", help="the study folder (as given to `study run --out`)")
    rep.add_argument("--out", help="where to write the report (default: DIR)")
    rep.set_defaults(func=_guarded(report))


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map invalid specs, options and unreadable files to one line on stderr and exit 2."""

    def call(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (ConfigError, OSError) as exc:
            print(f"fqvae study: error: {exc}", file=sys.stderr)
            return 2

    return call


def _list(text: str | None, kind: Callable[[str], Any], flag: str) -> list[Any] | None:
    if text is None:
        return None
    from fqvae.study.spec import StudyError

    try:
        items = [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise StudyError(f"{flag}: expected a comma-separated list, got {text!r}") from None
    if not items:
        raise StudyError(f"{flag}: empty list")
    return items


def run(args: argparse.Namespace) -> int:
    """``fqvae study run``."""
    from fqvae.study import runner, spec

    shard = runner.parse_shard(args.shard) if args.shard is not None else None
    models = _list(args.models, str, "--models")
    seeds = _list(args.seeds, int, "--seeds")
    study = spec.load(args.spec)
    cells = runner.select(study, models, seeds, shard)
    return runner.run_study(
        study,
        args.out,
        cells,
        jobs=args.jobs,
        data_path=args.data_path,
        force=args.force,
        dry_run=args.dry_run,
    )


def status(args: argparse.Namespace) -> int:
    """``fqvae study status``."""
    from fqvae.study.status import format_status, study_status

    print(format_status(*study_status(args.dir)))
    return 0


def report(args: argparse.Namespace) -> int:
    """``fqvae study report``."""
    from fqvae.study.report import write_report

    written = write_report(args.dir, args.out)
    report_md = next(p for p in written if p.name == "report.md")
    print(f"fqvae study: wrote {report_md} and {len(written) - 1} other file(s)")
    return 0
