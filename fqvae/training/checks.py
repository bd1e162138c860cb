"""Checks of a run's configuration: names and values inside their choices, and what a resumed
run may change. They fill nothing (:mod:`.presets` does), so the trainer runs them on any config.
"""

from __future__ import annotations

import math
import re

from fqvae.training.config import (
    AMP,
    FIDELITY,
    MATMUL,
    RECIPES,
    SPLITS,
    Config,
    ConfigError,
    flatten,
    get_key,
)


def models() -> list[str]:
    from fqvae.models import MODELS

    return sorted(MODELS)


def datasets() -> list[str]:
    from fqvae.data import DATASETS

    return list(DATASETS)


#: the keys :func:`fqvae.training.presets.resolve` fills; the trainer reads them as given
RESOLVED = ("train.iterations", "train.batch", "train.lr", "model.latents", "data.split")


def check_resolved(cfg: Config) -> None:
    """Raise ConfigError if a key that resolution fills is still unset."""
    unset = [key for key in RESOLVED if get_key(cfg, key) is None]
    if unset:
        raise ConfigError(
            f"{', '.join(unset)} unset: resolve the config first "
            "(fqvae.training.presets.resolve), or set them"
        )


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
        "system.matmul": MATMUL,
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


#: the image size a model is checked at when the config leaves it to the dataset: 64 px for
#: every dataset (Isaac3D's and Falcor3D's 128 px renders are resized to 64 as they load)
CHECK_IMAGE_SIZE = 64


def check_model_settings(cfg: Config) -> None:
    """Raise ConfigError if the model of the resolved ``cfg`` rejects its hparams, backbone or
    image size: it is built once on the CPU, before any data is read, so that ``--dry-run``
    and a study's spec check catch what would otherwise fail only when the run starts. The
    channel count does not change what a model accepts (3 here); an unset image size is
    checked at :data:`CHECK_IMAGE_SIZE`."""
    import torch

    from fqvae.training import model_build

    size = cfg.data.image_size or CHECK_IMAGE_SIZE
    with torch.random.fork_rng(devices=[]):
        model_build.build(cfg, (size, size, 3))


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


#: keys a resumed run may change (where and how it runs, how long, what it logs)
RESUMABLE = ("out", "system.", "log.", "eval.", "data.path", "train.iterations")


def check_resume(new: Config, old: Config) -> None:
    """Raise ConfigError if ``new`` changes what the checkpoint's run trained."""
    a, b = flatten(new.to_dict()), flatten(old.to_dict())
    changed = [k for k in a if a[k] != b.get(k) and not k.startswith(RESUMABLE)]
    if changed:
        diff = ", ".join(f"{k}: {b.get(k)!r} -> {a[k]!r}" for k in changed)
        raise ConfigError(f"--resume cannot change what the run trains ({diff})")
