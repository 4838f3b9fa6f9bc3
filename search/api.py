"""The Python API: a search from a script or a notebook, with your own data and training loop.

>>> import morphnas
>>> result = morphnas.run_search("configs/quickstart.yaml", overrides=["budget.trials=2"])  # doctest: +SKIP
>>> result.best.member_id, result.metric, result.value                                     # doctest: +SKIP
('m2', 'val_acc', 0.953)

:func:`run_search` takes a config (a YAML path, a mapping of the same sections, or a
:class:`~morphnas.search.config.Config`) and, optionally, ``data=`` (a factory returning
:class:`~morphnas.search.data.user.Datasets`, a ``Datasets`` itself, or a torch ``Dataset`` to
train on) and ``trainer=`` (:mod:`morphnas.search.trial.trainer`: a class, factory or object
with ``train_epoch``). It checks everything first, as ``morphnas search`` does (no run directory
is made for a bad config, factory, trainer or op), runs the search on Ray Tune and returns a
:class:`SearchResult`. :func:`resume` continues a run stopped by Ctrl-C, kill -9 or a crash, as
``morphnas resume`` does; :func:`open_run` reads one.

Objects that can be imported by name (a module-level function or class of an installed
package) are recorded in the run's config by import path, so the CLI can resume the run too.
Objects only a script has (defined in ``__main__``, or instances) are recorded as
``python:<name>`` and handed to the workers with the trials; such a run resumes from Python with
the same objects passed again: ``morphnas.resume(run, data=make_data, trainer=MyTrainer)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml

from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.serialize import load_network
from morphnas.search.config import Config, ConfigError, apply_overrides, config_from_dict, load_config
from morphnas.search.data.user import Datasets, as_dataset
from morphnas.search.plugins import PYTHON_PREFIX, path_of, provide
from morphnas.search.run.driver import Driver
from morphnas.search.run.preflight import preflight
from morphnas.search.run.resume import apply_resume_overrides
from morphnas.search.state.rundir import RunDir
from morphnas.search.state.rundir import open_run as open_run_dir
from morphnas.search.state.runstate import RunState
from morphnas.search.study.leaderboard import Leaderboard
from morphnas.search.study.rows import Row

__all__ = ["SearchResult", "open_run", "resume", "run_search"]


@dataclass
class SearchResult:
    """A run as Python sees it: where it is, how it ended, its leaderboard and its best member."""

    run_dir: Path
    status: str                    # finished | interrupted | search | final
    metric: str                    # the leaderboard's metric (val_acc, val_rmse, ...)
    direction: str                 # maximize | minimize
    rows: list[Row]                # every finished trial, ranked (the leaderboard)
    final: dict[str, Any] | None   # the final stage's report (best/report.json), once finished
    exit_code: int = 0

    @property
    def best(self) -> Row | None:
        """The best finished member of the search (by the metric)."""
        return next((r for r in self.rows if r.rank is not None), None)

    @property
    def value(self) -> float | None:
        """The best member's metric value (in the metric's own units)."""
        b = self.best
        return float(b.values[0]) if b is not None and b.values else None

    def load_best(self) -> torch.nn.Module:
        """The best network as a plain ``nn.Module`` (eval mode): the final stage's ``best/`` when
        the run finished, else the best member searched so far."""
        best = self.run_dir / "best"
        if (best / "network.json").is_file():
            net = load_network(best)
        elif self.best is not None:
            net = load_network(self.run_dir / self.best.member_path)
        else:
            raise MorphnasError(f"run {self.run_dir} has no finished member yet")
        return compile_network(net).eval()


def open_run(run: str | Path) -> SearchResult:
    """The :class:`SearchResult` of an existing run directory (or a name under ``runs/``)."""
    return _result(open_run_dir(str(run)))


def _result(run_dir: RunDir, exit_code: int = 0) -> SearchResult:
    state = RunState.load(run_dir.root)
    status = "interrupted" if exit_code == 130 else state.status
    try:
        lb = Leaderboard.open(run_dir)
    except MorphnasError:          # stopped before its study was written: no trial to show yet
        metric = load_run_config(run_dir).task.resolved().metric
        return SearchResult(run_dir.root, status, metric.name, metric.direction, [], state.final, exit_code)
    names = lb.study.metric_names or ["val_acc"]
    return SearchResult(run_dir.root, status, names[0], lb.directions[0], lb.rows(), state.final, exit_code)


def _raw(config: str | Path | Mapping[str, Any] | Config, overrides: Sequence[str]) -> dict[str, Any]:
    if isinstance(config, Config):
        raw: dict[str, Any] = config.to_dict()
    elif isinstance(config, Mapping):
        raw = yaml.safe_load(yaml.safe_dump(dict(config)))    # a plain, independent copy
    elif isinstance(config, (str, Path)):
        return load_config(config, list(overrides)).to_dict()
    else:
        raise ConfigError(f"config must be a YAML path, a mapping or a morphnas Config, got {type(config).__name__}")
    return apply_overrides(raw, list(overrides))


def _hand_over(obj: Any, key: str) -> str:
    """How the config names ``obj``: its import path, else ``python:<name>`` (handed to the workers)."""
    if isinstance(obj, str):
        return obj
    name = path_of(obj)
    if name.startswith(PYTHON_PREFIX):
        provide(name, obj)
    return name


def _data_value(data: Any) -> Any:
    """What ``data=`` stands for: a factory as it is; a ``Datasets`` as it is; a ``Dataset`` as the
    training set of a ``Datasets`` (validation and test then carved out of it)."""
    if isinstance(data, Datasets) or callable(data) and not as_dataset(data):
        return data
    if as_dataset(data):
        return Datasets(train=data)
    raise ConfigError(f"data= must be a factory, a morphnas.Datasets or a torch Dataset, got {type(data).__name__}")


def _data_name(data: Any) -> str:
    value = _data_value(data)
    if isinstance(value, Datasets):      # an object, never importable by name: handed over
        name = f"{PYTHON_PREFIX}{type(data).__module__}.{type(data).__qualname__}"
        provide(name, value)
        return name
    return _hand_over(value, "data.dataset")


def run_search(config: str | Path | Mapping[str, Any] | Config, *, data: Any = None, trainer: Any = None,
               overrides: Sequence[str] = (), verbose: bool = False) -> SearchResult:
    """Check the config (with ``data`` and ``trainer`` in place), run the search, return its result.

    Raises a :class:`~morphnas.morphism.errors.MorphnasError` (one line naming the key, the value and
    the fix) for anything wrong before the run starts; no run directory exists then. An interrupted
    search (Ctrl-C) returns with ``status == "interrupted"``: continue it with :func:`resume`.
    """
    raw = _raw(config, overrides)
    if data is not None:
        raw.setdefault("data", {})["dataset"] = _data_name(data)
    if trainer is not None:
        raw["trainer"] = _hand_over(trainer, "trainer")
    cfg = config_from_dict(raw)
    preflight(cfg)
    rc = Driver(cfg, verbose=verbose).run(resume=False)
    return _result(RunDir.at(cfg.run_dir.resolve()), rc)


def resume(run: str | Path, *, data: Any = None, trainer: Any = None, overrides: Sequence[str] = (),
           verbose: bool = False) -> SearchResult:
    """Continue a stopped run; nothing finished is lost or repeated (``morphnas resume``). A run
    started with objects only Python has (``python:<name>`` in its config) needs them passed again."""
    run_dir = open_run_dir(str(run))
    RunState.load(run_dir.root)           # refuses a corrupt or tampered state before anything changes
    if overrides:
        apply_resume_overrides(run_dir, list(overrides))
    cfg = load_run_config(run_dir)
    for key, obj, given in (("data.dataset", data, cfg.data.dataset), ("trainer", trainer, cfg.trainer)):
        if obj is not None:
            if not (isinstance(given, str) and given.startswith(PYTHON_PREFIX)):
                raise ConfigError(f"resume: {key} of run {run_dir.root.name} is {given!r}, recorded in its config; "
                                  f"pass {key.split('.')[0]}= only for a run started with a Python object")
            provide(given, _data_value(obj) if key == "data.dataset" else obj)
        elif isinstance(given, str) and given.startswith(PYTHON_PREFIX):
            raise ConfigError(f"resume: run {run_dir.root.name} was started from Python with its own {key} "
                              f"({given}); pass it again: morphnas.resume({str(run)!r}, "
                              f"{'data' if key == 'data.dataset' else 'trainer'}=...)")
    rc = Driver(cfg, run_dir, verbose=verbose).run(resume=True)
    return _result(run_dir, rc)


def load_run_config(run_dir: RunDir) -> Config:
    """The run's saved config, placed where the run directory is now (it may have moved)."""
    try:
        cfg = load_config(run_dir.config_path)
    except ConfigError as e:
        raise ConfigError(f"{e} (the run's config.yaml; fix it with morphnas resume {run_dir.root} --set ...)") from None
    if Path(cfg.runs_dir).resolve() / cfg.name != run_dir.root:
        cfg = cfg.replace(runs_dir=str(run_dir.root.parent), name=run_dir.root.name)
    return cfg
