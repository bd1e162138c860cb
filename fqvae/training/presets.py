"""Presets: published per-model, per-dataset settings and the fidelity variants, resolved into
explicit config values.

Two kinds of presets combine:

* a **model-dataset preset** ``MODEL-DATA`` (e.g. ``factorqvae-shapes3d``) picks the model and
  the dataset; their published settings (``fqvae.training.published.PUBLISHED``: batch, iterations,
  learning rate, loss weights, schedules) fill every key the user leaves unset;
* a **fidelity variant** ``train.fidelity`` (spec ``factorqvae.md`` §9):

  - ``executed`` reproduces what the official code executed: the split-batch models run 50k
    batches with ``tau_rate = 2e-5`` (Lightning counted two steps per batch), the others 100k
    batches at ``1e-5``; the cosine learning rate has ``T_max = 50k`` and is periodic (the
    100k-batch baselines climb back to the initial rate by the end);
  - ``clean`` keeps the iteration counts, sets ``tau_rate = 1 / iterations`` and one cosine
    decay over the run (``lr_t_max = iterations``, ``lr_cycle = single``).

A user who changes ``train.iterations`` without giving ``tau_rate`` gets ``1 / iterations`` (tau
still ends at e^-1), and, without ``lr_t_max``, a cosine period scaled with the run; both are
reported as notes, which the trainer prints and writes into the manifest.
"""

from __future__ import annotations

from collections.abc import Iterable

from fqvae.data import table
from fqvae.models import hparam_defaults, hparam_names
from fqvae.training.checks import validate
from fqvae.training.config import FIDELITY, FIDELITY_ALIASES, Config, ConfigError
from fqvae.training.published import PUBLISHED, cpu_recipe, published
from fqvae.training.runtime import cpu_bf16_matmul, cpu_native_bf16


def preset_names() -> list[str]:
    """``MODEL-DATA`` for every published pair, then the fidelity variants."""
    return sorted(f"{m}-{d}" for m, d in PUBLISHED) + list(FIDELITY)


def apply_preset(cfg: Config, name: str) -> list[str]:
    """Set the model and dataset of preset ``name`` (or the fidelity, for ``executed`` and
    ``clean``; ``reference`` is the old name of ``executed``); returns the keys it set."""
    name = FIDELITY_ALIASES.get(name, name)
    if name in FIDELITY:
        cfg.train.fidelity = name
        return ["train.fidelity"]
    pairs = {f"{m}-{d}": (m, d) for m, d in PUBLISHED}
    if name not in pairs:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    cfg.preset = name
    cfg.model.name, cfg.data.name = pairs[name]
    return ["model.name", "data.name"]


def resolve(cfg: Config) -> list[str]:
    """Fill the unset keys of ``cfg`` in place from the published settings of its model and
    dataset under its fidelity variant (see the module docstring). Returns notes for the user;
    raises ConfigError for unknown names, keys and values."""
    validate(cfg)
    model, data, t = cfg.model.name, cfg.data.name, cfg.train
    notes = []
    auto = t.recipe == "auto"
    if auto:
        t.recipe = "cpu" if _runs_on_cpu(cfg) else "paper"
    if t.recipe == "cpu" and t.fidelity == "executed":
        raise ConfigError(
            "train.fidelity=executed needs --recipe paper: the CPU recipe runs the clean "
            "schedules only (one cosine over the run, tau_rate = 1/steps)"
        )
    t.fidelity = t.fidelity or ("clean" if t.recipe == "cpu" else "executed")
    exact = (model, data) in PUBLISHED
    if not exact:
        notes.append(
            f"no published settings for {model} on {data}; using its Shapes3D values (untuned)"
        )
    entry = published(model, data if exact else "shapes3d", t.fidelity)
    if t.recipe == "cpu":
        entry = cpu_recipe(entry, model)
    if exact and entry["untuned"]:
        notes.append(
            f"the published settings of {model} on {data} reuse its Shapes3D values (untuned)"
        )
    hparams = dict(entry["hparams"])
    iterations = entry["iterations"]
    if t.iterations is not None and t.iterations != iterations:
        user = cfg.model.hparams
        if "tau_rate" in hparams and "tau_rate" not in user:
            hparams["tau_rate"] = 1.0 / t.iterations
            notes.append(
                f"train.iterations={t.iterations} without tau_rate: tau_rate = "
                f"1/iterations = {hparams['tau_rate']:.4g} (tau ends at e^-1)"
            )
        if hparams.get("lr_schedule") == "cosine" and "lr_t_max" not in user:
            t_max = max(1, round(hparams["lr_t_max"] * t.iterations / iterations))
            notes.append(
                f"lr_t_max = {t_max}: the published {hparams['lr_t_max']} for "
                f"{iterations} iterations, scaled to {t.iterations}"
            )
            hparams["lr_t_max"] = t_max
    t.iterations = t.iterations or iterations
    t.batch = t.batch or entry["batch_size"]
    t.lr = t.lr or entry["lr"]
    if auto and t.recipe == "cpu":
        notes.append(
            f"no GPU: the CPU recipe ({cfg.model.arch or entry['arch']} backbone, "
            f"{cfg.data.image_size or entry['image_size']}px images, batch {t.batch}, "
            f"{t.iterations} steps; docs/recipes.md); --recipe paper for the published settings"
            + _faster_cpu_hint(cfg)
        )
    if cfg.data.split is None:
        cfg.data.split = "all" if entry["source"] == "hsu2023" else "train"
    if cfg.model.latents is None:
        cfg.model.latents = entry["num_latents"] if exact else 2 * len(table(data).latent)
    if cfg.model.arch is None:
        cfg.model.arch = entry.get("arch") or _default_arch(model)
    if cfg.data.image_size is None:
        cfg.data.image_size = entry.get("image_size")
    if "arch" in cfg.model.hparams:
        raise ConfigError("set the backbone with model.arch (--arch), not model.hparams.arch")
    check_hparams(model, cfg.model.hparams)
    cfg.model.hparams = {**hparams, **cfg.model.hparams}
    validate(cfg)
    return notes


def check_hparams(model: str, names: Iterable[str]) -> None:
    """Raise ``ConfigError`` naming any of ``names`` that ``model`` takes no hparam of."""
    unknown = sorted(set(names) - set(hparam_names(model)))
    if unknown:
        raise ConfigError(
            f"model {model!r} has no hparams {unknown}; its hparams: "
            f"{', '.join(hparam_names(model))}"
        )


def _runs_on_cpu(cfg: Config) -> bool:
    import torch

    device = cfg.system.device
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def _default_arch(model: str) -> str | None:
    return hparam_defaults(model).get("arch")


def _faster_cpu_hint(cfg: Config) -> str:
    """The opt-in CPU speed settings this run leaves off and this machine supports, if any."""
    flags = [] if cfg.system.fused_optim else ["--fused-optim"]
    if cfg.system.matmul == "auto" and cpu_bf16_matmul():
        flags.append("--matmul reduced")
    if cfg.system.amp == "auto" and cpu_native_bf16():
        flags.append("--amp bf16")
    return f"; {' '.join(flags)} train faster, rounded differently" if flags else ""
