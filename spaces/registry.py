"""The seed registry: an owned name -> builder mapping with ``create_seed(name, **overrides)``.

Names resolve once, here; unknown names get close-match suggestions. Registered seeds:

* ``resnet20/32/44/56/110``: CIFAR ResNets as the modular-morphing paper trains them (PReLU
  everywhere, projection shortcuts when downsampling, no conv bias; ``num_classes`` 10 or 100);
* ``resnet18/34``: ImageNet ResNets (3x224x224, 1000 classes, torchvision's layout and names);
* small networks for 8x8-32x32 inputs: ``tiny_resnet`` and ``small_cnn`` (1x8x8, the digits
  quickstart), ``tiny_resnet32`` and ``small_cnn32`` (3x32x32);
* ``densenet_bc`` / ``mobilenet_v2`` (3x32x32) and ``tiny_densenet`` / ``tiny_mobilenet`` (1x8x8):
  networks of concatenations and of inverted residuals (:mod:`.seed_densenet`, :mod:`.seed_mobilenet`);
* ``mlp``: a multilayer perceptron for tabular data (input ``(features,)``, :mod:`.seed_mlp`);
* ``torchvision:<model>``: any torchvision model, traced into the IR (``weights=None``).

The classes live in :mod:`.catalog`; this module fills the default catalogue. A resolver adds
the paper's variants (``morph20_1c1``..., see :mod:`.variants`), derived from
their seed by morph ops. :func:`morphnas.spaces.resolve.resolve_network` (what the CLI and
configs use) also loads saved network directories.
"""
from __future__ import annotations

from typing import Any

from morphnas.morphism.graph import Network

from . import builders, seed_densenet, seed_mlp, seed_mobilenet, variants
from .catalog import Entry, Registry, UnknownName
from .torchvision_seed import torchvision_resolver

__all__ = ["Entry", "REGISTRY", "Registry", "UnknownName", "all_names", "create_network", "create_seed"]


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
    r.register("densenet_bc", seed_densenet.densenet_bc, "DenseNet-BC-40 (growth 12) for 3x32x32 images",
               depth=40, growth=12)
    r.register("tiny_densenet", seed_densenet.densenet_bc, "DenseNet-BC-11 (growth 4, 2 blocks) for 1x8x8 digits",
               depth=11, growth=4, blocks=2, in_channels=1, input_size=8)
    r.register("mobilenet_v2", seed_mobilenet.mobilenet_v2, "MobileNetV2 (CIFAR strides) for 3x32x32 images")
    r.register("tiny_mobilenet", seed_mobilenet.mobilenet_v2, "MobileNetV2-style net (3 stages) for 1x8x8 digits",
               in_channels=1, input_size=8, settings=seed_mobilenet.TINY_SETTINGS, stem_channels=8,
               last_channel=32)
    r.register("mlp", seed_mlp.mlp, "MLP for tabular data: (64,) features, hidden 64/32, ReLU")
    r.add_resolver(variants.resolver(r), variants.PAPER_VARIANTS)
    r.add_resolver(torchvision_resolver)
    return r


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
    return REGISTRY.names() + list(variants.PAPER_VARIANTS)
