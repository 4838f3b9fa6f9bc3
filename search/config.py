"""YAML run configuration -> typed, frozen config.

Each section is a frozen dataclass that owns its defaults and, as field metadata, its bounds; they
are built and checked by :func:`morphnas.morphism.schema.build`, so every mistake is one line naming
the key, the value and the fix (unknown keys get the close match). ``load_config(path, overrides)``
reads the YAML, applies ``--set key=value`` overrides (dotted keys, YAML-parsed values), and builds
the typed config. ``Config.to_dict()`` is what a run saves as ``runs/<name>/config.yaml`` (resume
reads that file back, so a run never depends on the original YAML again).

The strategy section is open-ended (each strategy owns its knobs): its keys are checked by the
strategy's own ``Params`` dataclass (``strategies.check_section``); the ``actions`` section is
handed to :class:`morphnas.spaces.actions.ActionSpace`, which checks it.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from morphnas.morphism.errors import did_you_mean
from morphnas.morphism.safe_io import UnsafeInput, load_yaml, read_regular
from morphnas.morphism.schema import SchemaError, build, duration, rule
from morphnas.search.data.registry import check_dataset_name
from morphnas.search.data.task import TASKS, Task, TaskError
from morphnas.search.errors import ConfigError
from morphnas.search.state.fsutil import atomic_write_text

__all__ = ["BudgetConfig", "Config", "ConfigError", "DataConfig", "FinalConfig", "FinetuneConfig", "LatencyConfig",
           "RayConfig", "ResourcesConfig", "SeedConfig", "TaskConfig", "VerifyConfig", "apply_overrides",
           "config_from_dict", "load_config", "save_config"]

Schedule = Literal["cosine", "constant", "sgdr"]
Optimizer = Literal["sgd", "adamw"]


def _number(value: Any, key: str) -> Any:
    """A number written as YAML reads it or as a string such as "3e12" (YAML 1.1 reads that as text)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise SchemaError(f"{key!r} must be a number, got {value!r}; e.g. 3e12") from None
    return value


def _fraction(value: Any, key: str) -> Any:
    """A share of a split: strictly between 0 and 1 (0 or 1 would leave a split empty)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value                       # the type check reports it
    if not 0 < value < 1:
        raise SchemaError(f"{key!r} must be in (0, 1), got {value!r}; e.g. 0.15")
    return value


def _dir_name(value: Any, key: str) -> Any:
    """The run's directory name under ``runs_dir``: one plain path component."""
    if isinstance(value, str) and (not re.fullmatch(r"[A-Za-z0-9_.-]+", value) or value in (".", "..")):
        raise SchemaError(f"{key!r}: {value!r} must be letters, digits, '_', '-', '.' (a directory name, "
                          f"not '.' or '..')")
    if isinstance(value, str) and len(value) > MAX_NAME:
        raise SchemaError(f"{key!r}: {value[:24]!r}... is {len(value)} characters; a run name has at most {MAX_NAME} "
                          f"(it names a directory and the study)")
    return value


MAX_NAME = 100


_GT0 = rule(gt=0)
_GE0 = rule(ge=0)
_GE1 = rule(ge=1)


@dataclass(frozen=True)
class SeedConfig:
    """The seed network (member 0): trained here for ``epochs`` unless ``checkpoint`` is given."""

    network: str = "tiny_resnet"        # registry name, paper variant, saved network dir, torchvision:<name>
    checkpoint: str | None = None       # a saved, already trained network: skip seed training
    epochs: int = field(default=10, metadata=_GE0)
    lr: float = field(default=0.1, metadata=_GT0)   # the seed's initial LR; children default to 1/10 of it
    momentum: float = field(default=0.9, metadata=_GE0)
    weight_decay: float = field(default=1e-4, metadata=_GE0)
    optimizer: Optimizer = "sgd"        # sgd (with momentum) | adamw (betas 0.9/0.999; momentum unused)
    schedule: Schedule = "cosine"       # cosine | constant | sgdr (cosine with warm restarts)
    restart_epochs: int | None = field(default=None, metadata=_GE1)  # sgdr: first cycle; None: one cycle
    restart_mult: int = field(default=1, metadata=_GE1)               # sgdr: each cycle this much longer
    batch_size: int | None = field(default=None, metadata=_GE1)       # None: data.batch_size


