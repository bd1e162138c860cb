"""Presets: published per-model, per-dataset settings and the fidelity variants, resolved into
explicit config values.

Two kinds of presets combine:

* a **model-dataset preset** ``MODEL-DATA`` (e.g. ``factorqvae-shapes3d``) picks the model and
  the dataset; their published settings (``fqvae.models.hparams.PUBLISHED``: batch, iterations,
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

import inspect
import math
import re
from typing import Any

from fqvae.training.config import FIDELITY_ALIASES, Config, ConfigError, flatten, get_key

FIDELITY = ("executed", "clean")
RECIPES = ("auto", "paper", "cpu")
AMP = ("auto", "bf16", "off")
SPLITS = ("train", "all")


def models() -> list[str]:
    from fqvae.models import MODELS

    return sorted(MODELS)


def datasets() -> list[str]:
    from fqvae.data import DATASETS

    return list(DATASETS)


def _published() -> dict[tuple[str, str], dict[str, Any]]:
    from fqvae.models import PUBLISHED

    return PUBLISHED


def preset_names() -> list[str]:
    """``MODEL-DATA`` for every published pair, then the fidelity variants."""
    return sorted(f"{m}-{d}" for m, d in _published()) + list(FIDELITY)


def apply_preset(cfg: Config, name: str) -> list[str]:
    """Set the model and dataset of preset ``name`` (or the fidelity, for ``executed`` and
    ``clean``; ``reference`` is the old name of ``executed``); returns the keys it set."""
    name = FIDELITY_ALIASES.get(name, name)
    if name in FIDELITY:
        cfg.train.fidelity = name
        return ["train.fidelity"]
    pairs = {f"{m}-{d}": (m, d) for m, d in _published()}
    if name not in pairs:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    cfg.preset = name
    cfg.model.name, cfg.data.name = pairs[name]
    return ["model.name", "data.name"]


def resolve(cfg: Config) -> list[str]:
    """Fill the unset keys of ``cfg`` in place from the published settings of its model and
    dataset under its fidelity variant (see the module docstring). Returns notes for the user;
    raises ConfigError for unknown names, keys and values."""
    from fqvae.models import cpu_recipe, hparam_names, published

    validate(cfg)
    model, data, t = cfg.model.name, cfg.data.name, cfg.train
    notes = []
    auto = t.recipe == "auto"
    if auto:
        t.recipe = "cpu" if _runs_on_cpu(cfg) else "paper"
    if t.recipe == "cpu":
        t.fidelity = "clean"
    exact = (model, data) in _published()
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
        )
    if cfg.data.split is None:
        cfg.data.split = "all" if entry["source"] == "hsu2023" else "train"
    if cfg.model.latents is None and exact:
        cfg.model.latents = entry["num_latents"]
    if cfg.model.arch is None:
        cfg.model.arch = entry.get("arch") or _default_arch(model)
    if cfg.data.image_size is None:
        cfg.data.image_size = entry.get("image_size")
    if "arch" in cfg.model.hparams:
        raise ConfigError("set the backbone with model.arch (--arch), not model.hparams.arch")
    unknown = sorted(set(cfg.model.hparams) - set(hparam_names(model)))
    if unknown:
        raise ConfigError(
            f"model {model!r} has no hparams {unknown}; its hparams: "
            f"{', '.join(hparam_names(model))}"
        )
    cfg.model.hparams = {**hparams, **cfg.model.hparams}
    validate(cfg)
    return notes


def _runs_on_cpu(cfg: Config) -> bool:
    import torch

    device = cfg.system.device
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def _default_arch(model: str) -> str | None:
    from fqvae.models import MODELS

    arch = inspect.signature(MODELS[model]).parameters.get("arch")
    return None if arch is None else arch.default


def validate(cfg: Config, check_names: bool = True) -> None:
    """Raise ConfigError for names and values outside their choices (unset keys pass)."""
    if check_names:
        if cfg.model.name not in models():
            raise ConfigError(
                f"unknown model {cfg.model.name!r}; known models: {', '.join(models())}"
            )
        if cfg.data.name not in datasets():
            raise ConfigError(
                f"unknown dataset {cfg.data.name!r}; known datasets: {', '.join(datasets())}"
            )
    values = flatten(cfg.to_dict())
    choices = {
        "train.recipe": RECIPES,
        "train.fidelity": FIDELITY,
        "system.amp": AMP,
        "data.split": SPLITS,
    }
    for key, allowed in choices.items():
        if values[key] is not None and values[key] not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {values[key]!r}")
    for key in (
        "train.iterations",
        "train.batch",
        "train.lr",
        "log.every",
        "eval.num_train",
        "eval.num_test",
        "model.latents",
        "data.image_size",
    ):
        if values[key] is not None and not values[key] > 0:
            raise ConfigError(f"{key} must be > 0, got {values[key]}")
    for key in ("log.ckpt_every", "eval.every", "eval.final_num_train", "eval.final_num_test"):
        if values[key] < 0:
            raise ConfigError(f"{key} must be >= 0, got {values[key]}")
    from fqvae.metrics import METRICS, PRESETS

    unknown = [m for m in cfg.eval.metrics if m not in METRICS]
    if unknown or not cfg.eval.metrics:
        raise ConfigError(
            f"eval.metrics must be a non-empty subset of {', '.join(METRICS)}, "
            f"got {cfg.eval.metrics}"
        )
    if cfg.eval.metric_preset is not None and cfg.eval.metric_preset not in PRESETS:
        raise ConfigError(
            f"eval.metric_preset must be one of {', '.join(PRESETS)} or null, "
            f"got {cfg.eval.metric_preset!r}"
        )
    _validate_run_settings(cfg)
    if cfg.system.amp == "bf16" and cfg.system.device == "cpu":
        raise ConfigError("--amp bf16 needs a CUDA device; it cannot be combined with --device cpu")


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _validate_run_settings(cfg: Config) -> None:
    """The settings that would otherwise fail only when their work starts (the seed, the
    device, the learning rate, the evaluation at the end of a run)."""
    seed = cfg.train.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"train.seed must be an int in [0, 2^63), got {seed!r}")
    if cfg.train.lr is not None and not math.isfinite(cfg.train.lr):
        raise ConfigError(f"train.lr must be finite, got {cfg.train.lr}")
    device = cfg.system.device
    if not isinstance(device, str) or not DEVICE.fullmatch(device):
        raise ConfigError(f"system.device must be auto, cpu, cuda or cuda:N, got {device!r}")
    n_jobs = cfg.eval.n_jobs
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or not n_jobs
    ):
        raise ConfigError(f"eval.n_jobs must be a non-zero int (-1: all cores), got {n_jobs!r}")
    pairs = [("eval.final_num_train", "eval.final_num_test")]
    if cfg.eval.every:
        pairs.append(("eval.num_train", "eval.num_test"))
    needs_test = any(m in ("dci", "sap") for m in cfg.eval.metrics)
    for train_key, test_key in pairs:
        checked = [train_key] + ([test_key] if needs_test else [])
        if get_key(cfg, train_key):
            for key in checked:
                if get_key(cfg, key) < 2:
                    raise ConfigError(
                        f"{key} must be 0 (no evaluation) or >= 2, got {get_key(cfg, key)}"
                    )


def finalize(cfg: Config, dataset: Any) -> None:
    """Fill the keys that depend on the loaded dataset: latents = 2 x its factors (spec §6)."""
    if cfg.model.latents is None:
        cfg.model.latents = 2 * len(dataset.latent_factor_indices)


def model_kwargs(cfg: Config, dataset: Any) -> dict[str, Any]:
    """Keyword arguments of ``fqvae.models.build_model`` for ``cfg`` on ``dataset``."""
    height, _, channels = dataset.observation_shape
    return dict(
        name=cfg.model.name,
        in_channels=channels,
        image_size=height,
        num_latents=cfg.model.latents,
        arch=cfg.model.arch,
        **cfg.model.hparams,
    )


#: keys a resumed run may change (where and how it runs, how long, what it logs)
RESUMABLE = ("out", "system.", "log.", "eval.", "data.path", "train.iterations")


def check_resume(new: Config, old: Config) -> None:
    """Raise ConfigError if ``new`` changes what the checkpoint's run trained."""
    a, b = flatten(new.to_dict()), flatten(old.to_dict())
    changed = [k for k in a if a[k] != b.get(k) and not k.startswith(RESUMABLE)]
    if changed:
        diff = ", ".join(f"{k}: {b.get(k)!r} -> {a[k]!r}" for k in changed)
        raise ConfigError(f"--resume cannot change what the run trains ({diff})")
