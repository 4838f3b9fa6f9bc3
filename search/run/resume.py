"""What ``resume`` may change in a started run, and how it rewrites the run's config and seed job.

The run's own ``config.yaml`` (resolved when it started) is the configuration; the run state
says what finished, what was running (re-run once) and where the strategy was. An override may
change only keys that leave the meaning of finished members intact (:data:`RESUMABLE`): the final
stage, the budget, resources and Ray, the children's fine-tune LR, and the seed's training while
the seed has not run to its end (:data:`BEFORE_SEED`). The config is rewritten atomically, under
the run's lock, and the changes are printed.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from morphnas.morphism.errors import MorphnasError
from morphnas.search.config import Config, apply_overrides, config_from_dict, save_config
from morphnas.search.state.fsutil import atomic_write_text
from morphnas.search.state.rundir import RunDir
from morphnas.search.state.runstate import RunLock, RunState
from morphnas.search.trial.jobs import seed_job


class ResumeError(MorphnasError):
    """A resume override that would change what finished members mean."""


# Keys (a trailing "." means a whole section) that resume --set may change at any time.
RESUMABLE = ("final.", "budget.", "resources.", "ray.", "finetune.lr")
# Keys that may change only while the seed (member m0) has neither finished nor failed.
BEFORE_SEED = ("seed.",)


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


# What the finished members were made under: the config minus what resume --set may change and
# minus where the run is (it may move). Written when the run starts and whenever resume --set
# rewrites the config; a resume whose config.yaml differs from it in these keys was edited by hand.
FROZEN_FILE = ".config_frozen.json"
_WHERE = ("name", "runs_dir", "storage")


def frozen_part(cfg: Config) -> dict[str, Any]:
    flat = _flat(cfg.to_dict())
    keep = {k: v for k, v in flat.items() if not _matches(k, RESUMABLE) and k not in _WHERE}
    return json.loads(json.dumps(keep, default=str, sort_keys=True))


def record_frozen(run_dir: RunDir, cfg: Config) -> None:
    atomic_write_text(run_dir.root / FROZEN_FILE, json.dumps(frozen_part(cfg), indent=1, sort_keys=True))


def check_hand_edits(run_dir: RunDir, cfg: Config) -> None:
    """Refuse a config.yaml changed by hand in keys that give finished members their meaning."""
    path = run_dir.root / FROZEN_FILE
    try:
        was = json.loads(path.read_text())
    except FileNotFoundError:     # a run from before this check: nothing to compare with
        return
    except (OSError, ValueError):
        return
    now = frozen_part(cfg)
    changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
    if changed:
        shown = ", ".join(f"{k} {was.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
        more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
        raise ResumeError(f"the config.yaml of run {run_dir.root.name} was edited by hand since it started: {shown}"
                          f"{more}; finished members were made with the old values, so put them back (resume --set "
                          f"changes final.*, budget.*, resources.*, ray.*, finetune.lr), or start a new run")


def apply_resume_overrides(run_dir: RunDir, overrides: list[str], echo: Callable[[str], None] = print) -> None:
    """Check ``overrides`` against the whitelist and the run's state, then rewrite config.yaml (and
    the not yet finished seed job) atomically, under the run's lock."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if _matches(key, RESUMABLE):
            continue
        if _matches(key, BEFORE_SEED):
            continue          # checked against the state below
        raise ResumeError(f"resume --set {item!r}: {key!r} cannot change in a started run (finished members were "
                       f"made with it); allowed: final.*, budget.*, resources.*, ray.*, finetune.lr, and seed.* "
                       f"before the seed finished. Start a new run for other changes")
    _rewrite(run_dir, overrides, echo, write=False)      # every refusal before the lock file exists
    with RunLock(run_dir.root):
        _rewrite(run_dir, overrides, echo, write=True)


def _rewrite(run_dir: RunDir, overrides: list[str], echo: Callable[[str], None], write: bool) -> None:
    state = RunState.load(run_dir.root)
    old = run_dir.config()
    check_hand_edits(run_dir, config_from_dict(old))
    cfg = config_from_dict(apply_overrides(old, overrides))
    before, after = _flat(config_from_dict(old).to_dict()), _flat(cfg.to_dict())
    changed = [k for k in after if before.get(k) != after[k]]
    seed_keys = [k for k in changed if _matches(k, BEFORE_SEED)]
    if seed_keys:
        seed_done = state.result_of("m0")
        if seed_done is not None:
            how = ("finished, so the children are made from it" if seed_done.state == "COMPLETE"
                   else f"failed ({seed_done.fail_reason[:80]}), and a failed trial is "
                        f"not re-run; remove the run (morphnas remove {run_dir.root}) and start it again")
            raise ResumeError(f"resume --set {seed_keys[0]}: the seed (m0) already {how}")
        new = seed_job(cfg)
        state.queue = [j.replace(train=new.train, seed=new.seed) if j.kind == "seed" else j for j in state.queue]
        state.pending = {k: j.replace(train=new.train, seed=new.seed) if j.kind == "seed" else j
                         for k, j in state.pending.items()}
    if not write:
        return
    if not changed:
        echo("resume: --set changes nothing in the config")
        return
    save_config(cfg, run_dir.config_path)
    record_frozen(run_dir, cfg)
    if seed_keys:
        state.save(run_dir.root)
    echo("resume: config.yaml updated: " + ", ".join(f"{k} {before.get(k)!r} -> {after[k]!r}" for k in changed))
