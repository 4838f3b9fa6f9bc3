"""YAML run configuration -> typed, frozen config.

Each section is a frozen dataclass that owns its defaults. ``load_config(path, overrides)`` reads
the YAML, applies ``--set key=value`` overrides (dotted keys, YAML-parsed values), and builds the
typed config; unknown keys and bad values raise :class:`ConfigError` naming the key and, where
one exists, the close match. ``Config.to_dict()`` is what a run saves as ``runs/<name>/config.yaml``
(resume reads that file back, so a run never depends on the original YAML again).

The strategy section is open-ended (each strategy owns its knobs): its keys are checked by the
strategy's own ``Params`` dataclass (``strategies.build_strategy``); the ``actions`` section is
handed to :class:`morphnas.spaces.actions.ActionSpace`, which checks it.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from morphnas.morphism.errors import MorphnasError


class ConfigError(MorphnasError):
    """A bad run configuration: the message names the key, the value and the fix."""


DATASETS = ("digits", "cifar10", "cifar100", "mnist", "fashion_mnist", "svhn", "image_folder")


@dataclass(frozen=True)
class SeedConfig:
    """The seed network (member 0): trained here for ``epochs`` unless ``checkpoint`` is given."""

    network: str = "tiny_resnet"        # registry name, paper variant, saved network dir, torchvision:<name>
    checkpoint: str | None = None       # a saved, already trained network: skip seed training
    epochs: int = 10
    lr: float = 0.1                     # the seed's initial LR; children default to 1/10 of it
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int | None = None       # None: data.batch_size


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    root: str = "data"                  # where torchvision datasets live / are downloaded
    image_size: int | None = None       # resize to this (digits: upscale 8x8); None: native size
    val_fraction: float = 0.15          # held out of the training set for model selection
    test_fraction: float = 0.2          # digits only (it has no official test split)
    augment: str = "auto"               # auto (CIFAR/SVHN: pad-4 crop + flip), none, crop_flip, crop
    download: bool = True
    batch_size: int = 64
    train_limit: int | None = None      # keep only this many training images (quick experiments)


@dataclass(frozen=True)
class BudgetConfig:
    trials: int | None = 20             # children to train (the seed is not counted)
    wall_time: float | None = None      # seconds ("30m", "2h" accepted); no new trial after it


@dataclass(frozen=True)
class FinetuneConfig:
    """Brief low-LR fine-tuning of every child (Net2Net: about 1/10 of the parent's initial LR)."""

    epochs: int = 3
    lr: float | None = None             # None: seed.lr * lr_factor
    lr_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"            # cosine | constant
    batch_size: int | None = None


@dataclass(frozen=True)
class ResourcesConfig:
    cpus_per_trial: int = 1
    gpus_per_trial: float | None = None  # None: 1 when the cluster has GPUs, else 0
    max_concurrent: int | None = None    # None: as many as the CPUs allow
    amp: bool = True                     # mixed precision when on a GPU


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None          # None: start a local Ray; "auto" or host:port joins a cluster
    num_cpus: int | None = None         # CPUs of the local Ray instance (None: all)
    asha: bool = False                  # early-stop weak children (ASHA on val_acc per epoch)
    grace_period: int = 1
    reduction_factor: int = 2
    max_failures: int = 0               # re-runs of a trial whose worker or node died (Tune FailureConfig);
                                        # 0: such a trial is recorded FAIL and the search goes on


@dataclass(frozen=True)
class VerifyConfig:
    tolerance: float = 1e-4             # max relative output error parent -> child before training
    dtype: str = "float64"


@dataclass(frozen=True)
class FinalConfig:
    enabled: bool = True
    epochs: int = 10                    # the best child trained this much longer
    lr: float | None = None             # None: the fine-tune LR


@dataclass(frozen=True)
class Config:
    name: str = "run"
    runs_dir: str = "runs"
    random_seed: int = 0
    storage: str | None = None          # Optuna storage URL; None: sqlite:///<run dir>/study.db (see rundir.py)
    seed: SeedConfig = field(default_factory=SeedConfig)
    data: DataConfig = field(default_factory=DataConfig)
    actions: dict = field(default_factory=dict)
    strategy: dict = field(default_factory=lambda: {"name": "hill_climb"})
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    final: FinalConfig = field(default_factory=FinalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def finetune_lr(self) -> float:
        return self.finetune.lr if self.finetune.lr is not None else self.seed.lr * self.finetune.lr_factor

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------- building
def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML file, apply ``key=value`` overrides, return the checked config."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist (see configs/ for examples)")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return config_from_dict(apply_overrides(raw, overrides))


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["budget.trials=5", "strategy.name=evolution"]`` -> a new dict with those keys set."""
    out = _deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set budget.trials=5")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        cur = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            nxt = cur.get(part)
            if nxt is None:
                nxt = cur[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            cur = nxt
        cur[parts[-1]] = parsed
    return out


def config_from_dict(raw: dict[str, Any]) -> Config:
    cfg = _build(Config, raw, "")
    _check(cfg)
    return cfg


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {where!r} must be a mapping, got {raw!r}" if where else f"the config must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        full = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {(where + '.' if where else '') + close[0]!r}?" if close else (
                f"; known keys: {', '.join(fields)}")
            raise ConfigError(f"unknown config key {full!r}{hint}")
        kwargs[key] = _value(hints[key], value, full)
    return cls(**kwargs)


def _value(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    args = typing.get_args(tp)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {key!r} must not be empty")
    base = next((a for a in args if a is not type(None)), tp) if args else tp
    if base is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return dict(value)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
    if base is float:
        if key.endswith("wall_time") and isinstance(value, str):
            return _duration(value, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
    if base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
    return value


def _duration(text: str, key: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(s|m|min|h)?\s*", text)
    if not m:
        raise ConfigError(f"config key {key!r}: {text!r} is not a duration (e.g. 300, '90s', '10m', '2h')")
    return float(m.group(1)) * {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def _positive(value: float | int | None, key: str, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"config key {key!r} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _choice(value: str, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"config key {key!r}: unknown value {value!r}; {hint}choose from {', '.join(choices)}")


def _check(cfg: Config) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", cfg.name):
        raise ConfigError(f"config key 'name': {cfg.name!r} must be letters, digits, '_', '-', '.' (a directory name)")
    _choice(cfg.data.dataset, DATASETS, "data.dataset")
    _choice(cfg.data.augment, ("auto", "none", "crop_flip", "crop"), "data.augment")
    _choice(cfg.finetune.schedule, ("cosine", "constant"), "finetune.schedule")
    _choice(cfg.verify.dtype, ("float32", "float64"), "verify.dtype")
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"config key 'data.val_fraction' must be in (0, 1), got {cfg.data.val_fraction}")
    if not 0 < cfg.data.test_fraction < 1:
        raise ConfigError(f"config key 'data.test_fraction' must be in (0, 1), got {cfg.data.test_fraction}")
    for key, v in (("seed.epochs", cfg.seed.epochs), ("finetune.epochs", cfg.finetune.epochs),
                   ("final.epochs", cfg.final.epochs), ("budget.trials", cfg.budget.trials),
                   ("ray.max_failures", cfg.ray.max_failures)):
        _positive(v, key, allow_zero=True)
    for key, v in (("seed.lr", cfg.seed.lr), ("finetune.lr", cfg.finetune.lr), ("final.lr", cfg.final.lr),
                   ("data.batch_size", cfg.data.batch_size), ("resources.cpus_per_trial", cfg.resources.cpus_per_trial),
                   ("resources.max_concurrent", cfg.resources.max_concurrent), ("budget.wall_time", cfg.budget.wall_time),
                   ("verify.tolerance", cfg.verify.tolerance), ("finetune.lr_factor", cfg.finetune.lr_factor)):
        _positive(v, key)
    if cfg.budget.trials is None and cfg.budget.wall_time is None:
        raise ConfigError("config 'budget': set budget.trials and/or budget.wall_time, else the search never ends")
    from .strategies import check_section
    check_section(cfg.strategy)


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text("# the resolved configuration of this run (morphnas resume reads it)\n"
                          + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
