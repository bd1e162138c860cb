"""What DCI, InfoMEC and MIG give a code that holds some factors perfectly and nothing else.

A trained model that separates the three hues of the Shapes3D replica but learns none of its
geometry scores what the "hues" row here scores, however clean its hue latents are. ``--grid
demo`` scores the same codes on ``fqvae demo``'s subgrid (three hues, five orientations) at the
demo's sample sizes; codes that name a factor the grid holds fixed are skipped. Each code
has twelve latents (the studies' count): one latent per kept factor, holding that factor's
class exactly, and the other latents constant (as FactorQVAE's switched-off latents are) or,
with ``noise``, uniform draws from 64 values that carry nothing.

The codes go through ``fqvae.metrics.evaluate`` exactly as a study run's final evaluation does
(the ``factorqvae`` preset, its sampling seed, 10,000/5,000 points by default); only the images
are replaced by their factor classes, read by a code that copies the kept ones.

    python studies/metric_ceiling.py --out studies/results/shapes3d-metric-ceiling/ceiling.json
    python studies/metric_ceiling.py --replot studies/results/shapes3d-metric-ceiling/ceiling.json
    python studies/metric_ceiling.py --grid demo --num-train 2000 --num-test 1000 \
        --out studies/results/shapes3d-metric-ceiling/ceiling-demo.json

Each table also goes to a bar chart beside its JSON (``.png``): DCI-D and InfoM per code, with
the issue's DCI-D target on that grid as a line. ``--replot JSON`` redraws it from a written table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from fqvae.data import GroundTruthDataset
from fqvae.data.registry import table
from fqvae.files import check_output_file
from fqvae.metrics import evaluate
from fqvae.plots import figure, save_figure
from fqvae.training.demo import demo_table

NUM_LATENTS = 12
NOISE_VALUES = 64
#: label -> (factor names held by a latent each, whether the other latents carry noise)
CODES: dict[str, tuple[tuple[str, ...], bool]] = {
    "all six factors": (
        ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
        False,
    ),
    "hues, scale, shape": (("floor_hue", "wall_hue", "object_hue", "scale", "shape"), False),
    "hues, scale, orientation": (
        ("floor_hue", "wall_hue", "object_hue", "scale", "orientation"),
        False,
    ),
    "hues, scale": (("floor_hue", "wall_hue", "object_hue", "scale"), False),
    "hues, shape": (("floor_hue", "wall_hue", "object_hue", "shape"), False),
    "hues, orientation": (("floor_hue", "wall_hue", "object_hue", "orientation"), False),
    "hues": (("floor_hue", "wall_hue", "object_hue"), False),
    "hues, 9 noise latents": (("floor_hue", "wall_hue", "object_hue"), True),
}
#: grid -> the DCI-D target the issue sets there, drawn on the chart
TARGETS = {"full": (0.7, "the Shapes3D target"), "demo": (0.5, "the demo's target")}
KEYS = (
    "dci.disentanglement",
    "dci.completeness",
    "dci.informativeness",
    "infomec.infom",
    "infomec.infoc",
    "mig.mig",
)


def class_dataset(grid: str = "full") -> GroundTruthDataset:
    """The Shapes3D factor grid (``"full"``, or ``"demo"``: the demo's subgrid, whose fixed
    factors are not latent) with each "image" (1x1, one channel per factor, uint8) holding its
    own factor classes, so that ``batch(..., pixels="unit")`` returns them as floats."""
    factors = demo_table() if grid == "demo" else table("shapes3d")
    classes = factors.all_classes().astype(np.uint8)
    images = classes[:, None, None, :]
    return GroundTruthDataset("shapes3d-classes", images, factors, max_value=1)


class KeepFactors(torch.nn.Module):
    """Code (n, 12) float32 from class "images" (n, F, 1, 1): latent j holds factor
    ``keep[j]``; the other latents are 0, or with ``noise`` uniform draws from 64 values."""

    def __init__(self, keep: list[int], noise: bool, seed: int = 0) -> None:
        super().__init__()
        self.keep, self.noise = keep, noise
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        classes = x[:, :, 0, 0]
        code = torch.zeros(len(x), NUM_LATENTS)
        if self.noise:
            code = torch.randint(0, NOISE_VALUES, code.shape, generator=self.gen).float()
        code[:, : len(self.keep)] = classes[:, self.keep]
        return code


def plot(table: dict, path: Path) -> Path:
    """Grouped bars of DCI-D and InfoM per code of ``table`` (the JSON's content) to ``path``."""
    labels = list(table["codes"])
    fig, (ax,) = figure(max(6.0, 1.1 * len(labels)), 3.8)
    x = np.arange(len(labels))
    for shift, key, name in (
        (-0.2, "dci.disentanglement", "DCI-D"),
        (0.2, "infomec.infom", "InfoM"),
    ):
        ax.bar(x + shift, [table["codes"][lb][key] for lb in labels], 0.4, label=name)
    grid = table["settings"].get("grid", "full")
    target, whose = TARGETS[grid]
    ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"{whose} ({target})")
    ax.set_xticks(x, labels, rotation=25, ha="right")
    ax.set_ylim(0, 1.22)
    settings = table["settings"]
    ax.set_title(
        f"Hand-made codes ({grid} grid, {settings['num_train']:,}/{settings['num_test']:,} points)"
    )
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="JSON file to write (and its .png chart)")
    parser.add_argument("--replot", help="redraw the chart of this written JSON, nothing else")
    parser.add_argument("--grid", choices=("full", "demo"), default="full")
    parser.add_argument("--num-train", type=int, default=10000)
    parser.add_argument("--num-test", type=int, default=5000)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    if args.replot:
        try:
            table = json.loads(Path(args.replot).read_text())
            print(plot(table, Path(args.replot).with_suffix(".png")))
        except (OSError, ValueError, KeyError) as exc:
            print(f"metric_ceiling: error: --replot {args.replot}: {exc}", file=sys.stderr)
            return 2
        return 0
    if not args.out:
        parser.error("--out or --replot is required")
    try:
        out = check_output_file(args.out, "--out", args.overwrite)
    except OSError as exc:
        print(f"metric_ceiling: error: {exc}", file=sys.stderr)
        return 2
    dataset = class_dataset(args.grid)
    names = dataset.factor_names
    latent = {names[i] for i in dataset.latent_factor_indices}
    rows = {}
    for label, (kept, noise) in CODES.items():
        if not set(kept) <= latent:
            continue
        code = KeepFactors([names.index(n) for n in kept], noise)
        result = evaluate(
            code,
            dataset,
            metrics=("dci", "infomec", "mig"),
            num_train=args.num_train,
            num_test=args.num_test,
            preset="factorqvae",
            discrete=True,
            pixels="unit",
            n_jobs=args.n_jobs,
            progress=False,
        )
        rows[label] = {k: float(result[k]) for k in KEYS}
        print(label, "  ".join(f"{k} {v:.3f}" for k, v in rows[label].items()), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"grid": args.grid, "num_train": args.num_train, "num_test": args.num_test}
    meta["preset"] = "factorqvae"
    table = {"settings": meta, "codes": rows}
    out.write_text(json.dumps(table, indent=1) + "\n")
    print(plot(table, out.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
