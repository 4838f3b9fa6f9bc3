"""Bayesian optimisation over architectures (AutoKeras's idea, KDD 2019): a GP on validation accuracy.

Each proposal:

1. candidates: the ``parents`` best members each get ``candidates_per_parent`` random morph
   proposals from the mutator; every candidate child's *architecture* is derived without training
   (the action space applies the morphs; only the structure is kept, see ``spaces/distance.py``);
2. a Gaussian process on the members' validation accuracies (plus the trials in flight at the mean
   predicted when they were proposed, the "kriging believer", so parallel proposals spread out)
   predicts each candidate; the one with the highest UCB ``mean + beta * std`` is proposed, a
   candidate whose architecture was already trained, is in flight or failed only if nothing new is left.

The kernel must be positive semi-definite, and ``exp(-d^2)`` of an edit distance ``d`` in general
is not (the distance is not Euclidean). So, as AutoKeras does, the distances are first embedded in
a Euclidean space with Bourgain's construction: coordinate ``j`` of an architecture is its distance
to a random subset ``S_j`` of the observed architectures (subset sizes halving level by level), and
``rho`` is the Euclidean distance between embeddings. ``k = exp(-rho^2 / (2 l^2))`` is an RBF
kernel on real vectors, hence PSD for any data, and every coordinate is 1-Lipschitz in ``d``
(``rho <= d``) while Bourgain's bound keeps ``rho >= d / O(log n)`` with high probability. The subsets
are drawn from (seed, number of observations), so the embedding needs no state of its own.

Hyperparameters (length scale ``l``, noise) maximise the marginal likelihood over a small grid, on
standardised accuracies. Randomness: candidates draw from the strategy's rng (saved), nothing else.
Distances are cached by architecture hash, so a step over ~50 members costs mostly the candidates'
morph applications. With a mutator that has no networks (the test fakes), an architecture is the
chain of morphs that made it, compared by the same edit distance.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from morphnas.morphism.schema import rule
from morphnas.search.state.population import Member, Population
from morphnas.search.state.records import Proposal, TrialResult
from morphnas.search.strategies.base import Strategy, register_strategy
from morphnas.spaces.actions import Action
from morphnas.spaces.distance import Architecture, DistanceCache, Token, describe

LENGTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)    # times the median embedded distance
NOISES = (1e-6, 1e-4, 1e-2, 1e-1)              # on standardised accuracies (prior variance 1)


# ------------------------------------------------------------------------------------ kernel and GP
def bourgain_subsets(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random subsets of ``range(n)``: ``levels`` levels (each point kept with probability 2^-i at
    level i, so level 0 is everything) of ``levels`` subsets each; empty subsets are dropped."""
    levels = max(1, math.ceil(math.log2(max(n, 1)))) + 1
    out = []
    for i in range(levels):
        for _ in range(levels):
            s = np.flatnonzero(rng.random(n) < 2.0 ** -i)
            if len(s):
                out.append(s)
    return out


def bourgain_embed(d_to_anchors: np.ndarray, subsets: Sequence[np.ndarray]) -> np.ndarray:
    """Rows of distances to the anchors -> vectors (distance to each subset, scaled so rho <= d)."""
    return np.stack([d_to_anchors[:, s].min(1) for s in subsets], 1) / math.sqrt(len(subsets))


def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0)


