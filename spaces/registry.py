"""The seed registry: an owned name -> builder mapping with ``create_seed(name, **overrides)``.

Names resolve once, here; unknown names get close-match suggestions. Registered seeds:

* ``resnet20/32/44/56/110``: CIFAR ResNets as the modular-morphing paper trains them (PReLU
  everywhere, projection shortcuts when downsampling, no conv bias; ``num_classes`` 10 or 100);
* ``resnet18/34``: ImageNet ResNets (3x224x224, 1000 classes, torchvision's layout and names);
* small networks for 8x8-32x32 inputs: ``tiny_resnet`` and ``small_cnn`` (1x8x8, the digits
  quickstart), ``tiny_resnet32`` and ``small_cnn32`` (3x32x32);
* ``torchvision:<model>``: any torchvision model, traced into the IR (``weights=None``).

A resolver adds the paper's variants (``morph20_1c1``..., see :mod:`.variants`), derived from
their seed by morph ops. :func:`morphnas.spaces.resolve.resolve_network` (what the CLI and
configs use) also loads saved network directories.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.graph import Network

from . import builders


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
        close = difflib.get_close_matches(name, [*self._entries, *self._examples], n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownName(f"unknown network name {name!r}; {hint}known: {', '.join(self.names())}, "
                          "paper variants morph<depth>_<k1>c<k2>[_2branch][_half] (e.g. morph20_1c1), "
                          "torchvision:<model>, or a saved network directory")

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
            close = difflib.get_close_matches(k, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise MorphnasError(f"{name}: unknown option {k!r}; {hint}options: {', '.join(known)}")


def _default() -> Registry:
    r = Registry()
    for depth in (20, 32, 44, 56, 110):
        r.register(f"resnet{depth}", builders.cifar_resnet, f"CIFAR ResNet-{depth} (PReLU, projection shortcuts)",
                   depth=depth)
    for depth in (18, 34):
        r.register(f"resnet{depth}", builders.imagenet_resnet, f"ImageNet ResNet-{depth} (torchvision layout)",
                   depth=depth)
    r.register("tiny_resnet", builders.cifar_resnet, "ResNet-8 for 1x8x8 digits (width 8)",
               depth=8, width=8, in_channels=1, input_size=8)
    r.register("tiny_resnet32", builders.cifar_resnet, "ResNet-8 for 3x32x32 images (width 16)",
               depth=8, width=16, in_channels=3, input_size=32)
    r.register("small_cnn", builders.plain_cnn, "plain CNN for 1x8x8 digits", in_channels=1, input_size=8)
    r.register("small_cnn32", builders.plain_cnn, "plain CNN for 3x32x32 images (widths 32/64/128)",
               in_channels=3, input_size=32, widths=(32, 64, 128))
    from . import variants  # late: variants name Entry, defined above
    r.add_resolver(variants.resolver(r), variants.PAPER_VARIANTS)
    r.add_resolver(_torchvision_resolver)
    return r


def _torchvision_resolver(name: str) -> Entry | None:
    """``torchvision:<model>`` as a seed name: built and imported by spaces/resolve.py."""
    if not name.startswith("torchvision:"):
        return None

    def build(num_classes: int | None = None, seed: int | None = None, input_size: int | None = None) -> Network:
        from .resolve import resolve_network  # late: resolve imports this module
        return resolve_network(name, num_classes=num_classes, seed=seed, input_size=input_size)

    return Entry(name, build, {}, f"{name[12:]} from torchvision (weights=None), imported by tracing")


REGISTRY = _default()


def create_network(name: str, **overrides: Any) -> Network:
    """Build a registered network: ``create_network("resnet20", num_classes=100)``."""
    return REGISTRY.create(name, **overrides)


def create_seed(name: str, **overrides: Any) -> Network:
    """Build a seed or paper variant by name (same as :func:`create_network`).

    ``overrides`` replace the builder's defaults: ``create_seed("resnet56", num_classes=100)``,
    ``create_seed("morph20_1c1", width=8, input_size=8, in_channels=1)``. Unknown names raise
    :class:`UnknownName` with close matches.
    """
    return REGISTRY.create(name, **overrides)


def all_names() -> list[str]:
    """Every registered seed plus the paper's variant names (for listings and describe-all tests)."""
    from .variants import PAPER_VARIANTS
    return REGISTRY.names() + list(PAPER_VARIANTS)