@dataclass(frozen=True)
class DataConfig:
    dataset: str = field(default="digits", metadata=rule(parse=check_dataset_name))   # a registered dataset
    root: str = "data"                  # where torchvision datasets live / are downloaded
    image_size: int | None = field(default=None, metadata=_GE1)  # resize to this (digits: upscale 8x8); None: native
    val_fraction: float = field(default=0.15, metadata=rule(parse=_fraction))   # held out for model selection
    test_fraction: float = field(default=0.2, metadata=rule(parse=_fraction))   # digits only (no test split)
    augment: Literal["auto", "none", "crop_flip", "crop"] = "auto"  # auto: CIFAR/SVHN pad-4 crop + flip
    download: bool = True
    batch_size: int = field(default=64, metadata=_GE1)
    train_limit: int | None = field(default=None, metadata=_GE1)  # keep only this many training images
    options: dict[str, Any] = field(default_factory=dict)   # keyword arguments of your own factory
    path: str | None = None             # csv: the CSV file
    target: str | None = None           # csv: the column to predict
    features: list[str] | None = None   # csv: the input columns (None: every column but the target)
    stream: Literal["auto", True, False] = "auto"   # your own datasets: auto streams big or random ones
    memory_mb: float = field(default=1024.0, metadata=_GT0)   # auto: a dataset bigger than this streams
    workers: int = field(default=0, metadata=_GE0)   # DataLoader processes of a streamed dataset
    # image_folder: a file that is no readable image (empty, truncated, text named .png, a
    # decompression bomb) stops the run naming it (error), or is left out and counted (skip)
    bad_images: Literal["error", "skip"] = "error"


def _task_type(value: Any, key: str) -> Any:
    if isinstance(value, str) and value not in TASKS:
        raise SchemaError(f"{key!r}: unknown task {value!r}{did_you_mean(value, TASKS, known=None)}; "
                          f"use {' or '.join(TASKS)}")
    return value


@dataclass(frozen=True)
class TaskConfig:
    """What the networks learn: ``classification`` (cross-entropy; val_acc) or ``regression``
    (mse or l1; val_rmse, val_mae, val_mse or val_r2). See search/data/task.py."""

    type: str = field(default="classification", metadata=rule(parse=_task_type))
    loss: Literal["auto", "cross_entropy", "mse", "l1"] = "auto"
    metric: Literal["auto", "accuracy", "rmse", "mae", "mse", "r2"] = "auto"

    def _validate(self, where: str) -> None:
        try:
            Task.of(self.type, self.loss, self.metric)
        except TaskError as e:
            raise ConfigError(str(e)) from None

    def resolved(self) -> Task:
        return Task.of(self.type, self.loss, self.metric)


def _task_section(value: Any, key: str) -> Any:
    """``task: regression`` is short for ``task: {type: regression}``."""
    return {"type": value} if isinstance(value, str) else value


def _callbacks(value: Any, key: str) -> Any:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        for v in value:
            if not isinstance(v, str) or not v.strip():
                raise SchemaError(f"{key!r}: {v!r} is not a callback name; use mlflow, wandb, comet, aim, csv, json, "
                                  f"tensorboard or an import path 'package.module:Callback'")
            if ":" not in v and v not in TRACKERS:
                raise SchemaError(f"{key!r}: unknown callback {v!r}{did_you_mean(v, list(TRACKERS), known=None)} "
                                  f"(known: {', '.join(TRACKERS)}; or an import path 'package.module:Callback')")
    return value


# Ray Tune's own logger callbacks, by the names ray.callbacks accepts: (module, class).
TRACKERS = {"mlflow": ("ray.air.integrations.mlflow", "MLflowLoggerCallback"),
            "wandb": ("ray.air.integrations.wandb", "WandbLoggerCallback"),
            "comet": ("ray.air.integrations.comet", "CometLoggerCallback"),
            "aim": ("ray.tune.logger.aim", "AimLoggerCallback"),
            "csv": ("ray.tune.logger", "CSVLoggerCallback"),
            "json": ("ray.tune.logger", "JsonLoggerCallback"),
            "tensorboard": ("ray.tune.logger", "TBXLoggerCallback")}


@dataclass(frozen=True)
class BudgetConfig:
    trials: int | None = field(default=20, metadata=_GE0)   # children to train (the seed is not counted)
    # training multiply-adds of all trials together (forward + backward, the seed's included); no new
    # trial once they are spent ("3e12" accepted)
    flops: float | None = field(default=None, metadata=rule(gt=0, parse=_number))
    # seconds ("30m", "2h" accepted); no new trial after it
    wall_time: float | None = field(default=None, metadata=rule(gt=0, parse=duration))

    def _validate(self, where: str) -> None:
        if self.trials is None and self.wall_time is None and self.flops is None:
            raise ConfigError("config 'budget': set budget.trials, budget.flops and/or budget.wall_time, else the "
                              "search never ends")


