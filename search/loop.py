"""The search driver: the only writer of a run's state, population, strategy and leaderboard.

``Driver(cfg, run).run(resume=False)`` does the whole run::

    seed stage (member m0, a Ray Tune trial)  ->  search trials until the budget  ->  final stage

Ray Tune executes the trials; the driver is called back through :mod:`.runner`'s thin adapters
(``suggest`` when a slot is free, ``on_trial_complete`` when a trial ends). Every change is written
to ``run_state.json`` first (see :mod:`.runstate` for why this makes ``resume`` exact), then to the
Optuna study. Ctrl-C / SIGTERM stop the running trials; their members stay *pending* and are
re-run once by ``morphnas resume``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

from morphnas.morphism.errors import MorphnasError

from .config import Config, save_config
from .population import Member, Population, member_id
from .progress import Progress, Snapshot
from .records import Proposal, TrialResult
from .rundir import RunDir
from .runstate import RunLock, RunState, RunStateError

FINISHED = "FINISHED"


class Driver:
    def __init__(self, cfg: Config, run: RunDir | None = None, *, strategy_factory: Callable | None = None,
                 echo: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.run_dir = run or RunDir.at(cfg.run_dir)
        self.echo = echo or (lambda s: print(s, flush=True))
        self._strategy_factory = strategy_factory
        self.state = RunState()
        self.population = Population()
        self.trials: dict[str, str] = {}          # Tune trial id -> member id (this session)
        self.errored: dict[str, str] = {}         # member id -> error text, for trials Tune saw fail
        self.interrupted = False
        self.fatal: str | None = None
        self.progress = Progress()
        self._session_start = time.time()
        self._elapsed_base: float | None = None
        self._epochs: dict[str, int] = {}

    # ------------------------------------------------------------------------- set-up
    @property
    def root(self) -> Path:
        return self.run_dir.root

    def run(self, resume: bool = False) -> int:
        with RunLock(self.root):
            return self._run(resume)

    def _run(self, resume: bool) -> int:
        if resume:
            self.state = RunState.load(self.root)
        else:
            if RunState.exists(self.root):
                raise RunStateError(f"run {self.root} already exists; continue it with 'morphnas resume {self.root}' "
                                    f"or pick another name (--set name=...)")
            self.run_dir.make()
            save_config(self.cfg, self.run_dir.config_path)
            self.state.queue.append(self._seed_job())
            self.state.next_index = 1
            self._save()
        self.state.sessions += 1
        self._elapsed_base, self._session_start = self.state.elapsed, time.time()
        self.population = Population.from_json(self.state.population)
        self._build()
        self._reconcile()
        if self.state.status == "finished":
            self.echo(f"run {self.root.name} is already finished: {self._final_summary()}")
            return 0
        if self.state.status == "search":
            self._search()
            if self.interrupted:
                self.echo(f"interrupted: {len(self.state.pending)} running trial(s) will be re-run; "
                          f"continue with: morphnas resume {self.root}")
                return 130
            if self.fatal:
                raise MorphnasError(self.fatal)
            self.state.status = "final"
            self._save()
        if self.state.status == "final":
            self._final_stage()
        return 0

    def _build(self) -> None:
        from morphnas.morphism.serialize import load_network
        from morphnas.spaces.actions import ActionSpace

        from .leaderboard import Leaderboard
        from .mutator import SpaceMutator
        from .strategies import build_strategy

        self.space = ActionSpace.from_dict(self.cfg.actions)
        self.mutator = SpaceMutator(self.space, lambda mid: load_network(self.root / self.population.get(mid).path))
        factory = self._strategy_factory or build_strategy
        self.strategy = factory(self.cfg.strategy, self.mutator, self.cfg.random_seed)
        if self.state.strategy is not None:
            self.strategy.load_state_dict(self.state.strategy)
        self.lb = Leaderboard.for_run(self.run_dir, self.strategy.directions, self.strategy.objectives)
        self._set_search_space()

    def _set_search_space(self) -> None:
        """Once the seed exists, give the leaderboard the fixed domains of the search params."""
        if "m0" not in self.population or getattr(self, "_space_set", False):
            return
        from .leaderboard import to_distribution
        try:
            domains = self.mutator.search_domains()
        except MorphnasError:
            return
        if self.cfg.strategy.get("name") == "tpe":
            domains["parent_rank"] = {"low": 0, "high": max(0, int(getattr(self.strategy.p, "top_k", 1)) - 1)}
        self.lb.search_space.update({k: to_distribution(k, v) for k, v in domains.items()})
        self._space_set = True

    def _reconcile(self) -> None:
        """Make the study match the state, and decide about trials a crash left running."""
        recorded = self.lb.recorded()
        for d in self.state.results:
            r = TrialResult.from_json(d)
            if r.member_id not in recorded:
                self._record(r)
        for mid, job in sorted(self.state.pending.items(), key=lambda kv: kv[1]["born"]):
            del self.state.pending[mid]
            if job.get("attempt", 1) >= 2:
                r = self._fail_result(job, "interrupted twice (driver stopped while it ran, and again on its re-run); "
                                           "not run a third time")
                self._finish(job, r)
                continue
            job = dict(job, attempt=job.get("attempt", 1) + 1,
                       extra={**job.get("extra", {}), "rerun": True,
                              "rerun_reason": "its first attempt was running when the driver stopped"})
            self.state.queue.append(job)
            self.echo(f"resume: member {mid} was running when the run stopped; it is re-run once")
        self._save()

    # ------------------------------------------------------------------------- jobs
    def _common(self) -> dict[str, Any]:
        c = self.cfg
        gpus = self._gpus
        # Absolute paths: Ray runs each trial in its own working directory (and maybe on another node
        # of a cluster sharing the file system).
        data = {**dataclasses.asdict(c.data), "root": str(Path(c.data.root).expanduser().resolve())}
        return {"run_dir": str(self.root), "data": data, "data_seed": c.random_seed,
                "tolerance": c.verify.tolerance, "verify_dtype": c.verify.dtype,
                "threads": c.resources.cpus_per_trial, "gpus": gpus, "amp": c.resources.amp}

    def _seed_job(self) -> dict[str, Any]:
        s = self.cfg.seed
        return {"kind": "seed", "member_id": member_id(0), "parent_id": None, "depth": 0, "born": 0, "attempt": 1,
                "member_path": f"members/{member_id(0)}", "net_seed": self.cfg.random_seed,
                "seed": {"network": _abs_if_path(s.network),
                         "checkpoint": str(Path(s.checkpoint).expanduser().resolve()) if s.checkpoint else None},
                "train": {"epochs": s.epochs, "lr": s.lr, "momentum": s.momentum, "weight_decay": s.weight_decay,
                          "schedule": "cosine", "batch_size": s.batch_size or self.cfg.data.batch_size},
                "train_seed": self.cfg.random_seed}

    def _child_job(self, prop: Proposal) -> dict[str, Any]:
        f = self.cfg.finetune
        idx = self.state.next_index
        parent = self.population.get(prop.parent_id)
        mid = member_id(idx)
        return {"kind": "child", "member_id": mid, "parent_id": parent.id, "depth": parent.depth + 1,
                "born": idx, "attempt": 1, "member_path": f"members/{mid}", "parent_path": str(self.root / parent.path),
                "proposal": prop.to_json(),
                "train": {"epochs": f.epochs, "lr": self.cfg.finetune_lr, "momentum": f.momentum,
                          "weight_decay": f.weight_decay, "schedule": f.schedule,
                          "batch_size": f.batch_size or self.cfg.data.batch_size},
                "train_seed": self.cfg.random_seed * 100_003 + idx}

    def _fail_result(self, job: dict[str, Any], reason: str) -> TrialResult:
        prop = job.get("proposal", {})
        extra = {"proposal_id": prop.get("proposal_id", ""), "attempt": job.get("attempt", 1), **job.get("extra", {})}
        return TrialResult(member_id=job["member_id"], parent_id=job.get("parent_id"), depth=job.get("depth", 0),
                           state="FAIL", search_params=dict(prop.get("search_params", {})),
                           actions=tuple(prop.get("actions", ())),
                           member_path=job["member_path"], fail_reason=reason, extra=extra)

    # ------------------------------------------------------------------------- Tune callbacks
    def _elapsed(self) -> float:
        return self._elapsed_base + (time.time() - self._session_start)

    def _save(self) -> None:
        """Write the state; the search's wall time goes with it, so a kill -9 loses none of it."""
        if self.state.status == "search" and self._elapsed_base is not None:
            self.state.elapsed = self._elapsed()
        self.state.save(self.root)

    def _budget_left(self) -> bool:
        b = self.cfg.budget
        if b.trials is not None and self.state.started >= b.trials:
            return False
        if b.wall_time is not None and self._elapsed() >= b.wall_time:
            return False
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.interrupted or self.fatal:
            return FINISHED
        if self.state.queue:
            return self._launch(trial_id, self.state.queue.pop(0))
        if "m0" not in self.population:
            return None if self.state.pending else FINISHED   # wait for the seed
        if not self._budget_left():
            return FINISHED
        prop = self.strategy.propose(self.population)
        if prop is None:
            if not self.state.pending:
                self.echo(f"the strategy has nothing more to propose (no valid morph of its parents); stopping")
                return FINISHED
            return None
        job = self._child_job(prop)
        self.state.next_index += 1
        self.state.started += 1
        return self._launch(trial_id, job)

    def _launch(self, trial_id: str, job: dict[str, Any]) -> dict[str, Any]:
        job = {**job, **self._common()}
        self.state.pending[job["member_id"]] = job
        self.state.strategy = self.strategy.state_dict()
        self._save()                       # write-ahead: before the trial exists
        self.trials[trial_id] = job["member_id"]
        self._show()
        return {"job": job}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        mid = self.trials.get(trial_id)
        if mid is not None:
            self._epochs[mid] = int(result.get("epoch", 0))
            self._show()

    def on_trial_complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        mid = self.trials.get(trial_id)
        if mid is None or mid not in self.state.pending or self.interrupted:
            return          # interrupted trials stay pending: resume re-runs them
        if error:
            self.errored.setdefault(mid, "the trial's worker raised or died")
            return          # finished by on_trial_error (which has the reason) or after fit
        job = self.state.pending[mid]
        raw = (result or {}).get("trial_result")
        if raw is None:
            r = self._fail_result(job, "the trial ended without reporting a result")
        else:
            r = TrialResult.from_json(json.loads(raw))
            if not (result or {}).get("final", False):       # stopped by the scheduler (ASHA)
                r = dataclasses.replace(r, extra={**r.extra, "early_stopped": True})
        self._finish(job, r)

    def on_trial_error(self, trial_id: str, message: str) -> None:
        mid = self.trials.get(trial_id)
        if mid is None or mid not in self.state.pending or self.interrupted:
            return
        self.errored.pop(mid, None)
        self._finish(self.state.pending[mid], self._fail_result(self.state.pending[mid],
                                                                f"worker error: {message}"))

    # ------------------------------------------------------------------------- results
    def _finish(self, job: dict[str, Any], r: TrialResult) -> None:
        mid = r.member_id
        self.state.pending.pop(mid, None)
        if r.state == "COMPLETE":
            r = dataclasses.replace(r, values=tuple(float(v) for v in self.strategy.objective_values(r)))
            self.population.add(Member.from_result(r, born=job["born"]))
        elif mid == "m0":
            self.fatal = f"the seed stage failed, so there is nothing to morph: {r.fail_reason}"
        self.strategy.observe(r, self.population)
        self.state.population = self.population.to_json()
        self.state.strategy = self.strategy.state_dict()
        self.state.results.append(r.to_json())
        self._save()                        # write-ahead: before the study
        self._record(r)
        self._set_search_space()
        self._show(force=True)
        if r.state == "FAIL":
            self.echo(f"[search] member {mid} FAILED: {r.fail_reason}")

    def _record(self, r: TrialResult) -> None:
        try:
            self.lb.record(r)
        except Exception as e:   # a study problem must not stop the search: the state keeps the result
            self.echo(f"warning: could not record member {r.member_id} in the study "
                      f"({type(e).__name__}: {e}); 'morphnas resume' records it again")

    def _snapshot(self) -> Snapshot:
        children = [TrialResult.from_json(d) for d in self.state.results if d["member_id"] != "m0"]
        best = self.population.best()
        seed = self.population.get("m0").val_acc if "m0" in self.population else None
        return Snapshot(done=len(children), failed=sum(r.state == "FAIL" for r in children),
                        budget=self.cfg.budget.trials, running=len(self.state.pending),
                        best_id=best.id if best else None, best_acc=best.val_acc if best else None,
                        seed_acc=seed, elapsed=self._elapsed(), wall_time=self.cfg.budget.wall_time)

    def _show(self, force: bool = False) -> None:
        self.progress.show(self._snapshot(), force)

    # ------------------------------------------------------------------------- the search
    def _search(self) -> None:
        import ray
        from ray import tune

        from . import runner

        # Load the data once here: a failed download or a bad image folder is one clear error
        # before Ray starts, and trials never download concurrently.
        from .config import DataConfig
        from .data import load_data
        data_cfg = {**dataclasses.asdict(self.cfg.data), "root": str(Path(self.cfg.data.root).expanduser().resolve())}
        load_data(DataConfig(**data_cfg), seed=self.cfg.random_seed)

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"     # ours stops trials and keeps them pending
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        started_ray = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.cfg.ray.address:
                ray.init(address=self.cfg.ray.address, **kw)
            else:
                ray.init(address="local", num_cpus=self.cfg.ray.num_cpus, **kw)
            started_ray = True
        try:
            self._gpus = self._gpus_per_trial(ray.cluster_resources())
            cpus = float(ray.cluster_resources().get("CPU", 1))
            concurrent = self.cfg.resources.max_concurrent or max(1, int(cpus // self.cfg.resources.cpus_per_trial))
            remaining = len(self.state.queue) + (self.cfg.budget.trials - self.state.started
                                                 if self.cfg.budget.trials is not None else 10**6)
            remaining += 0 if "m0" in self.population or any(j["kind"] == "seed" for j in self.state.queue) else 1
            if remaining <= 0 and not self.state.pending:
                return
            # The state's queue jobs need the session's resources (threads, gpus): refreshed at launch.
            scheduler = None
            if self.cfg.ray.asha:
                from ray.tune.schedulers import ASHAScheduler
                scheduler = ASHAScheduler(time_attr="training_iteration", metric=runner.METRIC, mode="max",
                                          max_t=max(1, self.cfg.finetune.epochs, self.cfg.seed.epochs),
                                          grace_period=self.cfg.ray.grace_period,
                                          reduction_factor=self.cfg.ray.reduction_factor)
            tuner = tune.Tuner(
                runner.trainable_with_resources(self.cfg.resources.cpus_per_trial, self._gpus),
                tune_config=tune.TuneConfig(search_alg=runner.MorphSearcher(self), scheduler=scheduler,
                                            num_samples=max(1, remaining), max_concurrent_trials=concurrent,
                                            reuse_actors=True, trial_dirname_creator=runner.trial_dirname,
                                            trial_name_creator=runner.trial_dirname),
                run_config=tune.RunConfig(name=f"session{self.state.sessions}", storage_path=str(self.run_dir.ray),
                                          stop=runner.InterruptStopper(self), callbacks=[runner.ErrorCallback(self)], verbose=0,
                                          # run_trial turns every exception into a FAIL report, so only a dying
                                          # worker or node reaches Tune as an error: a retry re-runs that job.
                                          failure_config=tune.FailureConfig(max_failures=self.cfg.ray.max_failures)),
            )
            self.echo(f"[search] run {self.root.name}: strategy {self.strategy.name}, budget "
                      f"{self.cfg.budget.trials} trial(s), {concurrent} at a time on Ray Tune")
            old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
            for s in old:
                signal.signal(s, self._on_signal)
            try:
                tuner.fit()
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
            self._after_fit()
        finally:
            self._save()
            if started_ray:
                ray.shutdown()

    def _gpus_per_trial(self, resources: dict) -> float:
        g = self.cfg.resources.gpus_per_trial
        if g is not None:
            return float(g)
        return 1.0 if resources.get("GPU", 0) >= 1 else 0.0

    def _on_signal(self, signum, frame) -> None:
        if self.interrupted:               # a second Ctrl-C: stop now (pending trials stay pending)
            raise KeyboardInterrupt
        self.interrupted = True
        self.echo(f"[search] {signal.Signals(signum).name}: stopping the running trials "
                  f"(Ctrl-C again to stop at once); the run can be resumed")

    def _after_fit(self) -> None:
        if self.interrupted:
            return
        for mid in list(self.state.pending):
            why = self.errored.pop(mid, None) or "the trial ended without reporting a result"
            self._finish(self.state.pending[mid], self._fail_result(self.state.pending[mid], why))

    # ------------------------------------------------------------------------- final stage
    def _final_stage(self) -> None:
        from .final import final_stage
        self.state.final = final_stage(self.cfg, self.run_dir, self.population, self.echo)
        self.state.status = "finished"
        self._save()
        self.echo(f"[final] {self._final_summary()}")
        self.echo(f"[final] exported to {self.run_dir.best}")

    def _final_summary(self) -> str:
        from .final import summary
        return summary(self.state.final)


def _abs_if_path(spec: str) -> str:
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


def run_search(cfg: Config, resume: bool = False, **kw: Any) -> int:
    return Driver(cfg, **kw).run(resume)
