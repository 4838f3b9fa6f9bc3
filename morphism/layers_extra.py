"""The layer kinds beyond ResNets under one import path (issue 14): channel slices and shuffles,
channel LayerNorm, layer scale, stochastic depth and adaptive pooling; and the transformer kinds
(issue 25): tokens, LayerNorm over features, position embedding, class token, token pooling and
multi-head self-attention.

Each is one file in :mod:`.kinds`. Why these exist as kinds: torchvision's DenseNets, ShuffleNets,
EfficientNets and ConvNeXts are built from them, and the IR must compute each exactly so an import
matches the model.
"""
from __future__ import annotations

from .kinds.adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from .kinds.attention import Attention
from .kinds.channel_layernorm import ChannelLayerNorm
from .kinds.channel_shuffle import ChannelShuffle
from .kinds.channel_slice import ChannelSlice
from .kinds.class_token import ClassToken
from .kinds.layer_norm import LayerNorm
from .kinds.layer_scale import LayerScale
from .kinds.pos_embed import PosEmbed
from .kinds.stochastic_depth import StochasticDepth
from .kinds.token_pool import TokenPool
from .kinds.tokens import Tokens

__all__ = ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Attention", "ChannelLayerNorm", "ChannelShuffle", "ChannelSlice",
           "ClassToken", "LayerNorm", "LayerScale", "PosEmbed", "StochasticDepth", "TokenPool", "Tokens"]
