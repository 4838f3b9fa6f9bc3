"""The name -> builder catalogue behind the seed registry: :class:`Entry`, :class:`Registry`, :class:`UnknownName`.

Why apart from :mod:`.registry` (which fills the default catalogue): the resolvers that add name
families — the paper's variants (:mod:`.variants`) and torchvision models (:mod:`.torchvision_seed`)
— need these classes, and the default registry needs them; with the classes here each of those
modules imports this one and the registry imports them, one way only.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from morphnas.morphism.errors import MorphnasError, did_you_mean
from morphnas.morphism.graph import Network


class UnknownName(MorphnasError):
    """A seed or variant name that is not registered."""


@dataclass(frozen=True)
class Entry:
    name: str
    build: Callable[..., Network]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


class Registry:
    """Names of buildable networks. ``create(name, **overrides)`` builds one."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._resolvers: list[Callable[[str], Entry | None]] = []
        self._examples: list[str] = []

    def register(self, name: str, build: Callable[..., Network], description: str = "", **defaults: Any) -> None:
        if name in self._entries:
            raise ValueError(f"network name {name!r} registered twice")
        self._entries[name] = Entry(name, build, dict(defaults), description)

    def add_resolver(self, resolver: Callable[[str], Entry | None], examples: tuple[str, ...] = ()) -> None:
        """A function recognising a family of names (e.g. ``morph<depth>_<k1>c<k2>``); ``examples``
        are names of the family offered as close matches for misspelt names."""
        self._resolvers.append(resolver)
        self._examples.extend(examples)

    def names(self) -> list[str]:
        """Registered names (resolver families such as ``morph20_1c1`` are not enumerated)."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def entry(self, name: str) -> Entry:
        if name in self._entries:
            return self._entries[name]
        for r in self._resolvers:
            e = r(name)
            if e is not None:
                return e
        hint = did_you_mean(name, [*self._entries, *self._examples], known=None)
        raise UnknownName(f"unknown network name {name!r}{hint} (known: {', '.join(self.names())}, "
                          "paper variants morph<depth>_<k1>c<k2>[_2branch][_half] (e.g. morph20_1c1), "
                          "torchvision:<model>, or a saved network directory)")

    def create(self, name: str, **overrides: Any) -> Network:
        e = self.entry(name)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        dtype = overrides.pop("dtype", None)
        takes_dtype = "dtype" in inspect.signature(e.build).parameters
        if dtype is not None:
            dtype = _dtype(name, dtype)
            if takes_dtype:
                overrides["dtype"] = dtype
        _check_options(name, e.build, overrides)
        kwargs = {**e.defaults, **overrides}
        try:
            net = e.build(**kwargs)
        except TypeError as err:
            if "argument" not in str(err):  # a bug inside the builder, not a bad option name
                raise
            raise MorphnasError(f"{name}: bad option(s) {sorted(overrides)}: {err}") from None
        if dtype is not None and not takes_dtype:
            net = net.to(dtype)
        net.meta.setdefault("name", name)
        # The seed's own edges: drawings highlight what morphs add (see spaces/draw.py).
        net.meta.setdefault("seed_edges", net.edge_names())
        return net


def _dtype(name: str, value: Any) -> torch.dtype:
    """``"float64"`` / ``torch.float64`` -> ``torch.float64`` (float64 builds are for exactness checks)."""
    if isinstance(value, torch.dtype):
        return value
    d = getattr(torch, str(value), None)
    if not isinstance(d, torch.dtype) or not d.is_floating_point:
        raise MorphnasError(f"{name}: option dtype must be a floating dtype such as float32 or float64, got {value!r}")
    return d


def _check_options(name: str, build: Callable[..., Network], overrides: dict[str, Any]) -> None:
    """Name an unknown option and its close match before the builder sees it."""
    sig = inspect.signature(build)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return  # forwards its options (a variant to its seed), which checks them
    known = [*sig.parameters, "dtype"]
    for k in overrides:
        if k not in known:
            raise MorphnasError(f"{name}: unknown option {k!r}{did_you_mean(k, known, known=None)} "
                                f"(options: {', '.join(known)})")
