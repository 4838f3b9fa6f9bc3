"""A growing lineage's trial: carry the optimizer state through the morph and pick the morph cheaply.

The ``grow`` strategy trains one network continuously and grows it at the restarts of its SGDR
schedule. At a growth point the worker gets several candidate morphs of the current network and
scores each **without training it to the end** (:func:`score_candidates`):

* ``rung``: a short rung (``rung_fraction`` of an epoch) of the child's own continued training,
  then its validation loss: the signal successive halving uses, at a fraction of its cost;
* ``gradient``: the squared norm of the training-loss gradient of the child minus the parent's on
  the same batches (``grad_batches``): by first order, how much more one SGD step of the child can
  lower the loss (the signal GradMax and Firefly grow by). No step is taken;
* ``first``: no scoring: the first (random) candidate that applies (the default: measured best or
  tied in every regime of the equal-FLOPs benchmark, and it costs nothing; see BENCHMARKS.md).

The chosen child then trains on from where its parent stopped: the same schedule, the optimizer
state mapped through the morph (:func:`morphnas.morphism.optstate.map_param_state`). Every scoring
pass is counted in training FLOPs, so a method that scores pays for it.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import MorphnasError, storage_error
from morphnas.morphism.graph import Network
from morphnas.morphism.optstate import ParamState, map_param_state
from morphnas.search.data.core import Data, batches
from morphnas.search.data.task import Task
from morphnas.search.trial.child import Child, make_child
from morphnas.search.trial.train import TrainSpec, train, training_flops
from morphnas.spaces.actions import Action
from morphnas.spaces.counting import count

OPTIMIZER_FILE = "optimizer.pt"     # in a member directory: its SGD state by parameter name
SCORINGS = ("rung", "gradient", "first")


class GrowError(MorphnasError):
    """A growth step that cannot run (unknown scoring, no candidate that applies)."""


@dataclass(frozen=True)
class Scored:
    """The outcome of scoring: the chosen child, every candidate's score, and what scoring cost."""

    child: Child
    index: int
    scores: tuple[float | None, ...]     # None: the candidate failed (its reason in ``errors``)
    errors: tuple[str, ...]
    flops: int                           # training multiply-adds spent on scoring

    def to_json(self, scoring: str) -> dict[str, Any]:
        return {"scoring": scoring, "chosen": self.index, "scores": list(self.scores),
                "errors": [e for e in self.errors if e], "scoring_flops": self.flops}


# ------------------------------------------------------------------------------ optimizer state files
def save_optimizer_state(state: ParamState, member_dir: Path) -> None:
    """Write ``state`` beside the member's network, atomically (temporary file, then rename)."""
    tmp = member_dir / f".{OPTIMIZER_FILE}.{os.getpid()}.tmp"
    buf = io.BytesIO()      # serialised in memory, then a plain write: a full disk is an OSError (ENOSPC)
    torch.save({k: {n: t.detach().cpu() for n, t in v.items()} for k, v in state.items()}, buf)
    try:
        member_dir.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
        os.replace(tmp, member_dir / OPTIMIZER_FILE)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise storage_error(e, member_dir / OPTIMIZER_FILE, "cannot save the optimizer state to") from None


def load_optimizer_state(member_dir: Path) -> ParamState | None:
    """The member's saved optimizer state (``None`` when it has none: a member of another strategy)."""
    path = Path(member_dir) / OPTIMIZER_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # a torn or foreign file: name it rather than train from a wrong state
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""   # torch's text runs to many lines
        raise GrowError(f"cannot read the optimizer state {path} ({type(e).__name__}: {first[:120]}); "
                        f"remove the file to start the child's momentum at zero") from None
    if not isinstance(state, dict):
        raise GrowError(f"{path} is not an optimizer state (a mapping of parameter names)")
    return state


def carried_state(parent: Network, child: Child, parent_state: ParamState | None) -> ParamState | None:
    """The parent's optimizer state mapped onto the child (kept parameters as their weights were
    mapped, new ones at zero); ``None`` when the parent has none."""
    if parent_state is None:
        return None
    return map_param_state(parent, child.network, child.records, parent_state)


