"""The importer's dispatch: one handler per fx node kind, targets looked up in tables, layouts and
joins in their own modules, and the layer kinds' own import rules.

Why: the tables replaced a 23-branch chain; every refusal below is pinned to the exact text the
chain wrote (recorded before the change), and the structures to the edges it built.
"""
from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from morphnas.morphism import import_joins, import_layout, importer
from morphnas.morphism.errors import ImportUnsupported, MorphnasError
from morphnas.morphism.importer import from_torch
from morphnas.morphism.kinds import function_rule, imported_module_types, module_rule


class Fn(nn.Module):
    """A model whose forward is ``f(self, x)``, with ``mods`` as submodules and ``params``."""

    def __init__(self, f, params=None, **mods):
        super().__init__()
        self.f = f
        for k, v in mods.items():
            setattr(self, k, v)
        for k, v in (params or {}).items():
            setattr(self, k, nn.Parameter(v))

    def forward(self, x):
        return self.f(self, x)


def test_one_handler_per_node_kind_and_tables_by_target():
    for op in ("placeholder", "get_attr", "call_module", "call_function", "call_method", "output"):
        assert callable(getattr(importer._Importer, op))
    assert importer.CONCATS[torch.cat] is import_joins.concat
    assert importer.JOINS[operator.add] is import_joins.add and importer.JOINS["mul_"] is import_joins.product
    assert importer.TENSOR_OPS["view"] is import_layout.view and importer.TENSOR_OPS[torch.split] is import_layout.chunks
    assert importer.MODULE_INPUTS[import_layout.Perm] is import_layout.channels_last_module
    # The layer kinds' rules: module types (each kept whole by the tracer) and functions / methods.
    assert {nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Linear, nn.AdaptiveAvgPool2d} <= imported_module_types()
    assert module_rule(nn.Conv2d) is not None and module_rule(nn.Upsample) is None
    assert function_rule(F.relu) is function_rule("relu") is not None and function_rule("mean") is not None
    assert function_rule(torchvision.ops.stochastic_depth) is not None   # matched by name
    assert function_rule(torch.sin) is None and function_rule([]) is None


def _seq(*mods):
    return nn.Sequential(*mods)


