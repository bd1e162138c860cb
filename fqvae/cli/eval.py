"""fqvae eval CHECKPOINT: sample a trained model's codes on its dataset, print the metric table
and write it as JSON (default: beside the checkpoint). CHECKPOINT may be the run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fqvae.files import check_output_file
from fqvae.metrics.evaluate import METRICS, PRESETS, evaluate
from fqvae.metrics.report import format_table, write_json


def _metric_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in METRICS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown metric(s) {bad}; choose from {','.join(METRICS)}"
        )
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    p = subparsers.add_parser(
        "eval",
        help="compute disentanglement metrics of a checkpoint",
        description=__doc__,
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        help="checkpoint written by `fqvae train`, or the run folder that holds it",
    )
    p.add_argument("--data", help="dataset name (default: the one the model was trained on)")
    p.add_argument("--data-path", type=Path, help="dataset file or folder (default: lookup)")
    p.add_argument(
        "--metrics",
        type=_metric_list,
        default=("dci", "infomec", "mig"),
        help=f"comma-separated subset of {','.join(METRICS)} (default: dci,infomec,mig)",
    )
    p.add_argument("--num-train", type=int, default=10000, help="training points (10000)")
    p.add_argument("--num-test", type=int, default=5000, help="test points for DCI/SAP (5000)")
    p.add_argument("--seed", type=int, help="sampling seed (default: the preset's, else 0)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="reference settings to follow")
    p.add_argument("--n-jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    p.add_argument(
        "--json", type=Path, help="output file (default: CHECKPOINT with suffix .metrics.json)"
    )
    p.add_argument("--device", help="device for the encoder (default: cuda if available)")
    p.add_argument(
        "--repr",
        help="the code the metrics read, for models that offer a choice: index or value "
        "(codebook models), mean or sample (VAEs) (default: the one it was trained with)",
    )
    p.add_argument(
        "--figures",
        type=Path,
        metavar="DIR",
        help="also draw traversals.png (rows named by the factor each latent holds, when "
        "infomec is among the metrics) and codebook_usage.png into DIR",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint, evaluate, print the table and write the JSON file."""
    import torch

    from fqvae import data
    from fqvae.training.checkpoint import CHECKPOINT
    from fqvae.training.evaluation import FIGURE_IMAGES, load_for_eval, reconstruct_sample

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    figures: dict[str, Path] = {}
    try:
        # everything a user can get wrong is checked before the minutes of sampling and fitting
        try:
            kind = torch.device(device).type
        except RuntimeError:
            kind = None
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")
        if args.n_jobs == 0:
            raise ValueError("--n-jobs must be a non-zero int (-1: all cores), got 0")
        if args.checkpoint.is_dir():  # a run folder: its checkpoint
            args.checkpoint = args.checkpoint / CHECKPOINT
        json_path = args.json or args.checkpoint.with_suffix(".metrics.json")
        check_output_file(json_path, "--json")
        if args.figures is not None:
            check_output_file(args.figures / "traversals.png", "--figures")
        representation_fn, discrete, data_name = load_for_eval(args.checkpoint, device, args.repr)
        name = args.data or data_name
        dataset = data.load(name, args.data_path)
        size = getattr(representation_fn, "image_size", None)  # the side the model was trained at
        if size is not None:
            dataset = data.resize(dataset, size)
        results = evaluate(
            representation_fn,
            dataset,
            metrics=args.metrics,
            num_train=args.num_train,
            num_test=args.num_test,
            seed=args.seed,
            discrete=discrete,
            device=device,
            n_jobs=args.n_jobs,
            preset=args.preset,
        )
        model = getattr(representation_fn, "model", None)
        if model is not None:  # recon.mse and recon.psnr of the decoder (G(E(x)) for a GAN)
            results.update(
                reconstruct_sample(model, dataset, FIGURE_IMAGES, args.seed or 0, device)
            )
        if args.figures is not None and model is not None:
            figures = _figures(model, dataset, results, args.figures, args.seed or 0, device)
    except (ValueError, OSError) as exc:
        print(f"fqvae eval: error: {exc}", file=sys.stderr)
        return 2
    results.update(checkpoint=str(args.checkpoint), data=name, device=str(device))
    if model is not None and hasattr(model, "repr_kind"):
        results["repr"] = model.repr_kind
    print(format_table(results))
    path = write_json(results, json_path)
    print(f"wrote {path}")
    if figures:
        print("figures: " + ", ".join(str(p) for p in figures.values()))
    return 0


def _figures(
    model: Any, dataset: Any, results: dict[str, Any], folder: Path, seed: int, device: str
) -> dict[str, Path]:
    """``traversals.png`` (from the first of the sampled images) and ``codebook_usage.png``
    of ``model`` in ``folder``, as training draws them."""
    from fqvae.training import visualize
    from fqvae.training.evaluation import FIGURE_IMAGES, sample_images

    images = sample_images(model, dataset, FIGURE_IMAGES, seed, device)
    factors = [dataset.factor_names[i] for i in dataset.latent_factor_indices]
    return visualize.save_figures(
        model,
        images,
        folder,
        num_values=getattr(model, "num_values", None),
        nmi=results.get("infomec.nmi"),
        factors=factors,
    )
