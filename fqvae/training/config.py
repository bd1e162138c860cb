"""Run configuration: plain dataclasses, dotted ``key=value`` overrides, JSON round trip.

A :class:`Config` starts with ``None`` (or an empty ``model.hparams``) in the keys that a
preset decides: batch, iterations, learning rate and schedule, temperature rate, loss weights.
:func:`fqvae.training.presets.resolve` fills them in, so the manifest a run writes
(``DIR/config.json``) holds explicit values only.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

FIDELITY = ("executed", "clean")
RECIPES = ("auto", "paper", "cpu")
AMP = ("auto", "bf16", "off")
MATMUL = ("auto", "full", "reduced")
SPLITS = ("train", "all")
#: old names of fidelity variants, read as the new ones (configs of earlier runs keep working)
FIDELITY_ALIASES = {"reference": "executed"}


class ConfigError(ValueError):
    """A configuration a user wrote is invalid (unknown key, bad value, incompatible options)."""


@dataclass
class ModelConfig:
    name: str = "factorqvae"
    #: backbone: None (the model's published one), "small" or "small3" (light ones for CPU
    #: runs), or any name ``fqvae.nn.ARCHS`` knows
    arch: str | None = None
    #: number of latents; None: twice the number of ground-truth factors (spec §6)
    latents: int | None = None
    #: keyword hparams of ``build_model``: loss weights (kl_weight, gamma, ...) and the
    #: model-owned schedules (tau_rate, lr_schedule, lr_t_max, lr_eta_min, lr_cycle, disc_lr);
    #: filled from ``fqvae.training.published.PUBLISHED``, overridden by ``model.hparams.KEY=V``
    hparams: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    name: str = "shapes3d"
    #: dataset file or folder; None: the data package's lookup (``FQVAE_DATA_ROOT``)
    path: str | None = None
    #: "train": the 80% slice of the 80/10/10 split (FactorQVAE family); "all": every image
    split: str | None = None
    split_seed: int = 1
    #: train and evaluate on images area-averaged to this side (None: the native size, 64)
    image_size: int | None = None


@dataclass
class TrainConfig:
    #: "paper" (the published settings), "cpu" (the CPU recipe: 3-25 minutes a run on 2
    #: cores, docs/recipes.md) or "auto" (cpu when the run's device is a CPU, else paper)
    recipe: str = "auto"
    #: fidelity variant (spec §9): "executed" (the schedules as the official code executed
    #: them) or "clean" (as intended); "reference", the old name of "executed", is read as it.
    #: Unset: "executed" under the paper recipe, "clean" under the CPU recipe (its only one)
    fidelity: str | None = None
    #: optimizer steps (batches); one step reads ``batch`` images across all ranks
    iterations: int | None = None
    #: global batch (split in halves by the discriminator models)
    batch: int | None = None
    lr: float | None = None
    seed: int = 1
    #: deterministic kernels on CUDA (slower); CPU runs are deterministic anyway
    deterministic: bool = False


@dataclass
class SystemConfig:
    #: "auto" (cuda when available), "cpu", "cuda" or "cuda:N"
    device: str = "auto"
    #: "auto" (bf16 on CUDA, off on CPU), "bf16" or "off"
    amp: str = "auto"
    #: fp32 matmuls: "auto" (reduced on CUDA, full on CPU), "full" (IEEE fp32) or "reduced"
    #: (TF32 on CUDA; bf16 inside oneDNN on a CPU with AMX)
    matmul: str = "auto"
    #: the optimizers' fused Adam/AdamW kernels: the same update, rounded differently
    fused_optim: bool = False
    channels_last: bool = False
    compile: bool = False


@dataclass
class LogConfig:
    #: progress-bar refresh and CSV/TensorBoard row every this many steps
    every: int = 50
    #: periodic checkpoint every this many steps (0: only at the end)
    ckpt_every: int = 5000
    tensorboard: bool = True
    progress: bool = True


@dataclass
class EvalConfig:
    #: periodic evaluation on a small sample every this many steps (0: never)
    every: int = 0
    metrics: list[str] = field(default_factory=lambda: ["dci", "infomec", "mig"])
    num_train: int = 1000
    num_test: int = 500
    #: the full evaluation at the end of training (final_num_train 0: skip it)
    final_num_train: int = 10000
    final_num_test: int = 5000
    #: metric settings preset of ``fqvae.metrics`` (seed 1, InfoMEC k=3 for "factorqvae")
    metric_preset: str | None = "factorqvae"
    #: worker processes for the metrics (-1: all cores)
    n_jobs: int = -1
    #: traversal and codebook-usage PNGs at every evaluation and at the end
    images: bool = True


@dataclass
class Config:
    #: the model-dataset preset the run started from (e.g. "factorqvae-shapes3d"), if any
    preset: str | None = None
    out: str = "runs/default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        cfg = cls()
        for key, value in flatten(data).items():
            set_key(cfg, key, value, parse=False)
        return cfg


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; ``model.hparams`` stays one dict."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path != "model.hparams":
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def keys() -> list[str]:
    """Every settable dotted key (``model.hparams.NAME`` is open-ended)."""
    return sorted(flatten(Config().to_dict()))


def get_key(cfg: Config, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def set_key(cfg: Config, key: str, value: Any, parse: bool = True) -> None:
    """Set dotted ``key`` to ``value``; with ``parse`` a string is read as JSON-ish text and
    coerced to the field's type. Unknown keys and values of the wrong type raise ConfigError."""
    if key == "train.fidelity" and value in FIDELITY_ALIASES:
        value = FIDELITY_ALIASES[value]
    parts = key.split(".")
    if parts[:2] == ["model", "hparams"] and len(parts) == 3:
        cfg.model.hparams[parts[2]] = _parse_text(value) if parse else value
        return
    obj: Any = cfg
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(obj) or part not in _field_names(obj):
            raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(keys())}")
        obj = getattr(obj, part)
    name = parts[-1]
    if not dataclasses.is_dataclass(obj) or name not in _field_names(obj):
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(keys())}")
    hint = typing.get_type_hints(type(obj))[name]
    if dataclasses.is_dataclass(hint):
        raise ConfigError(f"{key!r} is a section; set one of its keys, e.g. {key}.<name>=...")
    setattr(obj, name, _coerce(key, _parse_text(value) if parse else value, hint))


def set_item(cfg: Config, item: str) -> None:
    """Apply one ``--set`` item, ``"KEY=VALUE"``, through :func:`set_key`."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    set_key(cfg, key.strip(), value)


def _field_names(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)}


def _parse_text(value: Any) -> Any:
    """``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"true"`` -> True, ``"null"`` -> None,
    ``"a,b"`` -> ["a", "b"], anything else stays a string."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("null", "none"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the annotation ``hint`` (allowing int -> float and str "off")."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    origin = typing.get_origin(hint)
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [_coerce(key, item, args[0]) for item in items]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "on" if value else "off"
    elif hint is Any:
        return value
    raise ConfigError(f"{key} must be {getattr(hint, '__name__', hint)}, got {value!r}")
