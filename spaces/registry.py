"""The seed registry: an owned name -> builder mapping with ``create_network(name, **overrides)``.

Names resolve once, here; unknown names get close-match suggestions. This is the minimal core:
``spaces/`` extends it with paper variants (``morph20_1c1``...) and imported torchvision models.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

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

    def register(self, name: str, build: Callable[..., Network], description: str = "", **defaults: Any) -> None:
        if name in self._entries:
            raise ValueError(f"network name {name!r} registered twice")
        self._entries[name] = Entry(name, build, dict(defaults), description)

    def add_resolver(self, resolver: Callable[[str], Entry | None]) -> None:
        """A function recognising a family of names (e.g. ``morph<depth>_<k1>c<k2>``)."""
        self._resolvers.append(resolver)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        if name in self._entries:
            return self._entries[name]
        for r in self._resolvers:
            e = r(name)
            if e is not None:
                return e
        close = difflib.get_close_matches(name, self._entries, n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownName(f"unknown network name {name!r}; {hint}known: {', '.join(self.names())}")

    def create(self, name: str, **overrides: Any) -> Network:
        e = self.entry(name)
        kwargs = {**e.defaults, **{k: v for k, v in overrides.items() if v is not None}}
        try:
            net = e.build(**kwargs)
        except TypeError as err:
            raise MorphnasError(f"{name}: bad option(s) {sorted(overrides)}: {err}") from None
        net.meta.setdefault("name", name)
        return net


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
    r.register("small_cnn", builders.plain_cnn, "plain CNN for 1x8x8 digits", in_channels=1, input_size=8)
    return r


REGISTRY = _default()


def create_network(name: str, **overrides: Any) -> Network:
    """Build a registered network: ``create_network("resnet20", num_classes=100)``."""
    return REGISTRY.create(name, **overrides)
