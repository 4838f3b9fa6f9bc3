"""``morphnas resume RUN [--set KEY=VALUE ...] [--verbose]``: continue a run stopped by Ctrl-C, kill -9,
a crashed worker, a reboot, or a failure that a config change fixes.

The run's own ``config.yaml`` (resolved when it started) is the configuration; the run state
says what finished, what was running (re-run once) and where the strategy was. ``--set`` may change
only keys that leave the meaning of finished members intact (:data:`RESUMABLE`): the final stage,
the budget, resources and Ray, the children's fine-tune LR, and the seed's training while the seed
has not run to its end. The config is rewritten atomically and the changes are printed.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .registry import CLIError, register_command

# Keys (a trailing "." means a whole section) that resume --set may change at any time.
RESUMABLE = ("final.", "budget.", "resources.", "ray.", "finetune.lr")
# Keys that may change only while the seed (member m0) has neither finished nor failed.
BEFORE_SEED = ("seed.",)


@register_command("resume", position=60)
def add_parser(sub) -> None:
    p = sub.add_parser("resume", help="continue an interrupted search run",
                       description="Continue a search run from its write-ahead state: no finished trial is lost "
                                   "or repeated, trials that were running are re-run once.")
    p.add_argument("run_dir", metavar="RUN", help="the run directory (runs/<name>) or its name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a key that does not change what finished members mean, e.g. --set final.lr=0.001 "
                        f"(allowed: {', '.join(k + ('*' if k.endswith('.') else '') for k in RESUMABLE + BEFORE_SEED)})")
    p.add_argument("--verbose", action="store_true", help="show Ray's and Optuna's own log messages")
    p.set_defaults(run=run)


def _matches(key: str, allowed: tuple[str, ...]) -> bool:
    return any(key.startswith(a) if a.endswith(".") else key == a for a in allowed)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("actions", "strategy"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def apply_resume_overrides(run_dir, overrides: list[str], echo=print) -> None:
    """Check ``overrides`` against the whitelist and the run's state, then rewrite config.yaml (and
    the not yet finished seed job) atomically, under the run's lock."""
    from morphnas.search.runstate import RunLock

    for item in overrides:
        key = item.partition("=")[0].strip()
        if _matches(key, RESUMABLE):
            continue
        if _matches(key, BEFORE_SEED):
            continue          # checked against the state below
        raise CLIError(f"resume --set {item!r}: {key!r} cannot change in a started run (finished members were "
                       f"made with it); allowed: final.*, budget.*, resources.*, ray.*, finetune.lr, and seed.* "
                       f"before the seed finished. Start a new run for other changes")
    _rewrite(run_dir, overrides, echo, write=False)      # every refusal before the lock file exists
    with RunLock(run_dir.root):
        _rewrite(run_dir, overrides, echo, write=True)


def _rewrite(run_dir, overrides: list[str], echo, write: bool) -> None:
    from morphnas.search.config import apply_overrides, config_from_dict, save_config
    from morphnas.search.loop import Driver
    from morphnas.search.runstate import RunState

    state = RunState.load(run_dir.root)
    old = run_dir.config()
    cfg = config_from_dict(apply_overrides(old, overrides))
    before, after = _flat(config_from_dict(old).to_dict()), _flat(cfg.to_dict())
    changed = [k for k in after if before.get(k) != after[k]]
    seed_keys = [k for k in changed if _matches(k, BEFORE_SEED)]
    if seed_keys:
        seed_done = [r for r in state.results if isinstance(r, dict) and r.get("member_id") == "m0"]
        if seed_done:
            how = ("finished, so the children are made from it" if seed_done[0].get("state") == "COMPLETE"
                   else f"failed ({str(seed_done[0].get('fail_reason', ''))[:80]}), and a failed trial is "
                        f"not re-run; remove the run (morphnas remove {run_dir.root}) and start it again")
            raise CLIError(f"resume --set {seed_keys[0]}: the seed (m0) already {how}")
        seed_job = Driver(cfg, run_dir)._seed_job().to_json()
        for job in [*state.queue, *state.pending.values()]:
            if job.get("kind") == "seed":
                job["train"], job["seed"] = seed_job["train"], seed_job["seed"]
    if not write:
        return
    if not changed:
        echo("resume: --set changes nothing in the config")
        return
    save_config(cfg, run_dir.config_path)
    if seed_keys:
        state.save(run_dir.root)
    echo("resume: config.yaml updated: " + ", ".join(f"{k} {before.get(k)!r} -> {after[k]!r}" for k in changed))


def run(args: argparse.Namespace) -> int:
    from morphnas.search.config import ConfigError, load_config
    from morphnas.search.loop import Driver
    from morphnas.search.rundir import RunDir, open_run
    from morphnas.search.runstate import RunState
    run_dir: RunDir = open_run(args.run_dir)
    RunState.load(run_dir.root)          # refuses a corrupt or tampered state before anything changes
    if args.overrides:
        apply_resume_overrides(run_dir, args.overrides)
    try:
        cfg = load_config(run_dir.config_path)
    except ConfigError as e:
        raise ConfigError(f"{e} (the run's config.yaml; fix it with morphnas resume {run_dir.root} --set ...)") from None
    # The run directory may have moved since it started: trust where it is now.
    if Path(cfg.runs_dir).resolve() / cfg.name != run_dir.root:
        cfg = cfg.replace(runs_dir=str(run_dir.root.parent), name=run_dir.root.name)
    return Driver(cfg, run_dir, verbose=args.verbose).run(resume=True)
