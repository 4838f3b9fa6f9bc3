"""Random modules for tests and benchmarks (explicit ``numpy.random.Generator``, no global state).

* :func:`random_simple_module` grows a module from one edge by random forward TYPE-I / TYPE-II
  morphs, so it is simple morphable by construction;
* :func:`random_irreducible_module` samples random single-source, single-sink DAGs until Algorithm 1
  leaves more than one edge (a complex module; its remainder is irreducible).
"""
from __future__ import annotations

import numpy as np

from .reduce import reduce_module
from .spec import ModuleSpec, parse_module_spec


def random_simple_module(rng: np.random.Generator, edges: int = 5, kernels=(1, 3)) -> ModuleSpec:
    """A simple-morphable module of ``edges`` edges built by random atomic morphs."""
    es = [["e0", "s", "t", int(rng.choice(kernels))]]
    nb, ne = 0, 0
    while len(es) < edges:
        i = int(rng.integers(len(es)))
        name, src, dst, _ = es[i]
        if rng.random() < 0.5:  # TYPE-I: split the edge through a new blob
            nb += 1
            b = f"b{nb}"
            es[i] = [f"e{ne + 1}", src, b, int(rng.choice(kernels))]
            es.append([f"e{ne + 2}", b, dst, int(rng.choice(kernels))])
            ne += 2
        else:                   # TYPE-II: a parallel edge
            es.append([f"e{ne + 1}", src, dst, int(rng.choice(kernels))])
            ne += 1
    return _spec("simple", es)


def random_irreducible_module(rng: np.random.Generator, blobs: int = 3, max_edges: int = 8,
                              kernels=(1, 3), tries: int = 1000) -> ModuleSpec:
    """A random DAG on ``blobs`` internal blobs (<= ``max_edges`` edges) that is not simple morphable."""
    names = ["s", *[f"b{i}" for i in range(blobs)], "t"]
    for _ in range(tries):
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
        pick = rng.permutation(len(pairs))[: int(rng.integers(blobs + 2, max_edges + 1))]
        chosen = [pairs[p] for p in pick]
        ins = {j for _, j in chosen}
        outs = {i for i, _ in chosen}
        if any(k not in ins or k not in outs for k in range(1, len(names) - 1)):
            continue
        es = [[f"e{n}", names[i], names[j], int(rng.choice(kernels))] for n, (i, j) in enumerate(sorted(chosen))]
        try:
            spec = _spec("irreducible", es)
        except Exception:
            continue
        if not reduce_module(spec).simple:
            return spec
    raise RuntimeError("no irreducible module found; allow more edges")


def _spec(name: str, es) -> ModuleSpec:
    return parse_module_spec({"name": name, "edges": [{"name": n, "from": a, "to": b, "kernel": k}
                                                      for n, a, b, k in es]})
