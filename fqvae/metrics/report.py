"""Human-readable table and JSON file for metric results (used by ``fqvae eval``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from fqvae.files import atomic_path

# The scores printed for each metric, in order; every other entry goes to the JSON file only.
HEADLINE = {
    "dci": ("disentanglement", "completeness", "informativeness"),
    "infomec": ("infom", "infoe", "infoc"),
    "mig": ("mig",),
    "sap": ("sap",),
    "factorvae": ("train_accuracy", "eval_accuracy"),
    "recon": ("mse", "psnr"),
}


def format_table(results: dict[str, Any]) -> str:
    """A two-column table of the headline scores in a flat ``evaluate`` result, then a line
    with the run's seed, sample counts, representation kind and scikit-learn version."""
    rows = []
    for metric, names in HEADLINE.items():
        for name in names:
            key = f"{metric}.{name}"
            if key in results:
                rows.append((key, f"{float(results[key]):.4f}"))
        if f"{metric}.time_s" in results:
            rows.append((f"{metric}.time_s", f"{results[f'{metric}.time_s']:.1f}"))
    width = max([len("metric")] + [len(k) for k, _ in rows])
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{key:<{width}}  {value:>6}" for key, value in rows]
    info = [f"seed {results.get('seed')}"]
    if "num_train" in results:
        info.append(f"{results['num_train']} train / {results.get('num_test', 0)} test")
    if "representation" in results:
        info.append(f"{results['representation']} codes")
    info.append(f"scikit-learn {results.get('sklearn_version')}")
    lines.append(", ".join(info))
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """Recursively turn numpy arrays and scalars into lists and Python numbers; NaN and inf
    become ``None`` so that the file is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def write_json(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``results`` as indented JSON, atomically (:func:`fqvae.files.atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(to_jsonable(results), f, indent=2, allow_nan=False)
        f.write("\n")
    return path
