"""The name -> builder catalogue behind the seed registry, and the decorators that fill it.

A seed is one decorated builder: ``@register_seed("tiny_resnet", "ResNet-8 for 1x8x8 digits",
depth=8, width=8)`` above a function that returns a :class:`Network` (stack the decorator for
several names of one builder); a family of names (the paper's ``morph20_1c1``..., ``torchvision:<model>``)
is one decorated resolver (:func:`register_resolver`). Every public module of ``seeds/`` is imported
once (:func:`discover`), and one that registers nothing is an error naming the file: adding a seed
is adding one file. :func:`list_seeds` lists them the way timm lists models (``list_seeds("resnet*")``).
"""
from __future__ import annotations

import fnmatch
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from morphnas.morphism.errors import MorphnasError, did_you_mean
from morphnas.morphism.graph import Network


class UnknownName(MorphnasError):
    """A seed or variant name that is not registered."""


class SeedRegistrationError(MorphnasError):
    """A seed module or name declared wrongly (a name used twice, a module that registers nothing)."""


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
        other = self._entries.get(name)
        if other is not None:
            raise SeedRegistrationError(f"network name {name!r} is registered twice ({other.build.__module__} and "
                                        f"{build.__module__}); give the new seed another name")
        self._entries[name] = Entry(name, build, dict(defaults), description)

    def unregister(self, name: str) -> None:
        """Remove a registered name (tests that add a seed take it away again)."""
        self._entries.pop(name, None)

    def add_resolver(self, resolver: Callable[[str], Entry | None], examples: tuple[str, ...] = ()) -> None:
        """A function recognising a family of names (e.g. ``morph<depth>_<k1>c<k2>``); ``examples``
        are names of the family offered as close matches for misspelt names."""
        self._resolvers.append(resolver)
        self._examples.extend(examples)

    def modules(self) -> set[str]:
        """The modules whose builders or resolvers are registered (what :func:`discover` checks)."""
        return {e.build.__module__ for e in self._entries.values()} | {r.__module__ for r in self._resolvers}

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


REGISTRY = Registry()
FRAMEWORK = ("catalog",)     # modules of seeds/ that register nothing by design
Builder = Callable[..., Network]


def register_seed(name: str, description: str = "", **defaults: Any) -> Callable[[Builder], Builder]:
    """Decorator of a builder: ``create_seed(name)`` calls it with ``defaults`` (overridable)."""
    def deco(build: Builder) -> Builder:
        REGISTRY.register(name, build, description, **defaults)
        return build
    return deco


Resolver = Callable[[str], "Entry | None"]


def register_resolver(examples: tuple[str, ...] = ()) -> Callable[[Resolver], Resolver]:
    """Decorator of a resolver: a function that turns each name of a family into an :class:`Entry`."""
    def deco(resolver: Resolver) -> Resolver:
        REGISTRY.add_resolver(resolver, examples)
        return resolver
    return deco


def discover(package: str = "morphnas.spaces.seeds") -> tuple[str, ...]:
    """Import every public module of ``package``; each must register a seed or a resolver."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in FRAMEWORK:
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        if mod.__name__ not in REGISTRY.modules():
            where = Path(getattr(mod, "__file__", "") or info.name)
            raise SeedRegistrationError(f"seed module {where.name} ({mod.__name__}) registers no seed; decorate its "
                                        f"builder with @register_seed or make the module private (a leading '_')")
    return tuple(REGISTRY.names())


def list_seeds(pattern: str = "*") -> list[str]:
    """Registered seed names matching a shell-style ``pattern`` (``list_seeds("resnet*")``), sorted."""
    return fnmatch.filter(REGISTRY.names(), pattern)
