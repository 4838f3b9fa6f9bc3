"""What a trial's page in optuna-dashboard shows first: a markdown note per member.

optuna-dashboard lists a trial's user attributes in one box, alphabetically, and raw JSON pushed
the answers a user looks for below the fold. The note (``optuna_dashboard.save_note``) is shown at
the top of the trial's page, so it carries, in order: the member and its parent, the ops with their
sites, params and FLOPs, the preservation error, validation accuracy, and the architecture drawing.
Raw records go to an attached JSON file instead (:func:`raw_record`). Building the content is kept
apart from writing it (:class:`~.leaderboard.Leaderboard`), so it can be tested without a study.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from morphnas.search.state.records import TrialResult


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def note_markdown(r: TrialResult, trial_number: int, image_url: str | None = None,
                  values: Sequence[float] | None = None, objective_names: Sequence[str] | None = None) -> str:
    """The trial's note: ``## m6 (trial 6) <- m2``, a table of what was asked, the drawing."""
    head = f"## {r.member_id} (trial {trial_number})" + (f" ← {r.parent_id}" if r.parent_id else " · seed")
    done = r.state == "COMPLETE"
    val = r.val_acc_history[-1] if r.val_acc_history else None
    lines = [head, ""]
    if r.actions:
        lines.append("**ops:** " + ", ".join(
            f"`{a.get('op', '?')}` at `{a['site']}`" if a.get("site") else f"`{a.get('op', '?')}`" for a in r.actions))
    else:
        lines.append("**ops:** none (the seed network)")
    lines += ["", "| | |", "|---|---|",
              f"| state | {r.state}{' — ' + r.fail_reason if r.fail_reason else ''} |",
              f"| {(objective_names[0] if objective_names else 'val_acc').replace('_', ' ')} | "
              f"{_num((values[0] if values else val) if done else None, '.4f')} |",
              f"| params | {_num(r.params if done or r.params else None, ',')} |",
              f"| FLOPs (MACs) | {_num(r.flops if done or r.flops else None, ',')} |",
              f"| preservation error | {_num(r.preservation_error, '.3g')} |",
              f"| lineage depth | {r.depth} |",
              f"| epochs, wall time | {r.epochs}, {r.wall_time:.1f} s |"]
    if values is not None and objective_names:
        lines.append("| objectives | " + ", ".join(f"{n} = {v:.6g}" for n, v in zip(objective_names, values)) + " |")
    if image_url:
        lines += ["", f"![architecture of {r.member_id}]({image_url})"]
    lines += ["", "Raw records (actions, driver notes): the attached `record_" + r.member_id + ".json`."]
    return "\n".join(lines) + "\n"


def raw_record(r: TrialResult) -> str:
    """The member's full record as JSON (what used to fill the user attributes)."""
    return json.dumps({"member_id": r.member_id, "parent_id": r.parent_id, "actions": list(r.actions),
                       "search_params": dict(r.search_params), "extra": dict(r.extra),
                       "val_acc_history": list(r.val_acc_history)}, indent=1, default=str)


def arch_params(actions: Sequence[Mapping[str, Any]], depth: int) -> dict[str, Any]:
    """Params every trial has (the seed too), so importance and the slice plot compare all trials:
    the first action's op (``seed`` for the seed), the number of actions and the lineage depth."""
    return {"first_op": str(actions[0].get("op", "?")) if actions else "seed", "num_morphs": len(actions),
            "lineage_depth": int(depth)}