# ------------------------------------------------------------------------------ scoring
def score_candidates(parent: Network, parent_state: ParamState | None, candidates: Sequence[Sequence[Action]],
                     data: Data, spec: TrainSpec, scoring: Mapping[str, Any], *, seed: int, tolerance: float = 1e-4,
                     verify_dtype: str = "float64", device: str | torch.device = "cpu", trainer: Any = None,
                     task: Task | None = None) -> Scored:
    """Make every candidate child and score it by ``scoring["method"]``; returns the best one.

    A candidate that does not apply or breaks preservation scores ``None`` and is skipped (its
    reason is kept); if none is left, :class:`GrowError`. Ties go to the earlier candidate.
    """
    task = task if task is not None else Task()
    method = str(scoring.get("method", "rung"))
    if method not in SCORINGS:
        raise GrowError(f"unknown scoring {method!r}; choose one of {', '.join(SCORINGS)}")
    children: list[Child | None] = []
    errors: list[str] = []
    for i, actions in enumerate(candidates):
        if method == "first" and any(c is not None for c in children):
            children.append(None)       # not made: the first candidate that applies is the choice
            errors.append("")
            continue
        try:
            children.append(make_child(parent, actions, data, seed=seed + i, tolerance=tolerance,
                                       verify_dtype=verify_dtype))
            errors.append("")
        except MorphnasError as e:
            children.append(None)
            errors.append(f"candidate {i}: {type(e).__name__}: {e}")
    made = [i for i, c in enumerate(children) if c is not None]
    if not made:
        raise GrowError("no candidate morph applies: " + "; ".join(errors))
    scores: list[float | None] = [None] * len(children)
    flops = 0
    if method == "first" or len(made) == 1:
        best = made[0]
    else:
        base = None
        if method == "gradient":
            base, cost = gradient_energy(parent, data, spec, int(scoring.get("grad_batches", 2)), seed, device, task)
            flops += cost
        for i in made:
            child = children[i]
            assert child is not None
            if method == "rung":
                s, cost = rung_score(parent, child, parent_state, data, spec, float(scoring.get("rung_fraction", 0.25)),
                                     seed, device, trainer, task)
            else:
                g, cost = gradient_energy(child.network, data, spec, int(scoring.get("grad_batches", 2)), seed, device,
                                          task)
                s = g - (base or 0.0)
            scores[i] = s
            flops += cost
        best = max(made, key=lambda i: (scores[i], -i))
    chosen = children[best]
    assert chosen is not None
    return Scored(chosen, best, tuple(scores), tuple(errors), flops)


def rung_score(parent: Network, child: Child, parent_state: ParamState | None, data: Data, spec: TrainSpec,
               fraction: float, seed: int, device: str | torch.device = "cpu", trainer: Any = None,
               task: Task | None = None) -> tuple[float, int]:
    """Minus the validation loss of ``child`` after a rung of ``fraction`` of an epoch of its own
    continued training (the schedule and optimizer state it would continue with), and its cost."""
    steps_per_epoch = math.ceil(len(data.train) / spec.batch_size)
    steps = max(1, int(round(fraction * steps_per_epoch)))
    rung = replace(spec, epochs=1, max_steps=steps)
    trained, reps = train(child.network, data, rung, seed=seed, device=device,
                          optimizer_state=carried_state(parent, child, parent_state), trainer=trainer, task=task)
    loss = validation_loss(trained, data, spec.batch_size, device, task)
    return -loss, reps[-1].train_flops + count(trained).flops * len(data.val)


def gradient_energy(net: Network, data: Data, spec: TrainSpec, n_batches: int, seed: int,
                    device: str | torch.device = "cpu", task: Task | None = None) -> tuple[float, int]:
    """The summed squared gradient norm of the training loss over ``n_batches`` fixed training
    batches (train mode, no step taken), and its cost in multiply-adds."""
    module = compile_network(net).to(device).train()
    gen = torch.Generator().manual_seed(seed)
    total, examples = 0.0, 0
    for b, (x, y) in enumerate(batches(data.train, spec.batch_size, shuffle=True, gen=gen)):
        if b >= n_batches:
            break
        module.zero_grad(set_to_none=True)
        loss = (task or Task()).loss_fn(module(x.to(device)), y.to(device))
        loss.backward()
        total += sum(float((p.grad.detach() ** 2).sum()) for p in module.parameters() if p.grad is not None)
        examples += len(y)
    return total, training_flops(net, examples)


@torch.no_grad()
def validation_loss(net: Network, data: Data, batch_size: int = 256, device: str | torch.device = "cpu",
                    task: Task | None = None) -> float:
    """Mean training loss of the task (cross-entropy, MSE, L1) of ``net`` on the validation split (eval mode)."""
    task = task if task is not None else Task()
    module = compile_network(net).to(device).eval()
    total, n = 0.0, 0
    for x, y in batches(data.val, batch_size):
        total += float(task.loss_fn(module(x.to(device)), y.to(device))) * len(y)
        n += len(y)
    return total / max(1, n)
