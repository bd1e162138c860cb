"""Run independent scikit-learn fits in parallel with joblib, or in-process on one core.

Jobs are plain scikit-learn callables (an estimator's bound ``fit``, ``mutual_info_classif``),
so worker processes import scikit-learn but never this package (nor torch).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from joblib import effective_n_jobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.parallel import Parallel, delayed
from threadpoolctl import threadpool_limits

Job = tuple[Callable[..., Any], tuple, dict]

# scikit-learn hands the caller's warning filters to every job. Filters whose category lives in
# another package (torch registers some) would make each worker import that package, so only
# these are passed on.
_LIGHT_PACKAGES = {"builtins", "warnings", "numpy", "scipy", "sklearn"}


def _keep_light_filters() -> None:
    """Drop the warning filters whose category a worker could not unpickle cheaply."""
    kept = [f for f in warnings.filters if f[2].__module__.split(".")[0] in _LIGHT_PACKAGES]
    warnings.resetwarnings()
    for action, message, category, module, lineno in kept:
        warnings.filterwarnings(
            action,
            getattr(message, "pattern", message) or "",
            category,
            getattr(module, "pattern", module) or "",
            lineno,
            append=True,
        )


def run_jobs(jobs: Sequence[Job], n_jobs: int | None, costs: Sequence[float] = ()) -> list[Any]:
    """Return ``[fn(*args, **kwargs) for fn, args, kwargs in jobs]``, in job order.

    Up to ``n_jobs`` worker processes (joblib convention: -1 means all cores), each with
    single-threaded BLAS/OpenMP; with one worker the jobs run here, also single-threaded, so
    results do not depend on ``n_jobs``. ``costs`` (one per job) starts the most expensive jobs
    first, which shortens the critical path when they differ in size. Convergence warnings of
    iteration-capped reference solvers are silenced.
    """
    if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs == 0):
        raise ValueError(f"n_jobs must be a non-zero int or None, got {n_jobs!r}")
    workers = min(effective_n_jobs(n_jobs), len(jobs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if workers <= 1:
            with threadpool_limits(limits=1):
                return [fn(*args, **kwargs) for fn, args, kwargs in jobs]
        _keep_light_filters()
        order = sorted(range(len(jobs)), key=lambda i: -costs[i]) if costs else range(len(jobs))
        order = list(order)
        results = Parallel(n_jobs=workers)(
            delayed(jobs[i][0])(*jobs[i][1], **jobs[i][2]) for i in order
        )
    out: list[Any] = [None] * len(jobs)
    for i, result in zip(order, results):
        out[i] = result
    return out
