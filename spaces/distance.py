"""An edit distance between two network architectures (weights ignored), after AutoKeras (KDD 2019).

Why: a Gaussian process over architectures (the ``gp`` strategy) needs to know how alike two
networks are, and networks in a morph search differ by a few inserted layers, wider blobs, larger
kernels and extra paths. A network is summarised as an :class:`Architecture`:

* ``layers``: the *main path*, the longest input -> output path (ties broken by layer tokens and
  structural blob labels, never by names), as one token per layer: (kind, width, kernel, detail);
* ``skips``: everything off the main path, cut into components joined by off-path blobs. A residual
  shortcut is one component (one identity or projection edge), a morphed path another. Each is
  described by where it leaves and rejoins the main path (``src``, ``span``), its layer tokens and
  its wiring (which of its layers connect to which blob), in a name-independent canonical order.

The distance adds (1) the edit distance of the main-path token sequences (insert/delete 1;
substitute 1 across kinds, else a weighted relative difference of width and kernel plus a term for
any other field such as stride or activation function) and (2) a minimum-cost bipartite assignment
of the two skip sets (``scipy.optimize.linear_sum_assignment``), where a matched pair costs its
position shift, the edit distance of its layers and a term for different wiring, and an unmatched
skip costs ``1 + its layer count``. The distance is symmetric, and 0 exactly when the two
summaries are equal, i.e. when the networks are the same labelled DAG (same kinds, widths,
kernels and connectivity); names and tensors play no part.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from morphnas.morphism.graph import Network
from morphnas.morphism.layers import LayerSpec

Token = tuple[str, int, int, str]      # (kind, width, kernel, detail)

_WIDTH_FIELDS = ("out_channels", "num_features", "channels", "num_parameters", "out_features")
_DROPPED = {"in_channels", "in_features", "kernel_size", "init", *_WIDTH_FIELDS}  # init: a weight, not structure
W_WIDTH, W_KERNEL, W_DETAIL = 0.5, 0.3, 0.2    # same-kind substitution weights (sum 1 = a kind change)
W_POS, W_WIRING = 0.2, 0.5                     # skip position shift (per blob) and different wiring


def layer_token(spec: LayerSpec) -> Token:
    """The structural summary of one layer: kind, output width, kernel size and the other fields."""
    d = dataclasses.asdict(spec)     # every layer kind is a frozen dataclass of its hyper-parameters
    kind = str(spec.kind)
    width = next((int(d[f]) for f in _WIDTH_FIELDS if f in d), 0)
    kernel = int(d.get("kernel_size") or 0)
    detail = json.dumps({k: v for k, v in d.items() if k not in _DROPPED}, sort_keys=True)
    return (kind, width, kernel, detail)


@dataclass(frozen=True)
class Skip:
    """One component off the main path: leaves it at blob ``src``, rejoins ``span`` blobs later."""

    src: int
    span: int
    layers: tuple[Token, ...]
    wiring: tuple[tuple[int, int, int, int], ...]   # per layer: (src on main?, index, dst on main?, index)


@dataclass(frozen=True)
class Architecture:
    layers: tuple[Token, ...]
    skips: tuple[Skip, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"layers": [list(t) for t in self.layers],
                "skips": [[s.src, s.span, [list(t) for t in s.layers], [list(w) for w in s.wiring]] for s in self.skips]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Architecture":
        return cls(tuple(_token(t) for t in d["layers"]),
                   tuple(Skip(int(s[0]), int(s[1]), tuple(_token(t) for t in s[2]),
                              tuple((int(a), int(b), int(c), int(e)) for a, b, c, e in s[3])) for s in d["skips"]))

    @functools.cached_property
    def key(self) -> str:
        """A stable hash: equal exactly when the summaries (hence the architectures) are equal."""
        return hashlib.sha1(json.dumps(self.to_json(), separators=(",", ":")).encode()).hexdigest()[:20]


def _token(t: Sequence[Any]) -> Token:
    return (str(t[0]), int(t[1]), int(t[2]), str(t[3]))


# ------------------------------------------------------------------------------------ describe
def describe(net: Network) -> Architecture:
    """The :class:`Architecture` of ``net`` (see the module docstring)."""
    edges = net.edges()
    tok = {e.name: layer_token(e.layer) for e in edges}
    order = net.blobs()
    depth: dict[str, int] = {}
    label: dict[str, str] = {}
    for b in order:   # longest distance from the input and a hash of the ancestry: both name-free
        ins = net.in_edges(b)
        depth[b] = max((depth[e.src] + 1 for e in ins), default=0)
        parts = sorted(f"{label[e.src]}|{tok[e.name]}" for e in ins)
        label[b] = hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16] if ins else "input"

    def key(b: str) -> tuple[int, str, str]:
        return (depth[b], label[b], b)

    main_blobs, main_edges = [net.output_blob], []
    b = net.output_blob
    while b != net.input_blob:
        ins = [e for e in net.in_edges(b) if depth[e.src] == depth[b] - 1]
        if not ins:          # not reachable from the input: stop (lint refuses such networks anyway)
            break
        e = max(ins, key=lambda e: (tok[e.name], label[e.src], e.src, e.name))
        main_edges.append(e)
        b = e.src
        main_blobs.append(b)
    main_blobs.reverse()
    main_edges.reverse()
    pos = {b: i for i, b in enumerate(main_blobs)}
    on_main = {e.name for e in main_edges}

    # Components of the off-path edges: two edges belong together when they share an off-path blob.
    rest = [e for e in edges if e.name not in on_main]
    parent = {e.name: e.name for e in rest}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    by_blob: dict[str, str] = {}
    for e in rest:
        for blob in (e.src, e.dst):
            if blob in pos:
                continue
            if blob in by_blob:
                parent[find(e.name)] = find(by_blob[blob])
            else:
                by_blob[blob] = e.name
    groups: dict[str, list[Any]] = {}
    for e in rest:
        groups.setdefault(find(e.name), []).append(e)
    skips = [_skip(es, pos, key, tok) for es in groups.values()]
    skips.sort(key=lambda s: (s.src, s.span, s.layers, s.wiring))
    return Architecture(tuple(tok[e.name] for e in main_edges), tuple(skips))


def _skip(es: list[Any], pos: dict[str, int], key: Any, tok: dict[str, Token]) -> Skip:
    attach = [pos[b] for e in es for b in (e.src, e.dst) if b in pos]
    src = min(attach, default=0)
    inner = sorted({b for e in es for b in (e.src, e.dst) if b not in pos}, key=key)
    idx = {b: i for i, b in enumerate(inner)}

    def ref(b: str) -> tuple[int, int]:
        return (1, pos[b] - src) if b in pos else (0, idx[b])
    es = sorted(es, key=lambda e: (key(e.src), key(e.dst), tok[e.name]))
    return Skip(src, max(attach, default=0) - src, tuple(tok[e.name] for e in es),
                tuple((*ref(e.src), *ref(e.dst)) for e in es))


# ------------------------------------------------------------------------------------ distance
class _Seq:
    """A token sequence as arrays, so a substitution-cost matrix is one broadcast."""

    _ids: dict[Any, int] = {}

    def __init__(self, tokens: Sequence[Token]):
        self.tid = np.array([self._id(t) for t in tokens], dtype=np.int64)
        self.kind = np.array([self._id(t[0]) for t in tokens], dtype=np.int64)
        self.width = np.array([t[1] for t in tokens], dtype=float)
        self.kernel = np.array([t[2] for t in tokens], dtype=float)
        self.detail = np.array([self._id(t[3]) for t in tokens], dtype=np.int64)

    @classmethod
    def _id(cls, s: Any) -> int:   # ids only serve equality tests: their order does not matter
        return cls._ids.setdefault(s, len(cls._ids))

    def part(self, lo: int, hi: int) -> "_Seq":
        out = _Seq.__new__(_Seq)
        for f in ("tid", "kind", "width", "kernel", "detail"):
            setattr(out, f, getattr(self, f)[lo:hi])
        return out

    @property
    def n(self) -> int:
        return len(self.tid)


def _rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    hi = np.maximum(a[:, None], b[None, :])
    return np.where(hi > 0, np.abs(a[:, None] - b[None, :]) / np.where(hi > 0, hi, 1.0), 0.0)


def _common(x: np.ndarray, y: np.ndarray) -> int:
    eq = x == y
    return len(eq) if eq.all() else int(np.argmin(eq))


def sequence_distance(a: _Seq, b: _Seq) -> float:
    """Edit distance: insert/delete 1, substitute by :func:`layer_token` difference (in [0, 1]).

    A common prefix and suffix are matched first. That is exact, not a heuristic: with identical
    tokens costing 0 and a substitution at most the cost of one insertion, some optimal alignment
    matches them; morph children share most of their tokens, so the DP runs on the few that differ.
    """
    k = min(a.n, b.n)
    pre = _common(a.tid[:k], b.tid[:k])
    suf = _common(a.tid[::-1][:k - pre], b.tid[::-1][:k - pre])
    if pre or suf:
        a, b = a.part(pre, a.n - suf), b.part(pre, b.n - suf)
    if a.n == 0 or b.n == 0:
        return float(a.n + b.n)
    same = a.kind[:, None] == b.kind[None, :]
    sub: Any = np.where(same, W_WIDTH * _rel(a.width, b.width) + W_KERNEL * _rel(a.kernel, b.kernel)
                   + W_DETAIL * (a.detail[:, None] != b.detail[None, :]), 1.0)
    if a.n * b.n <= 64:          # short sequences (most skips): plain Python beats numpy's call overhead
        return _small_dp(sub.tolist(), a.n, b.n)
    ramp = np.arange(b.n + 1, dtype=float)
    prev = ramp.copy()
    t = np.empty(b.n + 1)
    for i in range(a.n):
        t[0] = prev[0] + 1.0
        np.minimum(prev[1:] + 1.0, prev[:-1] + sub[i], out=t[1:])
        # insertions along the row: cur[j] = min_k<=j t[k] + (j - k), one running minimum
        prev = np.minimum.accumulate(t - ramp) + ramp
    return float(prev[-1])


def _small_dp(sub: list[list[float]], n: int, m: int) -> float:
    prev = [float(j) for j in range(m + 1)]
    for i in range(n):
        row, cur = sub[i], [prev[0] + 1.0]
        for j in range(m):
            cur.append(min(prev[j + 1] + 1.0, prev[j] + row[j], cur[j] + 1.0))
        prev = cur
    return prev[m]


class _Prepared:
    """One architecture's arrays: the main-path sequence and, per skip, position, span and the ids
    of its layer sequence and wiring (skips repeat across a population, so their costs are shared)."""

    def __init__(self, main: _Seq, src: np.ndarray, span: np.ndarray, lid: np.ndarray, wid: np.ndarray,
                 size: np.ndarray):
        self.main, self.src, self.span, self.lid, self.wid, self.size = main, src, span, lid, wid, size


class DistanceCache:
    """Distances between architectures, memoised by their :attr:`Architecture.key` (and the layer
    sequences of skips by id), so repeated queries over a growing population are dictionary lookups."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], float] = {}
        self._prep: dict[str, _Prepared] = {}
        self._lids: dict[tuple[Token, ...], int] = {}
        self._lseqs: list[_Seq] = []
        self._ltoks: list[tuple[Token, ...]] = []
        self._ldist: dict[tuple[int, int], float] = {}

    def _prepared(self, a: Architecture) -> _Prepared:
        p = self._prep.get(a.key)
        if p is None:
            lid = []
            for s in a.skips:
                if s.layers not in self._lids:
                    self._lids[s.layers] = len(self._ltoks)
                    self._ltoks.append(s.layers)
                    self._lseqs.append(_Seq(s.layers))
                lid.append(self._lids[s.layers])
            p = self._prep[a.key] = _Prepared(
                _Seq(a.layers), np.array([s.src for s in a.skips], dtype=float),
                np.array([s.span for s in a.skips], dtype=float), np.array(lid, dtype=np.int64),
                np.array([_Seq._id(s.wiring) for s in a.skips], dtype=np.int64),
                np.array([1 + len(s.layers) for s in a.skips], dtype=float))
        return p

    def __call__(self, a: Architecture, b: Architecture) -> float:
        ka, kb = a.key, b.key
        if ka == kb:
            return 0.0
        pair = (ka, kb) if ka < kb else (kb, ka)
        d = self._pairs.get(pair)
        if d is None:
            x, y = (a, b) if ka < kb else (b, a)   # one argument order: bit-identical both ways
            px, py = self._prepared(x), self._prepared(y)
            d = self._pairs[pair] = sequence_distance(px.main, py.main) + self._skip_matching(px, py)
        return d

    def _layers_distance(self, i: int, j: int) -> float:
        if i == j:
            return 0.0
        key = (i, j) if i < j else (j, i)
        d = self._ldist.get(key)
        if d is None:   # orient by content, not by id (ids depend on the order of queries)
            x, y = (i, j) if self._ltoks[i] < self._ltoks[j] else (j, i)
            d = self._ldist[key] = sequence_distance(self._lseqs[x], self._lseqs[y])
        return d

    def _skip_matching(self, a: _Prepared, b: _Prepared) -> float:
        """Minimum-cost assignment; either side may leave a skip unmatched at ``1 + len(layers)``.

        A matched pair costs ``W_POS * (|src shift| + |span change|)`` + the edit distance of their
        layers + ``W_WIRING`` if their wiring differs."""
        n, m = len(a.lid), len(b.lid)
        if n == 0 or m == 0:
            return float(a.size.sum() + b.size.sum())
        ua, ub = np.unique(a.lid), np.unique(b.lid)
        table = np.array([[self._layers_distance(int(i), int(j)) for j in ub] for i in ua])
        layers = table[np.searchsorted(ua, a.lid)][:, np.searchsorted(ub, b.lid)]
        pair = (W_POS * (np.abs(a.src[:, None] - b.src[None, :]) + np.abs(a.span[:, None] - b.span[None, :]))
                + layers + W_WIRING * (a.wid[:, None] != b.wid[None, :]))
        big = 1e9
        cost = np.full((n + m, n + m), big)
        cost[:n, :m] = pair
        cost[n:, m:] = 0.0
        cost[np.arange(n), m + np.arange(n)] = a.size
        cost[n + np.arange(m), np.arange(m)] = b.size
        rows, cols = linear_sum_assignment(cost)
        return float(cost[rows, cols].sum())

    def matrix(self, rows: Sequence[Architecture], cols: Sequence[Architecture]) -> np.ndarray:
        return np.array([[self(a, b) for b in cols] for a in rows], dtype=float).reshape(len(rows), len(cols))


def distance(a: Architecture | Network, b: Architecture | Network) -> float:
    """The edit distance between two networks (or their summaries); see the module docstring."""
    return DistanceCache()(_arch(a), _arch(b))


def _arch(x: Architecture | Network) -> Architecture:
    return x if isinstance(x, Architecture) else describe(x)


def pairwise(archs: Iterable[Architecture], cache: DistanceCache | None = None) -> np.ndarray:
    """The symmetric distance matrix of ``archs``."""
    xs = list(archs)
    return (cache or DistanceCache()).matrix(xs, xs)