@dataclass(frozen=True)
class DistillConfig:
    """Distillation from the parent during a child's fine-tune (search/trial/distill.py): the loss is
    (1-weight)·CE + weight·T²·KL(parent/T || child/T). auto: only children of approximate (shrinking) morphs."""

    enabled: Literal["auto", True, False] = "auto"
    temperature: float = field(default=4.0, metadata=_GT0)
    weight: float = field(default=0.5, metadata=rule(ge=0, le=1, fix="; 0 is plain cross-entropy, 1 pure distillation"))


@dataclass(frozen=True)
class FinetuneConfig:
    """Brief low-LR fine-tuning of every child (Net2Net: about 1/10 of the parent's initial LR)."""

    epochs: int = field(default=3, metadata=_GE0)
    lr: float | None = field(default=None, metadata=_GT0)   # None: seed.lr * lr_factor
    lr_factor: float = field(default=0.1, metadata=_GT0)
    momentum: float = field(default=0.9, metadata=_GE0)
    weight_decay: float = field(default=1e-4, metadata=_GE0)
    optimizer: Optimizer = "sgd"        # sgd | adamw (transformers fine-tune better with AdamW)
    schedule: Schedule = "cosine"
    restart_epochs: int | None = field(default=None, metadata=_GE1)
    restart_mult: int = field(default=1, metadata=_GE1)
    batch_size: int | None = field(default=None, metadata=_GE1)
    distill: DistillConfig = field(default_factory=DistillConfig)
    # torch.compile of each trial's network (the seed's too): auto compiles on a GPU when the trial's planned
    # steps repay the compile time (search/trial/accel.py, COMPILE_MIN_STEPS), never on the CPU
    compile: Literal["auto", True, False] = "auto"


@dataclass(frozen=True)
class ResourcesConfig:
    cpus_per_trial: int = field(default=1, metadata=_GE1)
    gpus_per_trial: float | None = field(default=None, metadata=_GE0)  # None: 1 when the cluster has GPUs, else 0
    max_concurrent: int | None = field(default=None, metadata=_GE1)    # None: as many as the CPUs allow
    amp: bool = True                     # mixed precision when on a GPU
    # auto: bf16 autocast on a GPU that has it, else fp16 with a gradient scaler (fp32 with amp: false);
    # fp32 on the CPU. bf16 also runs on the CPU; fp16 needs a GPU (search/trial/accel.py)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", True, False] = "auto"   # auto: on for images on a GPU, off on the CPU

    def _validate(self, where: str) -> None:
        if self.precision == "fp16" and self.gpus_per_trial == 0:
            raise ConfigError("config 'resources.precision': fp16 needs a GPU, but resources.gpus_per_trial is 0 "
                              "(trials train on the CPU); use bf16, fp32 or auto")


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None          # None: start a local Ray; "auto" or host:port joins a cluster
    num_cpus: int | None = field(default=None, metadata=_GE1)   # CPUs of the local Ray instance (None: all)
    asha: bool = False                  # early-stop weak children (ASHA on val_acc per epoch)
    grace_period: int = field(default=1, metadata=_GE1)
    reduction_factor: int = field(default=2, metadata=rule(ge=2))
    # re-runs of a trial whose worker or node died (Tune FailureConfig: a preempted node, the OOM
    # killer); 0: such a trial is recorded FAIL at once. A child that raises is never re-run.
    max_failures: int = field(default=1, metadata=_GE0)
    # experiment trackers: Ray Tune's logger callbacks by name, or import paths of your own
    callbacks: list[str] = field(default_factory=list, metadata=rule(parse=_callbacks))
    callback_options: dict[str, Any] = field(default_factory=dict)   # name -> keyword arguments


@dataclass(frozen=True)
class VerifyConfig:
    tolerance: float = field(default=1e-4, metadata=_GT0)   # max relative output error parent -> child
    dtype: Literal["float32", "float64"] = "float64"


@dataclass(frozen=True)
class LatencyConfig:
    """How every trial measures its network's inference latency on its device (search/trial/latency.py):
    the median of ``repeats`` forward passes of a batch of ``batch_size``, after ``warmup`` passes."""

    batch_size: int = field(default=1, metadata=rule(ge=1, le=4096))
    repeats: int = field(default=20, metadata=rule(ge=1, le=10000))
    warmup: int = field(default=3, metadata=rule(ge=0, le=1000))


