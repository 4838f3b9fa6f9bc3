"""The layer kinds beyond ResNets under one import path (issue 14): channel slices and shuffles,
channel LayerNorm, layer scale, stochastic depth and adaptive pooling.

Each is one file in :mod:`.kinds`. Why these exist as kinds: torchvision's DenseNets, ShuffleNets,
EfficientNets and ConvNeXts are built from them, and the IR must compute each exactly so an import
matches the model.
"""
from __future__ import annotations

from .kinds.adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from .kinds.channel_layernorm import ChannelLayerNorm
from .kinds.channel_shuffle import ChannelShuffle
from .kinds.channel_slice import ChannelSlice
from .kinds.layer_scale import LayerScale
from .kinds.stochastic_depth import StochasticDepth

__all__ = ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "ChannelLayerNorm", "ChannelShuffle", "ChannelSlice",
           "LayerScale", "StochasticDepth"]
