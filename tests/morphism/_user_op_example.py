"""A user's own morph ops, as a user would write them outside morphnas (a fixture of test_user_ops.py).

``ScaleIdentity`` ("scale_identity") is exact: at a linear or (ungrouped) conv edge it multiplies the
layer's weight and bias by ``2**power`` and inserts after it an identity 1x1 conv (or linear layer)
scaled by ``2**-power``. Scaling by a power of two is exact in binary floating point, so the child
computes the parent's function bit for bit (up to the extra layer's zero terms). ``BrokenScale``
("scale_broken") undoes the scaling slightly wrong (a relative error of about 1e-3), and is not
decorated, so :func:`load_op` registers it itself. The other classes are the mistakes the tests load.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from morphnas.morphism.errors import NotApplicable
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Conv2d, Linear
from morphnas.morphism.ops import MorphOp, register_op
from morphnas.morphism.schema import rule


@dataclass(frozen=True)
class ScaleParams:
    power: int = field(default=1, metadata=rule(ge=0, le=4))   # the layer is scaled by 2**power


def _scalable(layer) -> bool:
    return isinstance(layer, Linear) or (isinstance(layer, Conv2d) and layer.groups == 1)


@register_op
class ScaleIdentity(MorphOp):
    name = "scale_identity"
    site_kind = "edge"
    description = "scale a linear/conv layer by 2**power and undo it with an identity layer after it"
    Params = ScaleParams
    undo = 1.0   # BrokenScale gets this wrong

    def sites(self, net: Network) -> list[str]:
        return sorted(e.name for e in net.edges() if _scalable(e.layer))

    def check(self, net: Network, site: str, params: ScaleParams) -> None:
        if not net.has_edge(site):
            raise NotApplicable(f"{self.name}: no edge named {site!r} in the network")
        if not _scalable(net.edge(site).layer):
            raise NotApplicable(f"{self.name}: edge {site!r} is a {net.edge(site).layer.kind}, "
                                "not a linear or ungrouped conv2d")

    def _apply(self, net: Network, site: str, p: ScaleParams, rng: np.random.Generator):
        child = net.copy()
        e = child.edge(site)
        tensors = child.params[site]
        position = ([x.name for x in child.in_edges(e.dst)].index(site)
                    if child.join(e.dst) == "concat" else None)
        child.remove_edge(site)
        mid = child.add_blob(child.fresh_name(f"{site}_scaled", blob=True))
        scale = 2.0 ** p.power
        child.add_edge(e.src, mid, e.layer, site, params={k: t * scale for k, t in tensors.items()})
        w = tensors["weight"]
        c = w.shape[0]
        eye = torch.eye(c, dtype=w.dtype) * (self.undo / scale)
        if isinstance(e.layer, Linear):
            layer, weight = Linear(c, c, bias=False), eye
        else:
            layer, weight = Conv2d(c, c, 1), eye.reshape(c, c, 1, 1)
        name = child.add_edge(mid, e.dst, layer, child.fresh_name(f"{site}_unscale"), params={"weight": weight},
                              position=position)
        return child, {"mode": "exact", "new_edges": (name,), "notes": f"x{scale:g} then x{1 / scale:g}"}


class BrokenScale(ScaleIdentity):
    """Not function-preserving: the inverse scale is off by 1e-3 (and it is not decorated)."""

    name = "scale_broken"
    undo = 1.0 + 1e-3


class NotAnOp:
    """A class that is no MorphOp."""

    name = "not_an_op"


class Nameless(ScaleIdentity):
    name = ""


class WidenClash(ScaleIdentity):
    """Takes a built-in op's name."""

    name = "widen"


class NeedsArgs(ScaleIdentity):
    name = "needs_args"

    def __init__(self, config: str):
        self.config = config


class NoSites(ScaleIdentity):
    """Applies nowhere."""

    name = "no_sites"

    def sites(self, net: Network) -> list[str]:
        return []


class BadSites(ScaleIdentity):
    name = "bad_sites"

    def sites(self, net: Network) -> list[str]:
        return [1, 2]  # type: ignore[list-item]


class RaisingSites(ScaleIdentity):
    name = "raising_sites"

    def sites(self, net: Network) -> list[str]:
        raise RuntimeError("boom\nsecond line")


class Mutating(ScaleIdentity):
    """Modifies its input network (a bug every op must avoid)."""

    name = "mutating"

    def _apply(self, net: Network, site: str, p: ScaleParams, rng: np.random.Generator):
        child, extra = super()._apply(net, site, p, rng)
        net.meta["touched"] = True   # the parent's annotations change
        return child, extra


class Unseeded(ScaleIdentity):
    """Draws randomness outside the rng it is given: the same seed gives different children."""

    name = "unseeded"
    _calls = 0

    def _apply(self, net: Network, site: str, p: ScaleParams, rng: np.random.Generator):
        child, extra = super()._apply(net, site, p, rng)
        Unseeded._calls += 1   # a hidden counter, not the rng: each call nudges an off-diagonal zero differently
        child.params[extra["new_edges"][0]]["weight"].view(-1)[1] += 1e-13 * Unseeded._calls
        return child, extra


OP = ScaleIdentity   # an alias: the same op through another path
