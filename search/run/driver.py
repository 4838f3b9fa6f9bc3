"""The search driver: the run's state machine, the only writer of its state, population, strategy
and leaderboard.

``Driver(cfg, run).run(resume=False)`` does the whole run::

    seed stage (member m0, a Ray Tune trial)  ->  search trials until the budget  ->  final stage

Tune itself is run by :class:`~morphnas.search.tune.session.TuneSession`; it calls the driver back
through the thin adapters of :mod:`morphnas.search.tune.adapters` (``suggest`` when a slot is free,
``on_trial_complete`` when a trial ends). Each trial gets one
:class:`~morphnas.search.state.records.Job`, built by :mod:`morphnas.search.trial.jobs`. Every change
is written to ``run_state.json`` first (see :mod:`morphnas.search.state.runstate` for why this makes
``resume`` exact), then to the Optuna study. Ctrl-C /
SIGTERM stop the running trials; their members stay *pending* and are re-run once by
``morphnas resume``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

from morphnas.morphism.errors import MorphnasError, StorageError
from morphnas.morphism.serialize import load_network
from morphnas.search.config import Config, DataConfig, save_config
from morphnas.search.data.core import load_data
from morphnas.search.run.final import final_stage, summary
from morphnas.search.run.progress import Progress, fmt_duration, snapshot
from morphnas.search.run.resume import check_hand_edits, record_frozen
from morphnas.search.state.population import Member, Population
from morphnas.search.state.records import TrialResult
from morphnas.search.state.rundir import RunDir
from morphnas.search.state.runstate import RunLock, RunState, RunStateError
from morphnas.search.strategies import build_strategy
from morphnas.search.strategies.mutator import SpaceMutator
from morphnas.search.study.domains import to_distribution
from morphnas.search.study.leaderboard import Leaderboard
from morphnas.search.study.publish import BackgroundPublisher, Publisher
from morphnas.search.study.storage import quiet_optuna, study_file
from morphnas.search.trial.hold import WAKE_FILE, bump_wake, hold_config, read_wake
from morphnas.search.trial.jobs import Job, child_job, data_fields, environment, fail_result, rerun, seed_job
from morphnas.search.tune.session import RAY_ERRORS_FILE, TuneSession
from morphnas.spaces.actions import ActionSpace

FINISHED = "FINISHED"
HOLD_MAX_WAIT = 20.0    # seconds a hold waits at most (a node without the run's file system never wakes)
MAX_HOLDS = 1_000_000   # Tune counts holds as samples: room for them (the driver says when it is FINISHED)


class Driver:
    def __init__(self, cfg: Config, run: RunDir | None = None, *, strategy_factory: Callable | None = None,
                 echo: Callable[[str], None] | None = None, verbose: bool = False):
        self.cfg = cfg
        self.verbose = verbose                    # Ray's start-up notices and Tune's warnings shown too
        self.run_dir = run or RunDir.at(cfg.run_dir)
        self.echo = echo or (lambda s: print(s, flush=True))
        self._strategy_factory = strategy_factory
        self.state = RunState()
        self.trials: dict[str, str] = {}          # Tune trial id -> member id (this session)
        self.errored: dict[str, str] = {}         # member id -> error text, for trials Tune saw fail
        self.interrupted = False
        self.fatal: str | None = None
        self._in_tune = False          # inside session.fit: Tune's callbacks call the driver
        self.retries: dict[str, int] = {}   # member id -> re-runs of its trial after its worker died
        self.progress = Progress()
        self._gpus = 0.0                          # GPUs per trial of this session (set by the session)
        self._session_start = time.time()
        self._elapsed_base: float | None = None
        self._epochs: dict[str, int] = {}
        self._space_set = False
        self.publisher: Any = None                # BackgroundPublisher, once built
        self._concurrent = 1                      # trials at a time (set by the session)
        self.holds: dict[str, int] = {}           # Tune trial id -> hold number (this session; not members)
        self._wake = self.run_dir.root / WAKE_FILE
        self._wake_value = 0

    # ------------------------------------------------------------------------- set-up
    @property
    def root(self) -> Path:
        return self.run_dir.root

    @property
    def population(self) -> Population:
        """Every finished member: the run state's own population (one object, saved with the state)."""
        return self.state.population

    def run(self, resume: bool = False) -> int:
        if resume:
            check_hand_edits(self.run_dir, self.cfg)   # before the lock file is touched: a refusal changes nothing
        with RunLock(self.root):
            try:
                return self._run(resume)
            finally:
                if self.publisher is not None:
                    self.publisher.close()     # every member in the study, the plots redrawn

    def _run(self, resume: bool) -> int:
        if resume:
            self.state = RunState.load(self.root)
        else:
            if RunState.exists(self.root):
                raise RunStateError(f"run {self.root} already exists; continue it with 'morphnas resume {self.root}' "
                                    f"or pick another name (--set name=...)")
            self.run_dir.make()
            save_config(self.cfg, self.run_dir.config_path)
            record_frozen(self.run_dir, self.cfg)
            self.state.queue.append(seed_job(self.cfg))
            self.state.next_index = 1
            self._save()
        self.state.sessions += 1
        self._elapsed_base, self._session_start = self.state.elapsed, time.time()
        self._build()
        self._reconcile()
        if self.state.status == "finished" and self._budget_raised():
            # `resume --set budget.trials=...` (or a longer wall_time) on a finished run: search on,
            # then run the final stage again (it only reads members and rewrites best/).
            self.echo(f"resume: run {self.root.name} had finished; the budget now allows more trials, "
                      f"so the search goes on")
            self.state.status = "search"
            self._save()
        if self.state.status == "finished":
            self.echo(f"run {self.root.name} is already finished: {self._final_summary()}")
            return 0
        if self.state.status == "search":
            self._search()
            if not self.interrupted and not self.fatal:
                self._say_if_no_child()
            if not self.fatal:
                self._check_study()        # deleted after the last write: recreated before the final stage
            if self.fatal:
                raise MorphnasError(self.fatal)
            if self.interrupted:
                self.echo(f"interrupted: {len(self.state.pending)} running trial(s) will be re-run; "
                          f"continue with: morphnas resume {self.root}")
                return 130
            self.state.status = "final"
            self._save()
        if self.state.status == "final":
            self.publisher.flush()
            self._final_stage()
        return 0

    def _build(self) -> None:


        self.space = ActionSpace.from_dict(self.cfg.actions)
        self.mutator = SpaceMutator(self.space, lambda mid: load_network(self.root / self.population.get(mid).path))
        factory = self._strategy_factory or build_strategy
        self.strategy = factory(self.cfg.strategy, self.mutator, self.cfg.random_seed)
        if self.state.strategy is not None:
            self.strategy.load_state_dict(self.state.strategy)
        self._open_study()
        if self.verbose:                          # --verbose: Optuna's log lines too
            quiet_optuna(True)

    def _open_study(self) -> None:
        """The run's leaderboard (created if missing) and the publisher that writes it."""
        self.lb = Leaderboard.for_run(self.run_dir, *study_objectives(self.cfg, self.strategy),
                                      score_sign=self.cfg.task.resolved().metric.sign)
        self.publisher = BackgroundPublisher(Publisher(self.lb), self.echo)
        self._study_path = study_file(self.lb.storage_url)
        self._space_set = False
        self._set_search_space()

    def _check_study(self) -> None:
        """A study file deleted while the run goes on (SQLite keeps writing into the unlinked file, so
        nothing would fail until the run ended with no leaderboard): recreate it from the run state,
        which holds every finished trial, and say so."""
        if self._study_path is None or self._study_path.exists():
            return
        self.publisher.close()
        engine = getattr(self.lb.storage, "engine", None)
        if engine is not None:
            engine.dispose()              # its pooled connection still points at the deleted file
        self._open_study()
        for r in self.state.results:
            self.publisher.submit(r)
        for job in sorted(self.state.pending.values(), key=lambda j: j.born):
            self.publisher.open(job)
        self.echo(f"[search] {self._study_path} was deleted during the run; recreated it from the run state "
                  f"({len(self.state.results)} finished trial(s) recorded again)")

    def _set_search_space(self) -> None:
        """Once the seed exists, give the leaderboard the fixed domains of the search params: the
        mutator's (action parameters) and the strategy's own (e.g. TPE's parent rank)."""
        if "m0" not in self.population or self._space_set:
            return
        try:
            domains = self.mutator.search_domains()
        except MorphnasError:
            return
        domains.update(self.strategy.extra_domains())
        self.lb.search_space.update({k: to_distribution(k, v) for k, v in domains.items()})
        self._space_set = True

    def _reconcile(self) -> None:
        """Make the study match the state, and decide about trials a crash left running."""
        recorded = self.lb.recorded()
        for r in self.state.results:
            if r.member_id not in recorded:
                self._record(r)
        for mid, job in sorted(self.state.pending.items(), key=lambda kv: kv[1].born):
            del self.state.pending[mid]
            if job.attempt >= 2:
                r = fail_result(job, "interrupted twice (driver stopped while it ran, and again on its re-run); "
                                           "not run a third time")
                self._finish(job, r)
                continue
            job = rerun(job)
            self.state.queue.append(job)
            self.echo(f"resume: member {mid} was running when the run stopped; it is re-run once")
        self._save()

    # ------------------------------------------------------------------------- Tune callbacks
    def _elapsed(self) -> float:
        assert self._elapsed_base is not None
        return self._elapsed_base + (time.time() - self._session_start)

    def _save(self) -> bool:
        """Write the state; the search's wall time goes with it, so a kill -9 loses none of it.

        Inside Tune's callbacks a write that fails (a full disk, a read-only mount) stops the run
        instead of raising there: the state on disk is the last good one, so what was running stays
        pending and ``resume`` re-runs it. Returns whether the state was written."""
        if self.state.status == "search" and self._elapsed_base is not None:
            self.state.elapsed = self._elapsed()
        try:
            self.state.save(self.root)
            return True
        except StorageError as e:
            if not self._in_tune:
                raise
            self._stop(str(e))
            return False

    def _stop(self, why: str) -> None:
        """End the run with one line (``why``): running trials stop and stay pending for ``resume``."""
        if self.fatal is None:
            self.fatal = why
        self.interrupted = True
        self._bump()

    def _budget_raised(self) -> bool:
        """A finished run whose budget has room again: more trials than it started or, with only a
        wall-time budget, more time than it spent. (A run that ended because its strategy had nothing
        more to propose looks the same: it searches again and ends the same way.)"""
        b = self.cfg.budget
        more_trials = b.trials is not None and self.state.started < b.trials
        more_time = b.trials is None and b.wall_time is not None and self._elapsed() < b.wall_time
        return (more_trials or more_time) and self._budget_left()

    def _say_if_no_child(self) -> None:
        """A budget spent before any child (the seed took it all) is said plainly, with the fix."""
        if any(r.member_id != "m0" for r in self.state.results) or self.cfg.budget.trials == 0:
            return
        b, root = self.cfg.budget, self.root
        seed = self.state.result_of("m0")
        took = f" (the seed took {fmt_duration(seed.wall_time)})" if seed is not None and seed.wall_time else ""
        if b.wall_time is not None and self._elapsed() >= b.wall_time:
            self.echo(f"[search] the wall-time budget ({fmt_duration(b.wall_time)}) was spent before any child was "
                      f"trained{took}; give the search more time: morphnas resume {root} --set "
                      f"budget.wall_time={int(max(2 * b.wall_time, self._elapsed() + 300))}")
        elif b.flops is not None and self.flops_spent() >= b.flops:
            self.echo(f"[search] the FLOPs budget ({b.flops:.3g}) was spent before any child was trained{took}; "
                      f"raise it: morphnas resume {root} --set budget.flops={2 * b.flops:.3g}")

    def _budget_left(self) -> bool:
        b = self.cfg.budget
        if b.trials is not None and self.state.started >= b.trials:
            return False
        if b.wall_time is not None and self._elapsed() >= b.wall_time:
            return False
        if b.flops is not None and self.flops_spent() >= b.flops:
            return False
        return True

    def flops_spent(self) -> int:
        """Training multiply-adds of every finished trial so far (what ``budget.flops`` counts)."""
        return sum(r.train_flops for r in self.state.results)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        out = self._suggest(trial_id)
        if out == FINISHED and self.holds:
            self._bump()                   # nothing more will start: end the holds now
        return out

    def _suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.interrupted or self.fatal:
            return FINISHED
        if self.state.queue:
            return self._launch(trial_id, self.state.queue.pop(0))
        if "m0" not in self.population:
            return self._hold(trial_id) if self.state.pending else FINISHED   # wait for the seed
        if not self._budget_left():
            return FINISHED
        prop = self.strategy.propose(self.population)
        if prop is None:
            if not self.state.pending:
                why = getattr(self.mutator, "last_refusal", None)
                self.echo("the strategy has nothing more to propose (no valid morph of its parents"
                          + (f"; {why}" if why else "") + "); stopping")
                return FINISHED
            return self._hold(trial_id)
        job = child_job(self.cfg, self.root, self.population, prop, self.state.next_index)
        self.state.next_index += 1
        self.state.started += 1
        return self._launch(trial_id, job)

    def _launch(self, trial_id: str, job: Job) -> dict[str, Any]:
        job = job.replace(**environment(self.cfg, self.root, self._gpus, self.space.constraints.max_latency_ms))
        self.state.pending[job.member_id] = job
        self.state.strategy = self.strategy.state_dict()
        if not self._save():               # write-ahead: before the trial exists
            return FINISHED
        self._check_study()
        self.publisher.open(job)           # its Optuna trial number is fixed now, in launch order (queued)
        self.trials[trial_id] = job.member_id
        if self.holds:
            # New work exists: end the holds so their slots ask for more. Only now, after this job
            # took the actor that just freed up: a hold ending together with a real trial would
            # leave Tune two idle actors, and it keeps only one of them (the cold-actor problem again).
            self._bump()
        self._show()
        return {"job": job.to_json()}

    def _hold(self, trial_id: str) -> dict[str, Any] | None:
        """Tune has a free slot but the strategy waits (the seed trains; a generation is not complete):
        keep the slot's worker process alive with a hold (see :mod:`morphnas.search.trial.hold`) rather than
        answering ``None``, which makes Tune run every trial in one process, one after another.
        A hold is no member: it is in neither the run state nor the study, and takes no randomness.
        Only a Tune session running trials side by side gets holds (others get ``None``: wait)."""
        if self._concurrent <= 1:
            return None
        self.holds[trial_id] = len(self.holds)
        return hold_config(self._wake, self._wake_value, HOLD_MAX_WAIT, self.cfg.resources.cpus_per_trial,
                           data_fields(self.cfg), self.cfg.random_seed, self.cfg.task.type)

    def _bump(self) -> None:
        """End the holds: a job was launched (new work: their slots should ask for more), nothing more
        will start, the run was interrupted, or Tune is done."""
        self._wake_value = bump_wake(self._wake)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        mid = self.trials.get(trial_id)
        if mid is not None:
            self._epochs[mid] = int(result.get("epoch", 0))
            self._show()

    def on_trial_complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        if self.holds.pop(trial_id, None) is not None:
            return          # a hold ended: its slot is free, nothing to record
        mid = self.trials.get(trial_id)
        if mid is None or mid not in self.state.pending or self.interrupted:
            return          # interrupted trials stay pending: resume re-runs them
        if error:
            self.errored.setdefault(mid, "the trial's worker raised or died")
            return          # finished by on_trial_error (which has the reason) or after fit
        job = self._pending(mid)
        raw = (result or {}).get("trial_result")
        if raw is None:
            r = fail_result(job, "the trial ended without reporting a result")
        else:
            r = TrialResult.from_json(json.loads(raw))
            if r.state == "FAIL" and r.extra.get("fault") == "disk_full":
                # Not the child's fault: stop the run with the worker's line; the member stays pending.
                self._stop(r.fail_reason.split(": ", 1)[-1])
                return
            if not (result or {}).get("final", False):       # stopped by the scheduler (ASHA)
                r = dataclasses.replace(r, extra={**r.extra, "early_stopped": True})
        self._finish(job, r)

    def on_trial_error(self, trial_id: str, message: str) -> None:
        mid = self.trials.get(trial_id)
        if mid is None or mid not in self.state.pending or self.interrupted:
            return
        self.errored.pop(mid, None)
        job = self._pending(mid)
        self._finish(job, fail_result(job, f"worker error: {message}"))

    def on_trial_retry(self, trial_id: str, message: str, attempt: int) -> None:
        """Tune re-runs a trial whose worker died: same job, from its start; one line says so."""
        mid = self.trials.get(trial_id)
        if mid is None or mid not in self.state.pending or self.interrupted:
            return            # a hold (no member) or a stopping run
        self._epochs[mid] = 0
        self.retries[mid] = self.retries.get(mid, 0) + 1
        why = "" if message == "the worker died" else f" ({message[:160]})"
        self.echo(f"[search] member {mid}: its worker process died{why}; re-running it "
                  f"(retry {self.retries[mid]} of {self.cfg.ray.max_failures}, ray.max_failures; Ray's text is in "
                  f"{RAY_ERRORS_FILE})")

    def interrupt(self, signal_name: str) -> None:
        """Ctrl-C / SIGTERM: stop the running trials (they stay pending); a second one stops at once."""
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        self._bump()
        self.echo(f"[search] {signal_name}: stopping the running trials "
                  f"(Ctrl-C again to stop at once); the run can be resumed")

    def _pending(self, mid: str) -> Job:
        return self.state.pending[mid]

    # ------------------------------------------------------------------------- results
    def _finish(self, job: Job, r: TrialResult) -> None:
        mid = r.member_id
        if self.retries.get(mid):
            r = dataclasses.replace(r, extra={**r.extra, "worker_retries": self.retries[mid]})
        self.state.pending.pop(mid, None)
        if r.state == "COMPLETE":
            r = dataclasses.replace(r, values=tuple(float(v) for v in self.strategy.objective_values(r)))
            self.population.add(Member.from_result(r, born=job.born))
        elif mid == "m0":
            self.fatal = f"the seed stage failed, so there is nothing to morph: {r.fail_reason}"
        self.strategy.observe(r, self.population)
        self.state.strategy = self.strategy.state_dict()
        self.state.results.append(r)
        if not self._save():                # write-ahead: before the study
            return
        self._record(r)
        self._set_search_space()
        self._show(force=True)
        if r.state == "FAIL":
            self.echo(f"[search] member {mid} FAILED: {r.fail_reason}")

    def _record(self, r: TrialResult) -> None:
        """Hand the member to the background publisher (drawing + study write off the critical path)."""
        if self._study_path is not None and not self._study_path.exists():
            self._check_study()           # records every result of the state, this one included
            return
        self.publisher.submit(r)

    def _show(self, force: bool = False) -> None:
        elapsed = self._elapsed() if self._elapsed_base is not None else 0.0
        seed_epoch = (self._epochs.get("m0", 0), self.cfg.seed.epochs) if "m0" in self.state.pending else None
        self.progress.show(snapshot(self.state.results, self.population, len(self.state.pending),
                                    self.cfg.budget.trials, elapsed, self.cfg.budget.wall_time,
                                    self._concurrent, self.cfg.task.resolved().metric, seed_epoch), force)

    # ------------------------------------------------------------------------- the search
    def _remaining(self) -> int:
        """Trials this session may still start (queued re-runs, the seed, the children's budget)."""
        remaining = len(self.state.queue) + (self.cfg.budget.trials - self.state.started
                                             if self.cfg.budget.trials is not None else 10**6)
        seed_known = "m0" in self.population or any(j.kind == "seed" for j in self.state.queue)
        return remaining + (0 if seed_known else 1)

    def _search(self) -> None:

        # Load the data once here: a failed download or a bad image folder is one clear error
        # before Ray starts, and trials never download concurrently.
        load_data(DataConfig(**data_fields(self.cfg)), seed=self.cfg.random_seed, task=self.cfg.task.type)
        with TuneSession(self.cfg, self.run_dir, verbose=self.verbose) as session:
            try:
                self._gpus = session.gpus
                self._concurrent = session.concurrent
                remaining = self._remaining()
                if remaining <= 0 and not self.state.pending:
                    return
                self.echo(f"[search] run {self.root.name}: strategy {self.strategy.name}, budget "
                          f"{self.cfg.budget.trials} trial(s), {session.concurrent} at a time on Ray Tune")
                self._wake_value = read_wake(self._wake)
                self._in_tune = True
                session.fit(self, num_samples=remaining + MAX_HOLDS, name=f"session{self.state.sessions}")
                self._after_fit()
            finally:
                self._bump()
                self._save()
                self._in_tune = False

    def _after_fit(self) -> None:
        if self.interrupted:
            return
        for mid in list(self.state.pending):
            why = self.errored.pop(mid, None) or "the trial ended without reporting a result"
            job = self._pending(mid)
            self._finish(job, fail_result(job, why))

    # ------------------------------------------------------------------------- final stage
    def _final_stage(self) -> None:
        self.state.final = final_stage(self.cfg, self.run_dir, self.population, self.echo)
        self.state.status = "finished"
        self._save()
        self.echo(f"[final] {self._final_summary()}")
        self.echo(f"[final] exported to {self.run_dir.best}")

    def _final_summary(self) -> str:
        return summary(self.state.final)


def study_objectives(cfg: Config, strategy: Any) -> tuple[list[str], list[str]]:
    """The study's directions and objective names: the strategy's, with its score (``val_acc``)
    shown as the task's metric in its own units and direction (``val_rmse``, minimised)."""
    metric = cfg.task.resolved().metric
    names, directions = list(strategy.objectives), list(strategy.directions)
    if names and names[0] == "val_acc":
        names[0], directions[0] = metric.name, metric.direction
    return directions, names

