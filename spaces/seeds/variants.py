"""The modular-morphing paper's named networks (``morph20_1c1``, ``morph56_1c1_half``, ...).

A variant is never built from scratch: it is its seed (``resnet<depth>``) with the ``morph_block``
op applied to the blocks the paper morphs, so it computes exactly the seed's function. The name
grammar is ``morph<depth>_<k1>c<k2>[_2branch][_half]``:

* ``<k1>c<k2>``: one branch of the block's identity shortcut (split into two halves scaled 0.5)
  becomes conv k1xk1 -> BN -> PReLU -> conv k2xk2 -> BN at the block width;
* ``_2branch``: both halves are morphed;
* ``_half``: only the odd-indexed blocks are morphed (index 1, 3, 5, ... within a stage);
* otherwise every block with index >= 1 within its stage (the first block of a stage has a
  projection shortcut and stays as it is).

``PAPER_VARIANTS`` lists the names the paper reports; any depth with a registered ``resnet<depth>``
seed works (``morph32_3c1``...). Keyword overrides (``num_classes``, ``width``, ``input_size``...)
go to the seed builder, ``mode`` to the morph op, ``seed`` to both (weights and morph rng), and
``dtype`` (e.g. ``"float64"`` for exactness checks) to the seed before it is morphed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from morphnas.morphism.blocks import morph_blocks
from morphnas.morphism.errors import MorphnasError, SpecError, did_you_mean
from morphnas.morphism.graph import Network
from morphnas.spaces.seeds.catalog import REGISTRY, Entry, Registry, UnknownName, register_resolver

PAPER_VARIANTS = (
    "morph20_1c1", "morph20_3c1", "morph20_3c3", "morph20_1c1_2branch",
    "morph56_1c1", "morph56_1c1_half", "morph110_1c1", "morph110_1c1_half",
    "morph18_1c1", "morph34_1c1",
)

_NAME = re.compile(r"^morph(?P<depth>\d+)_(?P<k1>\d+)c(?P<k2>\d+)(?P<suffix>(?:_[A-Za-z0-9]+)*)$")
_SUFFIXES = ("2branch", "half")


@dataclass(frozen=True)
class VariantSpec:
    """What a variant name means: the seed and the morph applied to its blocks."""

    name: str
    depth: int
    k1: int
    k2: int
    branches: int = 1
    half: bool = False

    @property
    def seed_name(self) -> str:
        return f"resnet{self.depth}"

    def morph_params(self, mode: str = "auto") -> dict[str, Any]:
        """The ``morph_block`` params (interfaces.md: k1, k2, branches, mode)."""
        return {"k1": self.k1, "k2": self.k2, "branches": self.branches, "mode": mode}

    def selects(self, block: dict) -> bool:
        """Whether the paper morphs this block (an entry of ``net.meta["blocks"]``)."""
        i = int(block["index"])
        return i >= 1 and (not self.half or i % 2 == 1)


class VariantNameError(SpecError):
    """A name that looks like a paper variant but is malformed."""


def parse_variant(name: str) -> VariantSpec | None:
    """The spec of a variant name, ``None`` if ``name`` is not of the form ``morph<depth>_...``.

    Raises :class:`VariantNameError` for names of that form with bad kernel sizes or suffixes.
    """
    m = _NAME.match(name)
    if m is None:
        return None
    k1, k2 = int(m["k1"]), int(m["k2"])
    for k in (k1, k2):
        if k < 1 or k % 2 == 0:
            raise VariantNameError(f"{name}: kernel sizes must be odd and positive (1, 3, 5...), got {k1}c{k2}")
    suffixes = [s for s in m["suffix"].split("_") if s]
    for s in suffixes:
        if s not in _SUFFIXES:
            hint = did_you_mean(f"_{s}", [f"_{x}" for x in _SUFFIXES], known=None)
            raise VariantNameError(f"{name}: unknown suffix '_{s}'{hint} (suffixes are _2branch and _half)")
    if len(set(suffixes)) != len(suffixes):
        raise VariantNameError(f"{name}: a suffix is repeated")
    return VariantSpec(name, int(m["depth"]), k1, k2, 2 if "2branch" in suffixes else 1, "half" in suffixes)


def morph_sites(net: Network, spec: VariantSpec) -> list[str]:
    """The identity-shortcut edges of the blocks ``spec`` morphs, in network order."""
    blocks = net.meta.get("blocks")
    if not blocks:
        raise MorphnasError(f"{spec.name}: the seed {spec.seed_name} has no residual blocks recorded in its meta")
    return [b["shortcut"] for b in blocks if spec.selects(b) and b.get("shortcut")]


def derive_variant(seed_net: Network, spec: VariantSpec, mode: str = "auto", seed: int = 0) -> Network:
    """Apply ``morph_block`` to every block ``spec`` selects; the result computes ``seed_net``'s function.

    Each block gets its own morph seed (``seed`` + its position) so re-deriving is bit-identical.
    """
    sites = morph_sites(seed_net, spec)
    if not sites:
        raise MorphnasError(f"{spec.name}: the seed has no block with index >= 1 in a stage"
                            f"{' (odd index)' if spec.half else ''}, so there is nothing to morph; "
                            "use a deeper seed (resnet20 or more)")
    # One copy and one lint for all blocks; identical to apply_op per block with seeds seed + i.
    net, recs = morph_blocks(seed_net, sites, spec.morph_params(mode), seed=seed)
    records = [r.to_json() for r in recs]
    net.meta["name"] = spec.name
    net.meta["variant"] = {"seed": spec.seed_name, "k1": spec.k1, "k2": spec.k2, "branches": spec.branches,
                           "half": spec.half, "mode": mode, "morphed_blocks": sites, "records": records}
    return net


@register_resolver(examples=PAPER_VARIANTS)
def resolve_variant(name: str, registry: Registry = REGISTRY) -> Entry | None:
    """The registry resolver turning variant names into entries that derive them from their seed."""
    spec = parse_variant(name)
    if spec is None:
        return None
    try:
        registry.entry(spec.seed_name)
    except UnknownName:
        seeds = sorted(n[6:] for n in registry.names() if n.startswith("resnet") and n[6:].isdigit())
        raise UnknownName(f"{name}: no seed {spec.seed_name!r} to derive it from; variants exist for "
                          f"depths {', '.join(sorted(seeds, key=int))}") from None

    def build(mode: str = "auto", seed: int = 0, dtype: Any = None, **seed_overrides: Any) -> Network:
        # dtype reaches the seed before the morphs: a float64 variant is solved and stored in float64.
        seed_net = registry.create(spec.seed_name, seed=seed, dtype=dtype, **seed_overrides)
        return derive_variant(seed_net, spec, mode=mode, seed=seed)

    return Entry(name, build, {}, f"{spec.seed_name} morphed: {spec.k1}c{spec.k2}"
                 f"{', both branches' if spec.branches == 2 else ''}{', odd blocks only' if spec.half else ''}")
