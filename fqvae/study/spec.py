"""A study spec: one TOML file naming a dataset, seeds, a shared recipe and labelled models.

Every value is a config key exactly as ``fqvae train --set KEY=VALUE`` takes it: a TOML string
is the text after ``=``, any other value is written as JSON. The whole spec is checked before a
run starts: each key with :func:`fqvae.training.config.set_key`, each label's configuration with
:func:`fqvae.training.presets.resolve` (unknown models, hparams and values) and
:func:`fqvae.training.checks.check_model_settings` (values the model itself rejects).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fqvae.training.config import Config, ConfigError, set_key

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

TOP_LEVEL = ("name", "description", "data", "seeds", "recipe", "models")
#: keys the study itself sets for every run (the grid and where it lives)
RESERVED = {
    "model.name": "the label's `model` (or the label itself)",
    "data.name": "the top-level `data`",
    "train.seed": "the top-level `seeds`",
    "out": "the study folder (--out)",
    "preset": "explicit keys",
    "data.path": "--data-path",
}
#: folder names a study uses next to its run folders
RESERVED_LABELS = ("logs", "figures")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class StudyError(ConfigError):
    """A spec, a study folder or a study option is invalid; the message is one line."""


@dataclass(frozen=True)
class Entry:
    """One ``[models.LABEL]`` table: the model it trains and its own config keys."""

    label: str
    model: str
    overrides: dict[str, str]


@dataclass
class Spec:
    """A parsed spec. ``sets(label)`` are the ``--set`` arguments of that label's runs and
    ``configs`` (filled by a checked load) their resolved configuration (seed: the first)."""

    path: Path
    name: str
    description: str
    data: str
    seeds: list[int]
    recipe: dict[str, str]
    entries: list[Entry]
    raw: dict[str, Any]
    configs: dict[str, Config] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.entries]

    def entry(self, label: str) -> Entry:
        return next(e for e in self.entries if e.label == label)

    def keys(self, label: str) -> dict[str, str]:
        """The label's config keys (recipe, then its overrides winning), sorted by key."""
        merged = {**self.recipe, **self.entry(label).overrides}
        return dict(sorted(merged.items()))

    def sets(self, label: str) -> list[str]:
        """``KEY=VALUE`` for each key of :meth:`keys`, in that fixed order."""
        return [f"{k}={v}" for k, v in self.keys(label).items()]


def value_text(value: Any) -> str:
    """The ``--set`` text of a TOML value: strings as written, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` (TOML dotted or nested keys) -> ``{"train.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _keys(path: Path, section: str, table: Any) -> dict[str, str]:
    if not isinstance(table, dict):
        raise StudyError(f"{path}: [{section}] must be a table of config keys")
    out = {}
    for key, value in _flatten(table).items():
        if key in RESERVED:
            raise StudyError(f"{path}: [{section}] {key} is set by {RESERVED[key]}")
        if not isinstance(value, (str, int, float, bool, list)):
            raise StudyError(f"{path}: [{section}] {key}: unsupported value {value!r}")
        out[key] = value_text(value)
    return out


def parse(text: str, path: Path) -> Spec:
    """The spec in ``text`` (read from ``path``, named in errors), without checking its keys
    against the config."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise StudyError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}; known: {', '.join(TOP_LEVEL)}"
        )
    for key in ("name", "data"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise StudyError(f"{path}: `{key}` must be a non-empty string")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise StudyError(f"{path}: `description` must be a string")
    seeds = raw.get("seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise StudyError(f"{path}: `seeds` must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{path}: `seeds` lists a seed twice: {seeds}")
    recipe = _keys(path, "recipe", raw.get("recipe", {}))
    models = raw.get("models")
    if not isinstance(models, dict) or not models:
        raise StudyError(f"{path}: no [models.LABEL] tables; add at least one")
    entries = []
    for label, table in models.items():
        if not LABEL.fullmatch(label) or label in RESERVED_LABELS:
            raise StudyError(
                f"{path}: [models.{label}]: a label is a folder name of letters, digits and "
                f"_.+- (not {' or '.join(RESERVED_LABELS)})"
            )
        if not isinstance(table, dict):
            raise StudyError(f"{path}: models.{label} must be a table")
        table = dict(table)
        model = table.pop("model", label)
        if not isinstance(model, str):
            raise StudyError(f"{path}: [models.{label}] model must be a string")
        entries.append(Entry(label, model, _keys(path, f"models.{label}", table)))
    return Spec(path, raw["name"], description, raw["data"], seeds, recipe, entries, raw)


def check(spec: Spec) -> None:
    """Resolve every label's configuration as its runs will (fills ``spec.configs``);
    raises StudyError naming the file, the table and the problem."""
    from fqvae.training import checks, presets

    for entry in spec.entries:
        cfg = Config()
        cfg.model.name, cfg.data.name, cfg.train.seed = entry.model, spec.data, spec.seeds[0]
        for key, text in spec.keys(entry.label).items():
            section = f"models.{entry.label}" if key in entry.overrides else "recipe"
            try:
                set_key(cfg, key, text)
            except ConfigError as exc:
                raise StudyError(f"{spec.path}: [{section}] {key}: {exc}") from None
        try:
            presets.resolve(cfg)
            checks.check_model_settings(cfg)
        except ConfigError as exc:
            raise StudyError(f"{spec.path}: [models.{entry.label}]: {exc}") from None
        spec.configs[entry.label] = cfg


def load(path: str | Path, checked: bool = True) -> Spec:
    """Read and parse the spec at ``path``; with ``checked``, also :func:`check` it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: cannot read the spec: {exc}") from None
    spec = parse(text, path)
    if checked:
        check(spec)
    return spec
