"""The engine's core layer kinds under one import path: ``from .layers import Conv2d``.

Each kind is one file in :mod:`.kinds` (spec, runtime module, drawing label, import rules; how to
add one is said there). This module re-exports the base class, the shape helpers and the kinds of
convolutional networks; :mod:`.layers_extra` re-exports the kinds beyond ResNets.

Shapes are tuples without the batch dimension: ``(C, H, W)`` for feature maps, ``(F,)`` for flat.
"""
from __future__ import annotations

from .kinds.activation import Activation
from .kinds.base import LayerSpec, Shape, conv_size, need_channels, need_chw, registered_kinds
from .kinds.batchnorm2d import BatchNorm2d
from .kinds.conv2d import Conv2d
from .kinds.crop import Crop
from .kinds.dropout import Dropout
from .kinds.flatten import Flatten
from .kinds.global_avg_pool import GlobalAvgPool
from .kinds.identity import Identity
from .kinds.linear import Linear
from .kinds.pact import PAct
from .kinds.pad import Pad
from .kinds.pool import AvgPool2d, MaxPool2d
from .kinds.prelu import PReLU

__all__ = ["Activation", "AvgPool2d", "BatchNorm2d", "Conv2d", "Crop", "Dropout", "Flatten", "GlobalAvgPool",
           "Identity", "LayerSpec", "Linear", "MaxPool2d", "PAct", "PReLU", "Pad", "Shape", "conv_size",
           "need_channels", "need_chw", "registered_kinds"]
