"""The seed registry: an owned name -> builder mapping with ``create_seed(name, **overrides)``.

Names resolve once, here; unknown names get close-match suggestions. Registered seeds:

* ``resnet20/32/44/56/110``: CIFAR ResNets as the modular-morphing paper trains them (PReLU
  everywhere, projection shortcuts when downsampling, no conv bias; ``num_classes`` 10 or 100);
* ``resnet18/34``: ImageNet ResNets (3x224x224, 1000 classes, torchvision's layout and names);
* small networks for 8x8-32x32 inputs: ``tiny_resnet`` and ``small_cnn`` (1x8x8, the digits
  quickstart), ``tiny_resnet32`` and ``small_cnn32`` (3x32x32);
* ``densenet_bc`` / ``mobilenet_v2`` (3x32x32) and ``tiny_densenet`` / ``tiny_mobilenet`` (1x8x8):
  networks of concatenations and of inverted residuals (``seeds/densenet.py``, ``seeds/mobilenet.py``);
* ``mlp``: a multilayer perceptron for tabular data (input ``(features,)``, ``seeds/mlp.py``);
* ``tiny_vit``: a pre-LN vision transformer for 1x28x28 images (``seeds/vit.py``);
* ``torchvision:<model>``: any torchvision model, traced into the IR (``weights=None``).

Each seed is a decorated builder in one file of ``seeds/`` (:func:`register_seed`); this module
imports them all (:func:`~morphnas.spaces.seeds.catalog.discover`). A resolver adds the paper's
variants (``morph20_1c1``..., see :mod:`morphnas.spaces.seeds.variants`), derived from their seed by
morph ops. :func:`morphnas.spaces.resolve.resolve_network` (what the CLI and
configs use) also loads saved network directories.
"""
from __future__ import annotations

from typing import Any

from morphnas.morphism.graph import Network
from morphnas.spaces.seeds.catalog import (
    REGISTRY,
    Entry,
    Registry,
    SeedRegistrationError,
    UnknownName,
    discover,
    list_seeds,
    register_resolver,
    register_seed,
)
from morphnas.spaces.seeds.variants import PAPER_VARIANTS

__all__ = ["Entry", "REGISTRY", "Registry", "SeedRegistrationError", "UnknownName", "all_names", "create_network",
           "create_seed", "list_seeds", "register_resolver", "register_seed"]

discover()


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
    return REGISTRY.names() + list(PAPER_VARIANTS)
