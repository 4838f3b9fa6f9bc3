"""``torchvision:<model>`` as a network: built by torchvision (``weights=None``) and imported by tracing.

Both the seed registry (as a name family) and :func:`.resolve.resolve_network` (as a SPEC) build
these; this module serves both and imports neither, so they need no lazy imports of each other.
"""
from __future__ import annotations

import torch

from morphnas.morphism.errors import MorphnasError, close_matches, did_you_mean
from morphnas.morphism.graph import Network
from morphnas.morphism.importer import from_torch
from morphnas.spaces.seeds.catalog import Entry, register_resolver

TORCHVISION = "torchvision:"


def check_classes(num_classes: object) -> int | None:
    """``None`` or a positive int; anything else is an error naming the value."""
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise MorphnasError(f"number of classes must be a positive integer, got {num_classes!r}")
    return num_classes


def torchvision_network(name: str, num_classes: int | None = None, seed: int | None = None,
                        input_size: int | None = None) -> Network:
    """torchvision's model ``name`` (without the ``torchvision:`` prefix), traced into the IR."""
    import torchvision  # type: ignore[import-untyped]  # lazy: only torchvision: seeds need it

    num_classes = check_classes(num_classes)
    known = torchvision.models.list_models()
    if name not in known:
        # Close matches by model name, shown with the prefix the user types.
        near = [TORCHVISION + c for c in close_matches(name, known, n=3)]
        hint = did_you_mean(TORCHVISION + name, near, n=3, known=None)
        raise MorphnasError(f"unknown torchvision model {name!r}{hint}; see torchvision.models.list_models()")
    kwargs: dict[str, object] = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    # torchvision initialises from the global RNG; fork it so building a model never moves the
    # caller's random stream, and seed it so the same SPEC and seed give the same weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else int(seed))
        try:
            model = torchvision.models.get_model(name, **kwargs)
        except (TypeError, ValueError) as e:
            raise MorphnasError(f"torchvision:{name}: cannot build it with {kwargs}: {e}") from None
    size = int(input_size or 224)
    net = from_torch(model, (3, size, size))
    net.meta["name"] = f"{TORCHVISION}{name}"
    return net


@register_resolver()
def torchvision_resolver(name: str) -> Entry | None:
    """A registry resolver for ``torchvision:<model>`` names."""
    if not name.startswith(TORCHVISION):
        return None
    model = name[len(TORCHVISION):]

    def build(num_classes: int | None = None, seed: int | None = None, input_size: int | None = None) -> Network:
        return torchvision_network(model, num_classes, seed, input_size)

    return Entry(name, build, {}, f"{model} from torchvision (weights=None), imported by tracing")
