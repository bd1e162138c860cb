"""fqvae train: resolve a run's configuration from a preset (the published settings), the
recipe (cpu or paper) and your overrides, then train, checkpoint and evaluate it.

Examples:

    fqvae train --preset factorqvae-shapes3d --data-path 3dshapes.h5 --out runs/fq
    fqvae train --model factorqvae --data toy --arch small --steps 2000 --out runs/toy
    fqvae train --preset factorqvae-shapes3d --preset clean --set model.hparams.gamma=1e-3
    fqvae train --resume --out runs/fq
    torchrun --nproc-per-node 4 -m fqvae train --preset factorqvae-shapes3d --out runs/fq4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fqvae.training.config import Config, ConfigError, get_key, set_item, set_key

# command-line flag (argparse dest) -> config key
FLAGS = {
    "model": "model.name",
    "data": "data.name",
    "data_path": "data.path",
    "arch": "model.arch",
    "latents": "model.latents",
    "recipe": "train.recipe",
    "fidelity": "train.fidelity",
    "steps": "train.iterations",
    "batch_size": "train.batch",
    "lr": "train.lr",
    "tau_rate": "model.hparams.tau_rate",
    "seed": "train.seed",
    "device": "system.device",
    "amp": "system.amp",
    "matmul": "system.matmul",
    "fused_optim": "system.fused_optim",
    "channels_last": "system.channels_last",
    "compile": "system.compile",
    "log_every": "log.every",
    "ckpt_every": "log.ckpt_every",
    "eval_every": "eval.every",
    "no_progress": "log.progress",
    "no_tensorboard": "log.tensorboard",
}
NEGATED = ("no_progress", "no_tensorboard")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser(
        "train",
        help="train a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset",
        action="append",
        default=[],
        metavar="NAME",
        help="MODEL-DATA (e.g. factorqvae-shapes3d) and/or a fidelity variant "
        "(executed, clean); repeatable",
    )
    p.add_argument("--model", help="model name (see --list)")
    p.add_argument(
        "--data", help="dataset name (dsprites, shapes3d, mpi3d, isaac3d, falcor3d, toy)"
    )
    p.add_argument("--data-path", help="dataset file or folder (default: $FQVAE_DATA_ROOT)")
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATA)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (without it, a folder holding a run is refused)",
    )
    _training_flags(p)
    _runtime_flags(p)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="set any config key, e.g. model.hparams.gamma=1e-3 or eval.num_train=500; repeatable",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the resolved configuration and exit"
    )
    p.add_argument("--list", action="store_true", help="list models, presets and config keys")
    p.set_defaults(func=run)


def _training_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (defaults: the preset's published values)")
    g.add_argument(
        "--arch", help="backbone: dalle, qlae, dlib, small or small3 (default: the model's)"
    )
    g.add_argument("--latents", type=int, help="number of latents (default: 2 x factors)")
    g.add_argument(
        "--recipe",
        help="paper (the published settings), cpu (3-25 minutes on 2 cores, "
        "docs/recipes.md) or auto (default: cpu without a GPU)",
    )
    g.add_argument(
        "--fidelity",
        help="executed (the schedules as the official code ran them; the old name 'reference' "
        "also works; paper recipe only) or clean (as intended) (spec §9; default: executed "
        "under the paper recipe, clean under the CPU recipe)",
    )
    g.add_argument(
        "--iterations",
        "--steps",
        dest="steps",
        type=int,
        metavar="N",
        help="train.iterations: training batches (--steps is the same flag)",
    )
    g.add_argument(
        "--batch",
        "--batch-size",
        dest="batch_size",
        type=int,
        metavar="N",
        help="train.batch: global batch size (--batch-size is the same flag)",
    )
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument(
        "--tau-rate",
        type=float,
        help="Gumbel temperature decay per batch (default: the preset's, or 1/steps)",
    )
    g.add_argument("--seed", type=int, help="seed of initialisation, batches and noise (1)")


def _runtime_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--amp", help="auto (bf16 on CUDA, off on a CPU; default), bf16 or off")
    g.add_argument(
        "--matmul",
        help="fp32 matmul precision: auto (reduced on CUDA, full on CPU; default), full, or "
        "reduced (TF32 on CUDA, bf16 inside oneDNN on a CPU with AMX)",
    )
    g.add_argument(
        "--fused-optim",
        action="store_true",
        default=None,
        help="fused Adam/AdamW kernels: the same update, rounded differently (faster on CPU)",
    )
    g.add_argument(
        "--channels-last", action="store_true", default=None, help="channels-last memory format"
    )
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--log-every", type=int, help="log row every N steps (50)")
    g.add_argument("--ckpt-every", type=int, help="checkpoint every N steps (5000; 0: at the end)")
    g.add_argument("--eval-every", type=int, help="quick evaluation every N steps (0: never)")
    g.add_argument("--no-progress", action="store_false", default=None, help="no progress bar")
    g.add_argument("--no-tensorboard", action="store_false", default=None, help="CSV logs only")


def build_config(args: argparse.Namespace) -> tuple[Config, list[str]]:
    """The resolved config of the command line (or, with ``--resume``, the stored one with
    the overrides applied) and the notes of resolution. Raises ConfigError."""
    from fqvae.training import checks, presets

    if args.resume and args.overwrite:
        raise ConfigError(
            "--resume continues the run in --out and --overwrite replaces it; pick one"
        )
    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out, the run folder to continue")
        if args.preset:
            raise ConfigError("--resume takes the run's stored configuration; drop --preset")
        manifest = Path(args.out) / "config.json"
        if not manifest.is_file():
            raise ConfigError(f"--resume: {manifest} not found (no run in {args.out})")
        try:
            with open(manifest) as f:
                cfg = Config.from_dict(json.load(f)["config"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"--resume: {manifest} is not a readable run configuration ({exc!r:.120}); "
                "restore it, or start a new run with --overwrite"
            ) from None
        stored = Config.from_dict(cfg.to_dict())
        _apply_overrides(cfg, args)
        checks.check_resume(cfg, stored)
        return cfg, _extension_notes(stored, cfg)
    cfg = Config()
    set_by_preset: set[str] = set()
    for name in args.preset:
        set_by_preset.update(presets.apply_preset(cfg, name))
    for dest, key in FLAGS.items():
        value = getattr(args, dest)
        if key in set_by_preset and value is not None and value != get_key(cfg, key):
            raise ConfigError(
                f"--{dest.replace('_', '-')} {value} conflicts with --preset "
                f"{cfg.preset} ({key}={get_key(cfg, key)!r})"
            )
    _apply_overrides(cfg, args)
    if cfg.out == Config().out and not args.out:
        cfg.out = f"runs/{cfg.model.name}-{cfg.data.name}"
    notes = presets.resolve(cfg)
    return cfg, notes


def _extension_notes(stored: Config, cfg: Config) -> list[str]:
    """What resuming with a new ``train.iterations`` means, in one line (docs/training.md)."""
    old, new = stored.train.iterations, cfg.train.iterations
    if old == new:
        return []
    hp = cfg.model.hparams
    kept = ", ".join(f"{k}={hp[k]:g}" for k in ("tau_rate", "lr_t_max") if hp.get(k) is not None)
    return [
        f"the run goes from {old} to {new} steps and keeps the schedules it was resolved with "
        f"for {old} steps{f' ({kept})' if kept else ''}: tau keeps decaying at the same rate and "
        f"the learning rate stays on its {old}-step schedule, so it differs from a fresh "
        f"{new}-step run"
    ]


def _apply_overrides(cfg: Config, args: argparse.Namespace) -> None:
    """Explicit flags, then ``--set KEY=VALUE`` in order."""
    for dest, key in FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            set_key(cfg, key, value, parse=False)
    if args.out:
        cfg.out = args.out
    for item in args.overrides:
        set_item(cfg, item)


def _list() -> str:
    from fqvae.models import hparam_names
    from fqvae.training import checks, presets
    from fqvae.training.config import keys

    lines = ["models (model.hparams keys):"]
    lines += [
        f"  {m}: {', '.join(h for h in hparam_names(m) if h != 'arch')}" for m in checks.models()
    ]
    lines += ["presets:", "  " + ", ".join(presets.preset_names())]
    lines += ["config keys:", "  " + ", ".join(keys())]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Resolve, train, and map failures to exit codes: 2 bad configuration or files,
    3 non-finite loss, 130 stopped by a signal (checkpoint saved; resume with --resume)."""
    from fqvae.training import checks
    from fqvae.training.checkpoint import BadCheckpoint
    from fqvae.training.step import NonFiniteLoss
    from fqvae.training.trainer import train

    main = os.environ.get("RANK", "0") == "0"
    say = (lambda msg: print(msg, file=sys.stderr)) if main else (lambda msg: None)
    if args.list:
        print(_list())
        return 0
    try:
        cfg, notes = build_config(args)
        for note in notes:
            say(f"fqvae train: note: {note}")
        if args.dry_run:
            checks.check_model_settings(cfg)
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        result = train(cfg, resume=args.resume, overwrite=args.overwrite, notes=notes)
    except (ConfigError, BadCheckpoint, OSError) as exc:
        say(f"fqvae train: error: {exc}")
        return 2
    except NonFiniteLoss as exc:
        say(f"fqvae train: error: {exc}")
        return 3
    if result.stopped:
        say(
            f"fqvae train: stopped at step {result.step}; checkpoint saved. Continue with: "
            f"fqvae train --resume --out {result.out}"
        )
        return 130
    say(f"fqvae train: done, {result.step} steps; outputs in {result.out}")
    return 0
