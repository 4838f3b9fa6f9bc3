"""The op conformance check, usable before a search starts: :func:`check_conformance`.

The same properties the conformance suite (``tests/morphism/test_ops_conformance.py``) checks for
every built-in op, for one op on one network, at up to ``sites`` sampled sites with the op's example
parameters (``op.example_params``), on a copy of the network with random BN statistics/affine and
activation slopes (:func:`~morphnas.morphism.perturb.perturb`, so a trivially identity-looking
layer cannot hide a mistake), in float64:

* ``sites(net)`` returns a list of site names of the op's ``site_kind`` (and does not raise);
* the child computes the parent's function: relative output error <= :data:`F64_TOL` (not for
  ``approximate`` ops, which report their error instead; an exact op must not record ``approximate``);
* the input network is unchanged, the child lints, the record names the op and the site and is JSON;
* the same seed gives the same child, replaying the record rebuilds it, save/load round-trips it.

The first failure raises one :class:`ConformanceError` line naming the op, the site, the failed
property and the measured number. The helpers :func:`rel_err` and :func:`same_tensors` are the
ones the test suite uses too.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from ..errors import LintError, MorphnasError, NotApplicable
from ..graph import Network
from ..lint import lint_problems
from ..perturb import perturb
from ..serialize import load_network, save_network
from ..verify import output_diff
from ._user import first_line, load_op
from .base import MorphOp, MorphRecord, OpRegistrationError, OpRegistry, default_registry, registered, replay

F64_TOL = 1e-10   # exact ops: float64 max relative output error
F32_TOL = 1e-5    # exact ops: float32 max relative output error


class ConformanceError(MorphnasError):
    """An op fails a property every morph op must have; the message names the op, the site, the
    property and the measured number."""


def rel_err(a: Network, b: Network, dtype: torch.dtype, batch: int = 2, seed: int = 0) -> float:
    """Max relative output error of ``b`` against ``a`` in eval mode, on ``batch`` seeded N(0, 1) inputs."""
    return output_diff(a, b, dtype=dtype, batch=batch, seed=seed).rel_err


def same_tensors(a: Network, b: Network) -> bool:
    """Same edges (names, ends, layers) and bit-identical tensors."""
    if [(e.name, e.src, e.dst, e.layer) for e in a.edges()] != [(e.name, e.src, e.dst, e.layer) for e in b.edges()]:
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def check_conformance(op: MorphOp | type | str, net: Network, *, sites: int = 2, seed: int = 0,
                      perturbed: bool = True) -> None:
    """Raise :class:`ConformanceError` if ``op`` (an op, an op class, a registered name or an import
    path ``"package.module:ClassName"``) fails a conformance property on ``net``; return ``None`` if
    it passes at every sampled site. ``seed`` draws the sites and perturbs the copy of ``net``
    (``perturbed=False`` checks ``net``'s own tensors)."""
    mop = _as_op(op)
    name = mop.name
    net_name = str(net.meta.get("name", "network"))
    if isinstance(sites, bool) or not isinstance(sites, int) or sites < 1:
        raise ConformanceError(f"check_conformance of op {name}: sites must be an int >= 1, got {sites!r}")
    parent = (perturb(net, seed=seed) if perturbed else net.copy()).to(torch.float64)
    listed = _sites(mop, parent, net_name)
    rng = np.random.default_rng(seed)
    chosen = sorted(str(s) for s in rng.choice(listed, size=min(sites, len(listed)), replace=False))
    reg = OpRegistry()   # replay looks the op up by name: this op, whatever the default registry holds
    reg.register(mop)
    for i, site in enumerate(chosen):
        _check_site(mop, parent, site, seed + i, reg, f"op {name} at site {site!r} of {net_name}")


# ------------------------------------------------------------------------------------------ steps
def _fail(where: str, prop: str, detail: str) -> NoReturn:
    raise ConformanceError(f"{where} fails '{prop}': {detail}") from None   # one line, no chained traceback


def _as_op(op: Any) -> MorphOp:
    if isinstance(op, str):
        return default_registry().get(load_op(op) if ":" in op else op)
    if isinstance(op, type) and issubclass(op, MorphOp):
        try:
            return registered(op)
        except OpRegistrationError:
            pass
        try:
            op = op()
        except Exception as e:  # noqa: BLE001 - a user's constructor raising is reported, one line
            raise ConformanceError(f"op class {op.__qualname__}: constructing it raised {type(e).__name__}: "
                                   f"{first_line(e)}; an op class must construct with no arguments") from None
    if not isinstance(op, MorphOp):
        raise ConformanceError(f"check_conformance needs a MorphOp (an op, its class, its registered name or "
                               f"'package.module:ClassName'), got {op!r}")
    if not isinstance(getattr(op, "name", None), str) or not op.name:
        raise ConformanceError(f"op class {type(op).__qualname__} has no name; set the class attribute "
                               f"name = '<op name>'")
    if op.site_kind not in ("edge", "blob"):
        raise ConformanceError(f"op {op.name} has site_kind {op.site_kind!r}; set it to 'edge' or 'blob'")
    return op


def _sites(op: MorphOp, net: Network, net_name: str) -> list[str]:
    where = f"op {op.name} on {net_name}"
    try:
        listed = op.sites(net)
    except Exception as e:  # noqa: BLE001 - whatever sites() raises is the finding
        _fail(where, "sites() returns the sites", f"sites(net) raised {type(e).__name__}: {first_line(e)}; "
              "it must return a (possibly empty) list of site names")
    if not isinstance(listed, (list, tuple)):
        _fail(where, "sites() returns the sites", f"sites(net) returned a {type(listed).__name__}, not a list "
              "of site names")
    bad = [s for s in listed if not isinstance(s, str)]
    if bad:
        _fail(where, "sites() returns the sites", f"sites(net) returned {len(bad)} non-string site(s), e.g. "
              f"{bad[0]!r} ({type(bad[0]).__name__}); return edge or blob names")
    universe = set(net.edge_names()) if op.site_kind == "edge" else set(net.graph.nodes)
    unknown = [s for s in listed if s not in universe]
    if unknown:
        _fail(where, "sites() returns the sites", f"sites(net) lists {unknown[0]!r}, which is not a "
              f"{op.site_kind} of the network ({len(unknown)} such); return {op.site_kind} names (site_kind)")
    if not listed:
        raise ConformanceError(f"op {op.name} has no site on the seed network {net_name}; check it on a network "
                               f"where it applies, or fix its sites() if it should apply here")
    return list(dict.fromkeys(listed))


def _apply(op: MorphOp, net: Network, site: str, params: Any, seed: int, where: str) -> tuple[Network, MorphRecord]:
    try:
        return op.apply(net, site, params, seed)
    except NotApplicable as e:
        _fail(where, "listed sites apply", f"sites() lists it but applying it with {params!r} is refused: "
              f"{first_line(e)}; list only sites where check() passes, or give example_params() that fit")
    except LintError as e:
        _fail(where, "child lints", f"{len(e.problems)} problem(s), first: {e.problems[0] if e.problems else e}")
    except Exception as e:  # noqa: BLE001 - whatever apply raises is the finding
        _fail(where, "apply works", f"apply raised {type(e).__name__}: {first_line(e)}")


def _check_site(op: MorphOp, parent: Network, site: str, seed: int, reg: OpRegistry, where: str) -> None:
    try:
        params = op.example_params(parent, site)
    except Exception as e:  # noqa: BLE001 - whatever example_params raises is the finding
        _fail(where, "example parameters", f"example_params raised {type(e).__name__}: {first_line(e)}")
    where = f"{where} with {params}"
    before = parent.copy()
    child, rec = _apply(op, parent, site, params, seed, where)
    if not same_tensors(parent, before) or parent.meta != before.meta:
        _fail(where, "input unchanged", "apply modified the parent network; build the child from net.copy()")
    problems = lint_problems(child)
    if problems:
        _fail(where, "child lints", f"{len(problems)} problem(s), first: {problems[0]}")
    if not isinstance(rec, MorphRecord) or rec.op != op.name or rec.site != site:
        _fail(where, "record names the op and site", f"apply returned the record {rec!r}")
    try:
        record = json.loads(json.dumps(rec.to_json(), allow_nan=False))
    except (TypeError, ValueError) as e:
        _fail(where, "record is JSON", f"{first_line(e)}; keep only plain values in the record's fields")
    if not op.approximate:
        if rec.mode == "approximate":
            _fail(where, "exact with example parameters", f"the record's mode is 'approximate' (error {rec.error}) "
                  "but the op does not declare approximate = True")
        err = rel_err(parent, child, torch.float64)
        if not err <= F64_TOL:   # NaN fails too
            _fail(where, "function preserved", f"float64 relative output error {err:.3g} > {F64_TOL:g}; the child "
                  "must compute the parent's function (or declare the op approximate = True)")
    again, _ = _apply(op, parent, site, params, seed, where)
    if not same_tensors(child, again):
        _fail(where, "same seed -> same child", f"applying it twice with seed {seed} gave different children; "
              "draw all randomness from the rng apply is given")
    try:
        rebuilt = replay(parent, [record], reg)
    except Exception as e:  # noqa: BLE001 - whatever replay raises is the finding
        _fail(where, "replay rebuilds", f"replaying the record raised {type(e).__name__}: {first_line(e)}")
    if not same_tensors(rebuilt, child):
        _fail(where, "replay rebuilds", "replaying the record gave a different child; record every parameter "
              "the child depends on")
    with tempfile.TemporaryDirectory(prefix="morphnas-conformance-") as tmp:
        try:
            loaded = load_network(save_network(child, Path(tmp) / "child"))
        except Exception as e:  # noqa: BLE001 - whatever save/load raises is the finding
            _fail(where, "save/load round-trip", f"{type(e).__name__}: {first_line(e)}")
    if not same_tensors(loaded, child) or loaded.meta != child.meta:
        _fail(where, "save/load round-trip", "the loaded child differs from the saved one")
