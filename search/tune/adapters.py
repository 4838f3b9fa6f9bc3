"""The thin Tune adapters of the driver: searcher, callbacks, stopper and trial names.

:class:`MorphSearcher`, :class:`ErrorCallback` and :class:`InterruptStopper` hold no search logic:
they forward Tune's callbacks to the driver (:mod:`morphnas.search.run.driver`), which owns all
state. They take the driver as a :class:`TuneDriver` (the callbacks only), so this module never
imports the driver.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from ray.tune import Callback
from ray.tune.progress_reporter import TrialProgressCallback
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from morphnas.search.trial.hold import HOLD
from morphnas.search.trial.worker import METRIC

FINISHED = "FINISHED"   # what the driver's suggest returns when nothing more will start
class TuneDriver(Protocol):
    """The driver as the Tune adapters see it: the callbacks and the interrupt flag."""

    interrupted: bool

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None: ...

    def on_trial_result(self, trial_id: str, result: dict) -> None: ...

    def on_trial_complete(self, trial_id: str, result: dict | None, error: bool) -> None: ...

    def on_trial_error(self, trial_id: str, message: str) -> None: ...

    def on_trial_retry(self, trial_id: str, message: str, attempt: int) -> None: ...


class MorphSearcher(Searcher):
    """Thin adapter: ``suggest`` -> ``driver.suggest``; results -> the driver. No search logic here."""

    def __init__(self, driver: TuneDriver):
        super().__init__(metric=METRIC, mode="max")
        self._driver = driver

    def suggest(self, trial_id: str):
        out = self._driver.suggest(trial_id)
        return Searcher.FINISHED if out == FINISHED else out

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._driver.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._driver.on_trial_complete(trial_id, result, error)

    # Tune pickles its config (with this searcher) and checkpoints searchers; the run state lives
    # in the driver's own write-ahead file, so nothing of the driver is pickled.
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_driver"}

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({"note": "the state lives in morphnas' run_state.json"}))

    def restore(self, checkpoint_path: str) -> None:
        pass


class ErrorCallback(Callback):
    """Hands the error of a trial whose worker raised or died to the driver."""

    def __init__(self, driver: TuneDriver):
        self._driver = driver

    def on_trial_error(self, iteration, trials, trial, **info):
        self._driver.on_trial_error(trial.trial_id, _last_line(trial))

    def on_trial_recover(self, iteration, trials, trial, **info):
        """Tune re-runs a trial whose worker died (``ray.max_failures``): the driver says so in one line."""
        self._driver.on_trial_retry(trial.trial_id, _last_line(trial), int(trial.run_metadata.num_failures))

    def __getstate__(self):
        return {}


def _last_line(trial) -> str:
    """The last line of a failed trial's error (Ray's text of a dead actor runs to many lines)."""
    err = None
    try:
        err = trial.get_error()
    except Exception:  # the error text is best effort; the trial is failed (or retried) either way
        pass
    text = str(err).strip() if err is not None else ""
    return text.splitlines()[-1] if text else "the worker died"


class InterruptStopper(Stopper):
    """Stops every trial once the driver was interrupted (Ctrl-C / SIGTERM)."""

    def __init__(self, driver: TuneDriver):
        self._driver = driver

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return bool(self._driver.interrupted)

    def __getstate__(self):
        return {}


class QuietProgress(TrialProgressCallback):
    """Tune's per-trial printer, silenced: with ``verbose=0`` it still prints "Trial ... completed.
    Last result: " for every trial without results (each hold). The driver prints its own progress."""

    def _print(self, msg: str) -> None:
        pass


def quiet_progress() -> Callback:
    return QuietProgress(metric=METRIC)


def trial_dirname(trial) -> str:
    """``m3_<trial id>`` (``hold_<trial id>`` for a hold): short, and says which member a Tune trial
    directory belongs to (the default name flattens the whole job config into the path)."""
    if HOLD in trial.config:
        return f"hold_{trial.trial_id}"
    return f"{trial.config.get('job', {}).get('member_id', 'trial')}_{trial.trial_id}"
