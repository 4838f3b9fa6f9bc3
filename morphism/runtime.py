"""The runtime core of every layer module, torch only: the head of each exported model's runtime.

Why torch only: the same code must build a layer inside morphnas (``LayerSpec.module()``, used by
:mod:`.compile`) and inside an exported model, where morphnas is not installed. Each layer kind's
``nn.Module`` lives in its kind file (:mod:`.kinds`) and may use only the names this file defines
(``torch``, ``nn``, ``F``, ``ACTIVATIONS``, ...); registering the kind puts it in ``BUILDERS``.
``morphnas export`` writes this file followed by the source of every registered kind's runtime
(:func:`.kinds.runtime_source`) as ``morphnas_runtime.py`` beside ``load_model.py``, so the two can
never compute a layer differently. Do not import morphnas here.

:func:`build_layer` maps a layer's JSON form (``{"kind": ..., fields}``) to its module.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

# The export format written by ``morphnas export`` and read by the standalone loader.
EXPORT_FORMAT = "morphnas-export"
EXPORT_VERSION = 1

ACTIVATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "softplus": F.softplus,
    "leaky_relu": F.leaky_relu,
    "relu6": F.relu6,
    "hardtanh": F.hardtanh,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
}

# Kind name -> its runtime: an ``nn.Module`` class, or a function returning a module, called with the
# layer's fields as keywords. Filled by registering the kinds (inside morphnas) or by the kinds'
# section that follows this file in an export; never written by hand.
BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def build_layer(spec: dict[str, Any]) -> nn.Module:
    """The module for one layer's JSON form (``kind`` plus its fields); state-dict keys are the
    layer's parameter names."""
    fields = dict(spec)
    kind = fields.pop("kind", None)
    builder = BUILDERS.get(str(kind))
    if builder is None:
        raise ValueError(f"unknown layer kind {kind!r}; known: {', '.join(sorted(BUILDERS))}")
    return builder(**fields)