@dataclass(frozen=True)
class FinalConfig:
    enabled: bool = True
    epochs: int = field(default=10, metadata=_GE0)          # the best child trained this much longer
    lr: float | None = field(default=None, metadata=_GT0)   # None: the fine-tune LR


@dataclass(frozen=True)
class Config:
    name: str = field(default="run", metadata=rule(parse=_dir_name))
    runs_dir: str = "runs"
    random_seed: int = field(default=0, metadata=rule(ge=0, le=2**32 - 1))   # numpy/torch seeds derive from it
    storage: str | None = None          # Optuna storage URL; None: sqlite:///<run dir>/study.db (see rundir.py)
    seed: SeedConfig = field(default_factory=SeedConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig, metadata=rule(parse=_task_section))
    # your own training loop: an import path 'package.module:Trainer' (search/trial/trainer.py); None: built-in SGD
    trainer: str | None = None
    trainer_options: dict[str, Any] = field(default_factory=dict)   # keyword arguments of the trainer
    actions: dict[str, Any] = field(default_factory=dict)
    strategy: dict[str, Any] = field(default_factory=lambda: {"name": "hill_climb"})
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    final: FinalConfig = field(default_factory=FinalConfig)

    def _validate(self, where: str) -> None:
        # lazy: the strategies import Optuna; workers read configs without it
        from morphnas.search.strategies import check_section, strategy_class  # lazy: see above
        check_section(self.strategy)
        if getattr(strategy_class(self.strategy.get("name")), "lineage", False):
            self._check_lineage_seed()

    def _check_lineage_seed(self) -> None:
        """A lineage strategy (``grow``) continues the seed's SGDR schedule cycle by cycle, so the
        seed must train on ``sgdr`` and stop at the end of a cycle."""
        s, name = self.seed, self.strategy.get("name")
        if s.schedule != "sgdr":
            raise ConfigError(f"config 'seed.schedule': strategy {name!r} continues the seed's warm-restart schedule, "
                              f"so the seed needs schedule: sgdr (got {s.schedule!r}); set seed.schedule: sgdr and "
                              f"seed.restart_epochs")
        first, bound = s.restart_epochs or s.epochs, 0
        while bound < s.epochs:
            bound, first = bound + first, first * s.restart_mult
        if bound != s.epochs:
            raise ConfigError(f"config 'seed.epochs': strategy {name!r} grows at the seed's restarts, so the seed must "
                              f"end at the end of a cycle; with restart_epochs {s.restart_epochs} and restart_mult "
                              f"{s.restart_mult}, {s.epochs} epochs stop inside one (the next cycle ends at epoch {bound})")
        if s.checkpoint:
            raise ConfigError(f"config 'seed.checkpoint': strategy {name!r} continues the seed's training (its "
                              f"optimizer state and schedule), which a checkpoint does not have; train the seed here")

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
MAX_CONFIG_BYTES = 1 << 20      # a config is a few KiB; anything this big is the wrong file


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML file, apply ``key=value`` overrides, return the checked config."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise ConfigError(f"config file {str(p)!r} does not exist (see configs/ for examples)")
    try:
        raw = load_yaml(read_regular(p, MAX_CONFIG_BYTES, "config file").decode("utf-8"))
    except UnsafeInput as e:
        raise ConfigError(f"{e}" if str(e).startswith("config file") else f"{p}: {e}") from None
    except (yaml.YAMLError, ValueError) as e:   # ValueError: UnicodeDecodeError of a binary file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{p}: not valid YAML text ({first}); pass a config like configs/quickstart.yaml") from None
    except OSError as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read ({e.strerror or e})") from None
    if raw is None or raw == {}:
        raise ConfigError(f"{p} is empty; a minimal config names the run, its data and its morphs, e.g. "
                          f"'name: myrun', 'data: {{dataset: digits}}', 'actions: {{ops: {{deepen: {{}}, widen: {{}}}}}}' "
                          f"(see configs/quickstart.yaml)")
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
    """The checked config of a plain mapping (what a YAML file holds)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping of sections, got {raw!r}")
    cfg: Config = build(Config, raw, "", error=ConfigError, label="config key")
    return cfg


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config atomically (``resume --set`` rewrites it in a live run)."""
    atomic_write_text(Path(path), "# the resolved configuration of this run (morphnas resume reads it)\n"
                      + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