def rbf(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    """``exp(-rho^2 / (2 l^2))``, rho the Euclidean distance of the embeddings: a PSD kernel."""
    return np.exp(-sq_dists(a, b) / (2.0 * length ** 2))


@dataclass
class GP:
    """A fitted GP regression (zero mean, unit prior variance on standardised targets)."""

    x: np.ndarray
    length: float
    noise: float
    chol: np.ndarray
    alpha: np.ndarray
    y_mean: float
    y_std: float
    log_likelihood: float

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (of the latent function) in the targets' units."""
        k = rbf(x, self.x, self.length)
        mean = k @ self.alpha
        v = np.linalg.solve(self.chol, k.T)
        var = np.maximum(1.0 - (v ** 2).sum(0), 0.0)
        return mean * self.y_std + self.y_mean, np.sqrt(var) * self.y_std


def fit_gp(x: np.ndarray, y: np.ndarray, lengths: Sequence[float] | None = None,
           noises: Sequence[float] = NOISES) -> GP:
    """Maximum marginal likelihood over the (length, noise) grid; the first best wins ties."""
    y = np.asarray(y, dtype=float)
    y_mean = float(y.mean())
    y_std = float(y.std()) if y.std() > 1e-12 else 1.0
    z = (y - y_mean) / y_std
    d2 = sq_dists(x, x)
    if lengths is None:
        pos = np.sqrt(d2[d2 > 1e-18])
        base = float(np.median(pos)) if len(pos) else 1.0
        lengths = [base * f for f in LENGTH_FACTORS]
    best: GP | None = None
    n = len(z)
    for length in lengths:
        k = np.exp(-d2 / (2.0 * length ** 2))
        for noise in noises:
            try:
                chol = np.linalg.cholesky(k + noise * np.eye(n))
            except np.linalg.LinAlgError:
                continue
            alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
            ll = float(-0.5 * z @ alpha - np.log(np.diag(chol)).sum() - 0.5 * n * math.log(2 * math.pi))
            if best is None or ll > best.log_likelihood:
                best = GP(x, float(length), float(noise), chol, alpha, y_mean, y_std, ll)
    if best is None:   # unreachable with a noise > 0, kept for a clear failure
        raise ArithmeticError("no (length, noise) pair of the grid gave a positive definite kernel matrix")
    return best


# ------------------------------------------------------------------------------------ architectures
def _action_token(a: Action) -> Token:
    return (f"op:{a.op}", 0, 0, json.dumps({"site": a.site, "params": a.params}, sort_keys=True, default=str))


class _Architectures:
    """Architectures of members and candidate children, from the mutator's networks when it has
    them (the driver's ``SpaceMutator``), else from the chain of morphs (``lineage``, saved)."""

    def __init__(self, mutator: Any):
        self.mutator = mutator
        self.networks = callable(getattr(mutator, "child_network", None)) or (
            hasattr(mutator, "space") and callable(getattr(mutator, "net", None)))
        self.lineage: dict[str, list[list[Any]]] = {}   # member -> action tokens (no-network mode only)
        self._members: dict[str, Architecture] = {}

    def member(self, m: Member) -> Architecture:
        a = self._members.get(m.id)
        if a is None:
            if self.networks:
                a = describe(self.mutator.net(m.id))
            else:
                a = Architecture(tuple((str(t[0]), int(t[1]), int(t[2]), str(t[3])) for t in self.lineage.get(m.id, [])))
            self._members[m.id] = a
        return a

    def child(self, parent: Member, actions: Sequence[Action]) -> Architecture:
        if not self.networks:
            return Architecture(self.member(parent).layers + tuple(_action_token(a) for a in actions))
        make = getattr(self.mutator, "child_network", None)
        if callable(make):
            return describe(make(parent.id, actions))
        child, _ = self.mutator.space.estimate(self.mutator.net(parent.id), actions)
        return describe(child)

    def learn(self, member_id: str, arch: Architecture) -> None:
        """A finished child's architecture is the candidate's (training does not change structure)."""
        self._members[member_id] = arch
        if not self.networks:
            self.lineage[member_id] = [list(t) for t in arch.layers]


# ------------------------------------------------------------------------------------ strategy
@register_strategy
class GPStrategy(Strategy):
    name = "gp"

    @dataclass(frozen=True)
    class Params:
        parents: int = field(default=4, metadata=rule(ge=1))                # best members whose morphs are candidates
        candidates_per_parent: int = field(default=3, metadata=rule(ge=1))  # random morph proposals per parent
        beta: float = field(default=2.0, metadata=rule(ge=0))               # UCB: mean + beta * std

    def __init__(self, params: Any, mutator: Any, seed: int):
        super().__init__(params, mutator, seed)
        self.seed = int(seed)
        self.pending: dict[str, dict[str, Any]] = {}   # proposal id -> {"arch": json, "mean": believed val_acc}
        self.failed: list[str] = []                    # architecture keys of failed trials
        self.archs = _Architectures(mutator)
        self.cache = DistanceCache()

    def propose(self, population: Population) -> Proposal | None:
        members = list(population)
        if not members:
            return None
        cands: list[tuple[Member, tuple[Action, ...], dict[str, Any], Architecture]] = []
        for parent in population.ranked()[:self.p.parents]:
            for _ in range(self.p.candidates_per_parent):
                got = self.mutator.random_actions(parent.id, self.rng)
                if got is None:
                    break
                actions, search = tuple(got[0]), dict(got[1])
                cands.append((parent, actions, search, self.archs.child(parent, actions)))
        if not cands:
            return None
        pending = [Architecture.from_json(p["arch"]) for p in self.pending.values()]
        observed = [self.archs.member(m) for m in members] + pending
        y = np.array([m.val_acc for m in members] + [float(p["mean"]) for p in self.pending.values()])
        seen = {a.key for a in observed} | set(self.failed)
        fresh = [c for c in cands if c[3].key not in seen] or cands
        mean, std = self.posterior(observed, y, [c[3] for c in fresh])
        i = int(np.argmax(mean + self.p.beta * std))
        parent, actions, search, arch = fresh[i]
        self.proposed += 1
        pid = f"p{self.proposed}"
        self.pending[pid] = {"arch": arch.to_json(), "mean": float(mean[i])}
        return Proposal(parent.id, actions, search, pid)

    def posterior(self, observed: Sequence[Architecture], y: np.ndarray, at: Sequence[Architecture]
                  ) -> tuple[np.ndarray, np.ndarray]:
        """GP posterior mean and std of val_acc at ``at``, given ``observed`` architectures' ``y``."""
        subsets = bourgain_subsets(len(observed), np.random.default_rng([self.seed, len(observed)]))
        x = bourgain_embed(self.cache.matrix(observed, observed), subsets)
        gp = fit_gp(x, y)
        return gp.predict(bourgain_embed(self.cache.matrix(at, observed), subsets))

    def observe(self, result: TrialResult, population: Population) -> None:
        self.observed += 1
        entry = self.pending.pop(result.extra.get("proposal_id", ""), None)
        if entry is None:
            return
        arch = Architecture.from_json(entry["arch"])
        if result.state == "COMPLETE" and result.member_id in population:
            self.archs.learn(result.member_id, arch)
        elif result.state != "COMPLETE":
            self.failed.append(arch.key)

    def _state(self) -> dict[str, Any]:
        return {"seed": self.seed, "pending": dict(self.pending), "failed": list(self.failed),
                "lineage": dict(self.archs.lineage)}

    def _load(self, s: dict[str, Any]) -> None:
        self.seed = int(s["seed"])
        self.pending = {k: dict(v) for k, v in s["pending"].items()}
        self.failed = list(s["failed"])
        self.archs = _Architectures(self.mutator)
        self.archs.lineage = {k: list(v) for k, v in s["lineage"].items()}


STRATEGY = GPStrategy