REFUSED = {
    "modules": (lambda: _seq(
        nn.Conv2d(4, 4, 3, padding_mode="reflect", padding=1), nn.Conv2d(4, 4, (3, 1)), nn.Conv2d(4, 4, 2, padding="same"),
        nn.BatchNorm2d(4, affine=False), nn.BatchNorm2d(4, momentum=None), nn.GELU("tanh"), nn.ELU(0.5),
        nn.Softplus(2), nn.LeakyReLU(0.2), nn.Hardtanh(-2, 2), nn.MaxPool2d(2, dilation=2),
        nn.AvgPool2d(2, divisor_override=1),
        nn.AdaptiveMaxPool2d(2, return_indices=True), nn.Upsample(scale_factor=2), nn.Conv1d(4, 4, 1), nn.Flatten(2),
        nn.Linear(4, 4)), [
        "Conv2d with padding_mode='reflect' at '0'", "Conv2d with non-square kernel (3, 1) at '1'",
        "Conv2d padding='same' with an even kernel (asymmetric padding) at '2'",
        "BatchNorm2d without affine parameters or running statistics at '3'",
        "BatchNorm2d with momentum=None (cumulative average) at '4'", "GELU(approximate='tanh') at '5'",
        "ELU(alpha=0.5) at '6'", "Softplus(beta=2, threshold=20.0) at '7'",
        "LeakyReLU(negative_slope=0.2 (use nn.PReLU)) at '8'", "Hardtanh(min_val=-2, max_val=2) at '9'",
        "MaxPool2d with dilation or return_indices at '10'", "AvgPool2d with divisor_override at '11'",
        "AdaptiveMaxPool2d with return_indices at '12'", "torch.nn.modules.upsampling.Upsample at '13'",
        "torch.nn.modules.conv.Conv1d at '14'",
        "nn.Flatten(start_dim=2, end_dim=-1) (only flatten from dim 1 to the end) at '15'"]),
    "activation functions": (lambda: Fn(lambda m, x: (
        F.gelu(x, approximate="tanh") + F.leaky_relu(x, 0.2) + F.elu(x, 1.0, False) + x.relu() + F.softplus(x, beta=2.0)
        + F.hardtanh(x, min_val=-2.0) + x.relu_() + F.relu(x, True) + x.tanh_())), [
        "torch.nn.functional.gelu(approximate='tanh') at 'gelu'",
        "torch.nn.functional.leaky_relu(negative_slope=0.2) at 'leaky_relu'",
        "torch.nn.functional.softplus(beta=2.0) at 'softplus'", "torch.nn.functional.hardtanh(min_val=-2.0) at 'hardtanh'",
        "in-place 'relu_' modifies a tensor that 'relu_1' reads afterwards",
        "in-place 'relu_1' modifies a tensor that 'tanh_' reads afterwards"]),
    "pool functions": (lambda: Fn(lambda m, x: (
        F.max_pool2d(x, 2, dilation=2) + F.avg_pool2d(x, 2, divisor_override=1) + F.max_pool2d(x, (2, 3))
        + F.max_pool2d(x, 2, 2, 0, 1) + F.adaptive_max_pool2d(x, 2, True) + F.avg_pool2d(x, 2, 2, 0, False, True, None))), [
        "torch.nn.functional.max_pool2d with dilation or return_indices at 'max_pool2d'",
        "torch.nn.functional.avg_pool2d with divisor_override or extra positional arguments at 'avg_pool2d'",
        "torch.nn.functional.max_pool2d with non-square kernel (2, 3) at 'max_pool2d_1'",
        "torch.nn.functional.adaptive_max_pool2d_with_indices at the top level",
        "torch.nn.functional.avg_pool2d with divisor_override or extra positional arguments at 'avg_pool2d_1'"]),
    "means and flattens": (lambda: Fn(lambda m, x: (
        x.mean((2, 3)) + x.mean(1).mean((1, 2)) + x.view(x.size(0), 2, -1).flatten(1)
        + torch.flatten(x, 2).flatten(1) + x.view(2, -1).sum())), [
        "Tensor.mean(dim=1) (only the spatial mean over dims (2, 3)) at 'mean_1'",
        "Tensor.mean(dim=(1, 2)) (only the spatial mean over dims (2, 3)) at 'mean_2'",
        "view/reshape to [batch, 2, -1] (only flattening to (batch, -1) is supported) at 'view'",
        "torch.flatten(start_dim=2, end_dim=-1) (only flatten from dim 1 to the end) at 'flatten_1'",
        "view/reshape to [2, -1] (only flattening to (batch, -1) is supported) at 'view_1'",
        "Tensor.sum at the top level"]),
    "joins": (lambda: Fn(lambda m, x: (
        torch.cat([x, x], 0).sum() + torch.cat([x.flatten(1), x.flatten(1)], 1).sum() + torch.add(x, x, alpha=2)
        + x / x + torch.mul(x, 2, out=None) + x.mul(x, ))), [
        "torch.cat(dim=0) (only along the channels of feature maps) at the top level", "Tensor.sum at the top level",
        "torch.cat(dim=1) (only along the channels of feature maps) at the top level",
        "torch.add at 'add_1' (only tensor + tensor)",
        "operator.truediv of two tensors (only scaling by a constant, or a product of maps) at the top level",
        "torch.mul of two tensors (only scaling by a constant, or a product of maps) at the top level"]),
    "parameters": (lambda: Fn(lambda m, x: (
        m.g * x + x.mul(m.g) + F.conv2d(x, m.w) + x + m.v + F.relu(m.v) + m.v * 2 + m.w.sum()),
        params={"g": torch.rand(4), "w": torch.rand(4, 4, 1, 1), "v": torch.rand(4, 6, 6)}), [
        "operator.mul by parameter self.g of shape (4,) (only a per-channel (C, 1, 1) layer scale) "
        "(reads parameter self.g) at the top level",
        "Tensor.mul by parameter self.g of shape (4,) (only a per-channel (C, 1, 1) layer scale) "
        "(reads parameter self.g) at the top level",
        "torch.conv2d (reads parameter self.w) at the top level", "operator.add at 'add_3' (only tensor + tensor)",
        "torch.nn.functional.relu (reads parameter self.v) at the top level",
        "operator.mul (reads parameter self.v) at the top level", "Tensor.sum (reads parameter self.w) at the top level"]),
    "channels-last": (lambda: Fn(lambda m, x: (
        m.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + m.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        + m.bn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + x.permute(0, 2, 3, 1).permute(0, 1, 3, 2)
        + (x.permute(0, 2, 3, 1) + x) + F.layer_norm(x.permute(0, 2, 3, 1), (4,)) + F.dropout(x.permute(0, 2, 3, 1))
        + F.leaky_relu(x.permute(0, 2, 3, 1), 0.3) + m.p(x.permute(0, 2, 3, 1))),
        norm=nn.LayerNorm(6), fc=nn.Linear(6, 4), bn=nn.BatchNorm2d(4), p=nn.PReLU()), [
        "LayerNorm(6,) on a channels-last map of 4 channels at 'norm' (only an affine LayerNorm over the channels)",
        "Tensor.permute(0, 3, 1, 2) (only to channels-last (0, 2, 3, 1) and back) at the top level",
        "Linear(6) on a channels-last map of 4 channels at 'fc'", "BatchNorm2d on a channels-last (permuted) tensor at 'bn'",
        "Tensor.permute(0, 1, 3, 2) of a channels-last tensor (only back with (0, 3, 1, 2)) at the top level",
        "operator.add on a channels-last (permuted) tensor at the top level",
        "torch.nn.functional.layer_norm on a channels-last map (only affine over the 4 channels) at the top level",
        "torch.nn.functional.dropout on a channels-last (permuted) tensor at the top level",
        "torch.nn.functional.leaky_relu(negative_slope=0.3) at 'leaky_relu'",
        "PReLU on a channels-last (permuted) tensor at 'p'"]),
    "permutes and groupings": (lambda: Fn(lambda m, x: (
        x.permute(0, 1, 3, 2) + x.flatten(1).permute(1, 0).sum() + x.view(x.size(0), 2, 2, 6, 6).sum()
        + x.view(x.size(0), 2, 2, 6, 6).transpose(1, 3).sum() + torch.relu(x.view(x.size(0), 2, 2, 6, 6)).sum()
        + x.view(x.size(0), 2, 2, 6, 6).transpose(1, 2).view(x.size(0), 4, 36).sum())), [
        "Tensor.permute(0, 1, 3, 2) (only to channels-last (0, 2, 3, 1) and back) at the top level",
        "Tensor.permute(1, 0) (only to channels-last (0, 2, 3, 1) and back) at the top level",
        "Tensor.sum at the top level",
        "Tensor.sum of a grouped (5-d) view (only a channel shuffle: transpose(1, 2), view back) at the top level",
        "Tensor.transpose of a grouped (5-d) view (only a channel shuffle: transpose(1, 2), view back) at the top level",
        "torch.relu of a grouped (5-d) view (only a channel shuffle: transpose(1, 2), view back) at the top level",
        "Tensor.view of a grouped (5-d) view (only a channel shuffle: transpose(1, 2), view back) at the top level"]),
    "chunks": (lambda: Fn(lambda m, x: (
        x.chunk(2, 2)[0].sum() + torch.cat(x.chunk(2, 1), 1).sum() + x.split([1, 2], 1)[0].sum()
        + x.flatten(1).chunk(2, 1)[0].sum())), [
        "Tensor.chunk(dim=2) (only along the channels of a feature map) at the top level",
        "operator.getitem at the top level", "Tensor.sum at the top level",
        "Tensor.chunk whose result is used other than item by item at the top level",
        "torch.cat of values that are not feature maps at the top level",
        "Tensor.split([1, 2]) of 4 channels at the top level",
        "Tensor.chunk(dim=1) (only along the channels of a feature map) at the top level"]),
    "shape code": (lambda: Fn(lambda m, x: (
        x.sum() + x.size(5) + x.size(0) * 2 + x.flatten(1).view(x.shape[0] // 1, -1) + x.new_zeros(x.shape).sum()
        + x.view(x.shape).sum())), [
        "Tensor.sum at the top level", "Tensor.size(5) of a tensor of unknown shape at the top level",
        "operator.mul on a tensor's shape at the top level", "operator.floordiv on a tensor's shape at the top level",
        "view/reshape to [_B(i=7), -1] (only flattening to (batch, -1) is supported) at 'view'",
        "Tensor.new_zeros on a tensor's shape at the top level",
        "view/reshape to [_ShapeOf(shape=(4, 6, 6))] (only flattening to (batch, -1) is supported) at 'view_1'"]),
    "other calls": (lambda: Fn(lambda m, x: (
        torch.sin(x) + torch.sub(2.0, x) + -x + x ** 2 + m.c(m.r(m.w)) + m.c(x.view(x.size(0), 2, 2, 6, 6))),
        params={"w": torch.ones(1, 4, 6, 6)}, c=nn.Conv2d(4, 4, 1), r=nn.ReLU()), [
        "torch.sin at the top level", "torch.sub whose first argument is not a tensor at the top level",
        "operator.neg at the top level", "operator.pow at the top level",
        "r (ReLU) called with 1 arguments at 'r' (reads parameter self.w)", "c (Conv2d) called with 1 arguments at 'c'"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refusals_keep_their_exact_text(case):
    make, want = REFUSED[case]
    torch.manual_seed(0)
    with pytest.raises(ImportUnsupported) as err:
        from_torch(make(), (4, 6, 6))
    assert err.value.ops == want


@pytest.mark.parametrize("f, message", [
    (lambda m, x: x + F.max_pool2d(x, 2),
     "import: 'add' adds tensors of shapes (4, 6, 6) and (4, 3, 3) (broadcasting is not supported)"),
    (lambda m, x: x * F.max_pool2d(x, 2),
     "import: 'mul' multiplies in-edges of shapes [(4, 6, 6), (4, 3, 3)]: only (C, 1, 1) broadcasts against (C, H, W)"),
    (lambda m, x: torch.cat([x, F.max_pool2d(x, 2)], 1),
     "import: 'cat' concatenates in-edges of shapes [(4, 6, 6), (4, 3, 3)]: channel concatenation needs (C, H, W) maps "
     "of one spatial size"),
])
def test_joins_of_mismatched_shapes_name_the_join(f, message):
    with pytest.raises(MorphnasError) as err:
        from_torch(Fn(f), (4, 6, 6))
    assert str(err.value) == message


class ConvNextBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.norm, self.fc1, self.act, self.fc2 = nn.LayerNorm(4, eps=1e-6), nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 4)
        self.drop, self.gamma = nn.Dropout(0.0), nn.Parameter(torch.rand(4, 1, 1))
        self.ln2, self.relu = nn.LayerNorm(4), nn.ReLU()

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(self.act(self.fc1(self.norm(y))))
        y = F.gelu(self.drop(self.relu(y)).contiguous())
        y = torch.permute(F.layer_norm(y, (4,), self.ln2.weight, self.ln2.bias, 1e-5), (0, 3, 1, 2))
        return x + self.gamma * y


class Shuffles(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 1)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.size()
        y = torch.transpose(x.view(b, 2, c // 2, h, w), 1, 2).contiguous().view(b, -1, h, w)
        return y + x.reshape(b, 4, 2, h, w).transpose(2, 1).reshape(x.shape[0], c, h, w)


class Chunks(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 8, 1)

    def forward(self, x):
        y = self.c(x)
        a, b = y.chunk(2, dim=1)
        c, d = torch.split(y, [3, 5], dim=1)
        return torch.cat([a * b, F.relu(c), d], 1)


class Depth(nn.Module):
    def __init__(self):
        super().__init__()
        self.sd, self.c = torchvision.ops.StochasticDepth(0.2, "batch"), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return x + self.sd(self.c(x)) + torchvision.ops.stochastic_depth(x, 0.1, "row", False)


class Scales(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.c(x)
        y *= 2
        return x * 0.5 + 2 * x + x / 2 + x.mul(3) + y


@pytest.mark.parametrize("make, edges, joins", [
    (ConvNextBlock, [("add_shortcut", "identity"), ("dw", "conv2d"), ("norm", "channel_layernorm"), ("fc1", "conv2d"),
                     ("act", "activation"), ("fc2", "conv2d"), ("relu", "activation"), ("drop", "dropout"),
                     ("gelu", "activation"), ("layer_norm", "channel_layernorm"), ("gamma", "layer_scale")], {}),
    (Shuffles, [("conv", "conv2d"), ("reshape_1", "channel_shuffle"), ("view_1", "channel_shuffle")], {}),
    (Chunks, [("c", "conv2d"), ("getitem", "channel_slice"), ("getitem_1", "channel_slice"),
              ("getitem_2", "channel_slice"), ("getitem_3", "channel_slice"), ("relu", "activation"),
              ("cat_in0", "identity")], {"mul": "mul", "output": "concat"}),
    (Depth, [("add_1_shortcut", "identity"), ("add_shortcut", "identity"), ("c", "conv2d"),
             ("sd", "stochastic_depth")], {}),   # the functional call with training=False is traced away
    (Scales, [("c", "conv2d"), ("mul_1", "identity"), ("mul_2", "identity"), ("mul_3", "identity"),
              ("truediv", "identity"), ("mul", "identity")], {}),
])
def test_structures_import_to_the_same_edges(make, edges, joins):
    torch.manual_seed(0)
    net = from_torch(make(), (4, 6, 6))   # checked numerically against the model
    assert [(e.name, e.layer.kind) for e in net.edges()] == edges
    assert {b: net.join(b) for b in net.blobs() if net.join(b) != "sum"} == joins
